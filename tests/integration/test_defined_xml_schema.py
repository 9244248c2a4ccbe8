"""Every definition virtctl sends to a hypervisor validates against libvirt's RelaxNG
schema: the planned Define XML (declared definition + identity + ownership mark with its
last-applied record) for every example, new and updated, and what `export` writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from virtctl import api
from virtctl.drivers import connect
from virtctl.render.export import ExportFormat, export_specs
from virtctl.reconciler.plan.actions import Define
from virtctl.reconciler.plan.plan import plan
from virtctl.xmlutil import parse

EXAMPLES = Path(__file__).resolve().parents[2] / "specs" / "examples"


def assert_valid(xml: str, relaxng: Callable[[str], etree.RelaxNG], what: str) -> None:
    root = parse(xml)
    schema = relaxng(str(root.tag))
    assert schema.validate(root), f"{what}: {schema.error_log.last_error}"


def test_planned_definitions_validate(tmp_path: Path, monkeypatch,
                                      libvirt_relaxng: Callable[[str], etree.RelaxNG]) -> None:
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path))
    desired = api.load([str(EXAMPLES)], use_cache=False)
    driver = connect("sim:///schema")
    created = plan(desired, driver.snapshot())
    defines = [a for a in created.actions if isinstance(a, Define)]
    assert len(defines) == len(desired)
    for action in defines:
        assert_valid(action.xml, libvirt_relaxng, f"define {action.key}")
    api.apply(created, driver)
    # Redefinitions carry the live identity and a last-applied record too.
    changed = dataclasses.replace(desired, domains={
        name: dataclasses.replace(spec, xml=spec.xml.replace(
            "</name>", "</name><description>edited</description>", 1))
        for name, spec in desired.domains.items()
    })
    updated = [a for a in plan(changed, driver.snapshot()).actions if isinstance(a, Define)]
    assert updated and all(not a.new for a in updated)
    for action in updated:
        assert_valid(action.xml, libvirt_relaxng, f"redefine {action.key}")


def test_exported_specs_validate(tmp_path: Path, monkeypatch,
                                 libvirt_relaxng: Callable[[str], etree.RelaxNG]) -> None:
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path))
    driver = connect("sim:///schema")
    desired = api.load([str(EXAMPLES)], use_cache=False)
    api.apply(plan(desired, driver.snapshot()), driver)
    exported = export_specs(driver.snapshot(), fmt=ExportFormat.XML)
    assert len(exported) == len(desired)
    for spec in exported:
        assert_valid(spec.text, libvirt_relaxng, f"export {spec.key}")
