"""Golden files for the xm and xl converters, both directions, plus round-trip stability.

Cases are discovered from tests/data/{xm,xl}/:
- cfg2xml/NAME.cfg -> NAME.xml (domain XML), NAME.out.cfg (that XML written back),
  NAME.warnings (one per line; absent means none expected).
- xml2cfg/NAME.xml -> NAME.cfg, NAME.warnings.
Set VIRTCTL_REGENERATE=1 to rewrite the expected files from the current output (then
review the diff). Every XML produced must validate against libvirt's domain.rng.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from virtctl.converters.xen.xm import Conversion, xm_to_xml, xml_to_xm

DATA = Path(__file__).resolve().parents[2] / "data"
REGENERATE = os.environ.get("VIRTCTL_REGENERATE") == "1"


def _cases(direction: str, suffix: str) -> list[Any]:
    return [pytest.param(flavor, path, id=f"{flavor}-{path.stem}")
            for flavor in ("xm", "xl")
            for path in sorted((DATA / flavor / direction).glob(f"*{suffix}"))
            if not path.name.endswith(".out.cfg")]


def assert_valid(text: str, relaxng: etree.RelaxNG | None) -> None:
    if relaxng is not None:
        doc = etree.fromstring(text.encode())  # our own output, not user input
        assert relaxng.validate(doc), str(relaxng.error_log)


def check_golden(path: Path, actual: str) -> None:
    if REGENERATE:
        path.write_text(actual)
    assert path.exists(), f"{path} missing; run with VIRTCTL_REGENERATE=1"
    assert actual == path.read_text()


def check_warnings(path: Path, result: Conversion) -> None:
    text = "".join(f"{w}\n" for w in result.warnings)
    if REGENERATE:
        if text:
            path.write_text(text)
        elif path.exists():
            path.unlink()
    expected = path.read_text() if path.exists() else ""
    assert text == expected


@pytest.mark.parametrize(("flavor", "cfg"), _cases("cfg2xml", ".cfg"))
def test_cfg_to_xml_matches_golden(flavor: str, cfg: Path,
                                   relaxng: etree.RelaxNG | None) -> None:
    result = xm_to_xml(cfg.read_text(), source=cfg.name, flavor=flavor)
    assert_valid(result.text, relaxng)
    check_golden(cfg.with_suffix(".xml"), result.text)
    check_warnings(cfg.with_suffix(".warnings"), result)


@pytest.mark.parametrize(("flavor", "cfg"), _cases("cfg2xml", ".cfg"))
def test_cfg_xml_cfg_xml_round_trip_is_stable(flavor: str, cfg: Path,
                                              relaxng: etree.RelaxNG | None) -> None:
    xml1 = xm_to_xml(cfg.read_text(), source=cfg.name, flavor=flavor).text
    back = xml_to_xm(xml1, flavor=flavor)
    check_golden(cfg.with_suffix(".out.cfg"), back.text)
    assert back.warnings == ()
    xml2 = xm_to_xml(back.text, flavor=flavor)
    assert xml2.text == xml1
    assert xml2.warnings == ()
    assert_valid(xml2.text, relaxng)


@pytest.mark.parametrize(("flavor", "xml"), _cases("xml2cfg", ".xml"))
def test_xml_to_cfg_matches_golden(flavor: str, xml: Path,
                                   relaxng: etree.RelaxNG | None) -> None:
    result = xml_to_xm(xml.read_text(), flavor=flavor, source=xml.name)
    check_golden(xml.with_suffix(".cfg"), result.text)
    check_warnings(xml.with_suffix(".warnings"), result)
    # XML -> cfg -> XML -> cfg -> XML: defaults get filled on the first pass, then it is fixed.
    xml2 = xm_to_xml(result.text, flavor=flavor)
    assert_valid(xml2.text, relaxng)
    cfg3 = xml_to_xm(xml2.text, flavor=flavor)
    assert cfg3.warnings == ()
    assert xm_to_xml(cfg3.text, flavor=flavor).text == xml2.text


def test_golden_folders_are_not_empty() -> None:
    for flavor in ("xm", "xl"):
        assert _cases("cfg2xml", ".cfg") and _cases("xml2cfg", ".xml"), flavor
