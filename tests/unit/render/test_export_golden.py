"""`virtctl export` on recorded live definitions: golden files in tests/data/export/.

Each `<case>.in.xml` is a definition as a host reports it (captured from libvirt 9.0 on
qemu:///system, running and inactive, or written to hold what a user sets on purpose);
`<case>.out.xml` and `<case>.out.yaml` are the exported specs for it as a running guest
(or active network) with autostart off. `--regenerate-output` rewrites them. Every
expected spec must also load as a valid spec and keep the input's identity.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from virtctl.render.export import ExportFormat, export_specs
from virtctl.model import DomainSpec, DomainState, Live, LiveDomain, LiveNetwork
from virtctl.reconciler.load.load import load_text
from virtctl.xmlutil import parse

DATA = Path(__file__).resolve().parents[2] / "data" / "export"
CASES = sorted(p.name.removesuffix(".in.xml") for p in DATA.glob("*.in.xml"))


def live_of(xml: str) -> Live:
    root = parse(xml)
    name, uuid = root.findtext("name") or "", root.findtext("uuid") or ""
    if root.tag == "network":
        return Live(networks={name: LiveNetwork(name=name, uuid=uuid, xml=xml, active=True)})
    return Live(domains={name: LiveDomain(name=name, uuid=uuid, xml=xml,
                                          state=DomainState.RUNNING, id=7)})


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("case", CASES)
def test_export_matches_golden(case: str, fmt: ExportFormat, regenerate: bool) -> None:
    (spec,) = export_specs(live_of((DATA / f"{case}.in.xml").read_text()), fmt=fmt)
    expected = DATA / f"{case}.out.{fmt}"
    if regenerate:
        expected.write_text(spec.text)
    assert spec.text == expected.read_text()


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("case", CASES)
def test_exported_spec_loads_with_identity_and_runtime_state(case: str, fmt: ExportFormat) -> None:
    source = parse((DATA / f"{case}.in.xml").read_text())
    specs = load_text((DATA / f"{case}.out.{fmt}").read_text(), source=f"{case}.{fmt}")
    (spec,) = specs
    assert spec.uuid == source.findtext("uuid")
    loaded = parse(spec.xml)
    macs = [m.get("address") for m in source.iterfind("devices/interface/mac")]
    assert [m.get("address") for m in loaded.iterfind("devices/interface/mac")] == macs
    if isinstance(spec, DomainSpec):
        assert (spec.state, spec.autostart) == (DomainState.RUNNING, False)
    else:
        assert (spec.active, spec.autostart) == (True, False)
