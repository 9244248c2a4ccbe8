"""Golden YAML <-> XML cases from tests/data/yamlxml/<case>.yaml + <case>.xml.

The .yaml is the input of truth; `--regenerate-output` rewrites the .xml from it.
Every case is checked in both directions and for round-trip stability (black's
assert_stable), and its XML against libvirt's RelaxNG schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from virtctl.converters.yaml.yamlxml import (
    domain_from_xml,
    domain_to_xml,
    network_from_xml,
    network_to_xml,
    pool_from_xml,
    pool_to_xml,
    volume_from_xml,
    volume_to_xml,
)
from virtctl.xmlutil import parse, tostring

DATA = Path(__file__).parent.parent.parent / "data" / "yamlxml"
CASES = sorted(p.stem for p in DATA.glob("*.yaml"))


TO_XML = {"Domain": domain_to_xml, "Network": network_to_xml, "StoragePool": pool_to_xml,
          "Volume": volume_to_xml}
FROM_XML = {"domain": domain_from_xml, "network": network_from_xml, "pool": pool_from_xml,
            "volume": volume_from_xml}
#: libvirt's RelaxNG schema file for each root tag.
RNG = {"pool": "storagepool", "volume": "storagevol"}


def to_xml(doc: Mapping[str, Any]) -> etree._Element:
    return TO_XML[doc["kind"]](doc)


def from_xml(root: etree._Element) -> dict[str, Any]:
    return FROM_XML[str(root.tag)](root)


def load_yaml(case: str) -> dict[str, Any]:
    doc = yaml.safe_load((DATA / f"{case}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_cases_are_discovered() -> None:
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES)
def test_yaml_to_xml_matches_golden(case: str, regenerate: bool) -> None:
    produced = tostring(to_xml(load_yaml(case)))
    expected = DATA / f"{case}.xml"
    if regenerate:
        expected.write_text(produced)
    assert produced == expected.read_text()


@pytest.mark.parametrize("case", CASES)
def test_xml_to_yaml_matches_golden(case: str) -> None:
    root = parse((DATA / f"{case}.xml").read_bytes())
    assert from_xml(root) == load_yaml(case)


@pytest.mark.parametrize("case", CASES)
def test_round_trips_are_stable(case: str) -> None:
    doc = load_yaml(case)
    once = to_xml(doc)
    again = from_xml(once)
    assert again == doc
    assert tostring(to_xml(again)) == tostring(once)


@pytest.mark.parametrize("case", CASES)
def test_golden_xml_is_valid_libvirt_xml(
    case: str, libvirt_relaxng: Callable[[str], etree.RelaxNG]
) -> None:
    root = parse((DATA / f"{case}.xml").read_bytes())
    schema = libvirt_relaxng(RNG.get(str(root.tag), str(root.tag)))
    assert schema.validate(root), schema.error_log.last_error
