"""Live updates end to end on the sim and on libvirt's test driver (issue 13): disks and
NICs hot-plugged and unplugged, CD-ROM media changed, vcpus set, DHCP hosts added and
removed on an active network, each verified in the running definition with the guest
never restarted and a second run planning nothing; a guest that never releases a device
leaves it restart-pending without an error; --no-live keeps today's behaviour. The same
scenarios run on a real QEMU guest in test_live_updates_qemu.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import libvirt_module, purge_libvirt
from tests.integration.live_scenarios import (
    Lab,
    assert_live_only,
    device,
    held,
    vcpus_running,
    verbs,
)
from virtctl import api
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import Kind
from virtctl.uri import parse_uri

MAC_A, MAC_B = "52:54:00:5e:00:0a", "52:54:00:5e:00:0b"


@pytest.fixture
def lab(state_dir: Path, specs: Path, tmp_path: Path) -> Lab:
    return Lab(uri="sim:///live", specs=specs, guest="web", network="lan", subnet=77,
               bridge="virbr77", images=tmp_path / "images", dom_type="kvm", timeout=2)


def sim(lab: Lab) -> SimDriver:
    return SimDriver(parse_uri(lab.uri))


def test_a_virtio_disk_is_hot_added_and_removed(lab: Lab) -> None:
    lab.write()
    lab.settled()
    started = lab.guest_id()
    lab.write(disks=["b.raw"])
    added = lab.settled()
    assert_live_only(added, lab, "define", "attach-device")
    assert device(lab.running(), "devices/disk[vdb]") is not None
    lab.write()
    removed = lab.settled()
    assert_live_only(removed, lab, "define", "detach-device")
    assert device(lab.running(), "devices/disk[vdb]") is None
    assert lab.guest_id() == started


def test_a_virtio_nic_is_hot_added_and_removed(lab: Lab) -> None:
    lab.write(nics=[MAC_A])
    lab.settled()
    started = lab.guest_id()
    lab.write(nics=[MAC_A, MAC_B])
    assert_live_only(lab.settled(), lab, "attach-device")
    assert device(lab.running(), f"devices/interface[{MAC_B}]") is not None
    lab.write(nics=[MAC_A])
    assert_live_only(lab.settled(), lab, "detach-device")
    assert device(lab.running(), f"devices/interface[{MAC_B}]") is None
    assert device(lab.running(), f"devices/interface[{MAC_A}]") is not None
    assert lab.guest_id() == started


def test_cdrom_media_is_inserted_changed_and_ejected(lab: Lab) -> None:
    lab.write(cdrom="")
    lab.settled()
    started = lab.guest_id()
    for medium in ("a.iso", "b.iso", ""):
        lab.write(cdrom=medium)
        assert_live_only(lab.settled(), lab, "update-device")
        source = device(lab.running(), "devices/disk[hdc]").find("source")
        shown = source.get("file") if source is not None else None
        assert shown == (str(lab.images / medium) if medium else None)
    assert lab.guest_id() == started


def test_vcpus_are_set_within_the_maximum_and_a_new_maximum_waits(lab: Lab) -> None:
    lab.write(vcpus=(2, 1))
    lab.settled()
    started = lab.guest_id()
    lab.write(vcpus=(2, 2))
    assert_live_only(lab.settled(), lab, "set-vcpus")
    assert vcpus_running(lab.running()) == 2
    lab.write(vcpus=(4, 2))
    pending = lab.apply()
    assert verbs(pending, lab.guest) == ["define", "note-pending"]
    assert "vcpu" in [c.path for c in pending.plan.pending[0].changes]
    assert lab.guest_id() == started


def test_dhcp_hosts_change_on_an_active_network_without_restarting_it(lab: Lab) -> None:
    lab.write(nics=[MAC_A])
    lab.settled()
    started = lab.guest_id()
    lab.write(nics=[MAC_A], dhcp_hosts=[(MAC_A, "10")])
    added = lab.settled()
    assert verbs(added, lab.network) == ["define", "update-network"]
    assert device(lab.running(Kind.NETWORK),
                  f"ip[192.168.77.1]/dhcp/host[{MAC_A}]") is not None
    lab.write(nics=[MAC_A])
    removed = lab.settled()
    assert verbs(removed, lab.network) == ["define", "update-network"]
    assert device(lab.running(Kind.NETWORK),
                  f"ip[192.168.77.1]/dhcp/host[{MAC_A}]") is None
    assert lab.guest_id() == started  # the guest on it never noticed


def test_a_guest_that_never_releases_a_device_leaves_it_pending(lab: Lab) -> None:
    lab.write(disks=["b.raw"])
    lab.settled()
    started = lab.guest_id()
    sim(lab).inject_fault("detach", Kind.DOMAIN, lab.guest, action="ignore")
    lab.write()
    first = lab.apply()  # no error: the device is noted and the change is pending
    (detach,) = [r for r in first.report.results if r.action.verb == "detach-device"]
    assert "has not released" in detach.detail
    assert [c.path for c in first.remaining.pending[0].changes] == ["devices/disk[vdb]"]
    running = lab.running()
    assert device(running, "devices/disk[vdb]") is not None
    assert held(running) == {"devices/disk[vdb]"}
    again = lab.apply()  # not asked again, no error spiral
    assert again.plan.empty and again.plan.pending
    assert any("has not released" in n for n in again.plan.notes)
    assert lab.guest_id() == started
    restarted = lab.apply(api.Policy(allow_restart=True, force_stop=True))
    assert "start" in verbs(restarted, lab.guest)
    running = lab.running()
    assert device(running, "devices/disk[vdb]") is None and not held(running)


def test_no_live_keeps_todays_behaviour(lab: Lab) -> None:
    lab.write()
    lab.settled()
    lab.write(disks=["b.raw"], vcpus=(2, 2), dhcp_hosts=[(MAC_A, "11")])
    result = lab.apply(api.Policy(live=False))
    # The vcpus are noted on the running guest: the definition no longer shows them.
    assert verbs(result, lab.guest) == ["define", "note-pending"]
    assert verbs(result, lab.network) == ["define"]
    assert {p.key.name for p in result.remaining.pending} == {lab.guest, lab.network}
    assert device(lab.running(), "devices/disk[vdb]") is None
    # The same specs, live allowed again: what waited is applied without a restart.
    caught_up = lab.settled()
    assert_live_only(caught_up, lab, "attach-device", "set-vcpus")
    assert device(lab.running(), "devices/disk[vdb]") is not None


def test_diff_names_each_live_operation(lab: Lab, cli) -> None:  # noqa: ANN001
    lab.write(cdrom="")
    lab.settled()
    lab.write(disks=["b.raw"], cdrom="a.iso", vcpus=(2, 2), dhcp_hosts=[(MAC_A, "12")])
    shown = cli("-c", lab.uri, "diff", "-f", str(lab.specs))
    assert shown.code == 2, shown.out + shown.err
    for text in ("[live, attach disk vdb]", "[live, update media of disk hdc]",
                 "[live, set vcpus 1 -> 2 (no guest agent: the guest must online them "
                 "itself)]", f"[live, add DHCP host {MAC_A}]"):
        assert text in shown.out, shown.out
    assert "restart pending" not in shown.out
    doc = cli("-c", lab.uri, "diff", "-o", "json", "-f", str(lab.specs)).json()
    ops = {c.get("operation") for o in doc["objects"] for c in o["changes"]}
    assert "attach disk vdb" in ops


# -- libvirt's test driver: vcpus and networks live, no device hot-plug ------------------


@pytest.fixture
def test_lab(specs: Path, tmp_path: Path) -> Iterator[Lab]:
    libvirt = libvirt_module()
    keep = libvirt.open("test:///default")  # its state lives while a connection is open
    name = "vctl-live-" + secrets.token_hex(3)
    try:
        yield Lab(uri="test:///default", specs=specs, guest=name, network=name + "-n",
                  subnet=78, bridge="virbr78", images=tmp_path, timeout=2, dom_type="test",
                  os={"type": "hvm", "arch": "i686"})
    finally:
        purge_libvirt("test:///default", [name, name + "-n"])
        keep.close()


def test_test_driver_sets_vcpus_and_dhcp_hosts_live_and_keeps_disks_pending(
        test_lab: Lab, state_dir: Path) -> None:
    lab = test_lab
    lab.write(nics=[MAC_A])
    lab.settled()
    started = lab.guest_id()
    lab.write(nics=[MAC_A], vcpus=(2, 2), dhcp_hosts=[(MAC_A, "20")])
    result = lab.settled()
    assert_live_only(result, lab, "set-vcpus")
    assert verbs(result, lab.network) == ["define", "update-network"]
    assert vcpus_running(lab.running()) == 2
    assert device(lab.running(Kind.NETWORK), f"ip[192.168.78.1]/dhcp/host[{MAC_A}]") is not None
    lab.write(nics=[MAC_A], vcpus=(2, 2), dhcp_hosts=[(MAC_A, "20")], disks=["b.raw"])
    pending = lab.apply()  # no hot-plug on this driver: the disk waits for a restart
    assert verbs(pending, lab.guest) == ["define"]  # a whole new device needs no note
    assert [c.path for c in pending.plan.pending[0].changes] == ["devices/disk[vdb]"]
    assert lab.guest_id() == started


def test_a_live_change_that_did_not_take_is_an_error_naming_the_field(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.write(vcpus=(4, 1))
    lab.settled()
    monkeypatch.setattr(SimDriver, "set_vcpus", lambda *_a, **_k: None)  # says yes, does not
    lab.write(vcpus=(4, 3))
    desired = api.load([str(lab.specs)], use_cache=False)
    with api.connect(lab.uri) as driver:
        result = api.reconcile(desired, driver)
    (failed,) = [r for r in result.report.results if r.outcome == "failed"]
    assert failed.action.verb == "set-vcpus" and result.return_code == 1
    assert "vcpu/@current" in str(failed.error) and "1 running, 3 wanted" in str(failed.error)


def test_the_cli_applies_live_unless_told_no_live(lab: Lab, cli) -> None:  # noqa: ANN001
    lab.write()
    lab.settled()
    lab.write(disks=["b.raw"])
    held_back = cli("-c", lab.uri, "apply", "--no-live", "-f", str(lab.specs))
    assert held_back.code == 0 and "restart pending (devices/disk[vdb])" in held_back.out
    assert device(lab.running(), "devices/disk[vdb]") is None
    applied = cli("-c", lab.uri, "apply", "-f", str(lab.specs))
    assert applied.code == 0, applied.out + applied.err
    assert "attach disk vdb" in applied.out and "restart pending" not in applied.out
    assert device(lab.running(), "devices/disk[vdb]") is not None
