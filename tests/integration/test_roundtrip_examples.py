"""Every shipped example round-trips with zero diff: through the sim, and through real
libvirt (qemu:///system), which adds defaults, reorders devices and rewrites units.

On qemu:///system the examples are defined only (never started: they name host bridges
and disk images that need not exist), renamed `vctl-rt-<run>-<name>` with fresh uuids and
bridge names so parallel runs never collide, and removed afterwards by name: this test
touches nothing it did not create. Examples qemu:///system cannot hold are listed in
QEMU_SKIPS with the reason; the test fails if an example is neither run nor listed.
"""

from __future__ import annotations

import secrets
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.contract.support import purge_libvirt, require_connection
from virtctl import api
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import DomainSpec, NetworkSpec
from virtctl.reconciler.load.load import load_specs
from virtctl.xmlutil import NS, parse, tostring

EXAMPLES = Path(__file__).resolve().parents[2] / "specs" / "examples"
QEMU_SKIPS = {
    "xen-hvm-legacy": "domain type xen: qemu:///system offers no Xen guests",
    "xen-pv-mail": "domain type xen: qemu:///system offers no Xen guests",
}
# Lifecycle actions the qemu driver refuses ("doesn't support the 'preserve' action for
# 'on_reboot'/'on_poweroff'", nor 'rename-restart' anywhere); the examples show every
# action libvirt's format has, so they are swapped for ones qemu takes.
QEMU_LIFECYCLE = {
    ("on_reboot", "preserve"): "restart", ("on_poweroff", "preserve"): "destroy",
    **{(tag, "rename-restart"): "restart" for tag in ("on_reboot", "on_poweroff", "on_crash")},
}


def test_examples_round_trip_through_the_sim_with_zero_diff(
        sim: Callable[..., SimDriver], state_dir: Path) -> None:
    desired = api.load([str(EXAMPLES)], use_cache=False)
    driver = sim()
    result = api.reconcile(desired, driver)
    assert result.report.return_code == 0, result.report
    assert result.remaining.empty
    again = api.plan(desired, driver)
    assert again.empty and not again.pending and not again.changes, again


def test_every_example_is_covered_on_qemu() -> None:
    names = {s.name for s in load_specs([str(EXAMPLES)])}
    assert set(QEMU_SKIPS) <= names, "QEMU_SKIPS names an example that no longer exists"


# -- qemu:///system ------------------------------------------------------------------------


def _runtime(root: Any, **attrs: str) -> None:
    meta = root.find("metadata")
    if meta is None:
        meta = parse("<metadata/>")
        root.find("name").addnext(meta)
    elem = parse(f'<virtctl:runtime xmlns:virtctl="{NS}"/>')
    for key, value in attrs.items():
        elem.set(key, value)
    meta.append(elem)


def _for_qemu(spec: DomainSpec | NetworkSpec, run: str, renamed: dict[str, str]) -> str:
    """The example as qemu:///system may define it here: unique name, uuid and bridge,
    network references renamed, defined only (shutoff, inactive)."""
    root = parse(spec.xml)
    root.find("name").text = renamed[spec.name]
    uuid = root.find("uuid")
    if uuid is not None:
        uuid.text = str(uuidlib.uuid4())
    if isinstance(spec, NetworkSpec):
        bridge = root.find("bridge")
        if bridge is not None and bridge.get("name"):
            bridge.set("name", f"vrt{run}{len(renamed) % 10}{spec.name[8]}")
        _runtime(root, active="no", autostart="no")
    else:
        for (tag, refused), instead in QEMU_LIFECYCLE.items():
            elem = root.find(tag)
            if elem is not None and elem.text == refused:
                elem.text = instead
        for source in root.iterfind("devices/interface[@type='network']/source"):
            source.set("network", renamed[source.get("network", "")])
        _runtime(root, state="shutoff", autostart="no")
    return tostring(root)


@pytest.fixture
def qemu_examples(tmp_path: Path) -> Iterator[SimpleNamespace]:
    require_connection("qemu:///system")
    run = secrets.token_hex(3)
    specs = [s for s in load_specs([str(EXAMPLES)]) if s.name not in QEMU_SKIPS]
    renamed = {s.name: f"vctl-rt-{run}-{s.name}" for s in specs}
    folder = tmp_path / "qemu-specs"
    folder.mkdir()
    for spec in specs:
        (folder / f"{spec.name}.xml").write_text(_for_qemu(spec, run, renamed))
    try:
        yield SimpleNamespace(folder=folder, names=set(renamed.values()), specs=specs)
    finally:
        # Exactly the objects this test created, by name.
        purge_libvirt("qemu:///system", set(renamed.values()))


def test_examples_round_trip_through_qemu_system_with_zero_diff(
        qemu_examples: SimpleNamespace) -> None:
    desired = api.load([str(qemu_examples.folder)], use_cache=False)
    assert len(desired) == len(qemu_examples.specs) >= 5
    with api.connect("qemu:///system") as driver:
        result = api.reconcile(desired, driver)
        assert result.report.return_code == 0, [
            (r.action.key, str(r.error)) for r in result.report.results if r.error]
        again = api.plan(desired, driver)
        live = driver.snapshot()
    assert again.empty and not again.changes, [(k, c) for k, c in again.changes]
    for name in qemu_examples.names:
        found = live.domains.get(name) or live.networks.get(name)
        assert found is not None and found.managed
        assert found.owner is not None and found.owner.last_applied is not None
