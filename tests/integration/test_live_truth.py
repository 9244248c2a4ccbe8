"""What the plan says is what happens (issue 20 B4-B8), on the sim and on a real QEMU
guest on qemu:///system (an OS-less guest: it has no balloon driver and never answers a
hot-unplug, which is what these cases need):

* a removal applied with --no-live (a DHCP host, a port group, a CD medium, fewer vcpus)
  stays restart-pending in `diff` and `get` while the running guest or network still has
  it, and a later live run applies it;
* a balloon change the guest does not take is reported `pending` in the same run (text
  and JSON), not asked again, and stays pending until a restart;
* a device the guest did not release is reported `pending` in the same run, and the note
  is cleared when the device is declared again;
* a hot-added NIC gets the same PCI slot in the running guest as in its definition, in
  one attach call, and nothing is restart-pending afterwards;
* a live attach the host refuses says the definition holds it and is not asked again.

Sim names are fixed (the state directory is the test's own); QEMU names are
vctl-live-<random>, removed afterwards however a test ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import purge_libvirt
from tests.integration.live_scenarios import Lab, device, held, vcpus_running, verbs
from tests.integration.test_live_updates_qemu import conn, make_lab  # noqa: F401
from virtctl import api
from virtctl.render import report as render
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import Kind, ObjectKey
from virtctl.reconciler.apply.apply import Outcome
from virtctl.reconciler.plan.liverules import read_note
from virtctl.uri import parse_uri
from virtctl.xmlutil import parse

MAC_A, MAC_B = "52:54:00:5e:02:0a", "52:54:00:5e:02:0b"


@pytest.fixture(params=["sim", "qemu"])
def host(request: pytest.FixtureRequest, specs: Path, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Lab, str]]:
    """(lab, disk image name) on the sim or on qemu:///system."""
    if request.param == "sim":
        monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")
        yield Lab(uri="sim:///truth", specs=specs, guest="web", network="lan", subnet=79,
                  bridge="virbr79", images=tmp_path / "images", dom_type="kvm",
                  timeout=1), "b.raw"
        return
    lab, files = make_lab(request.getfixturevalue("conn"), specs, booted=False, timeout=1)
    try:
        yield lab, "b.qcow2"
    finally:
        purge_libvirt(lab.uri, [lab.guest, lab.network])
        files.remove()


def sim_fault(lab: Lab, op: str, action: str) -> None:
    """On the sim, a guest that does what an OS-less QEMU guest does (ignore)."""
    if lab.uri.startswith("sim"):
        SimDriver(parse_uri(lab.uri)).inject_fault(op, Kind.DOMAIN, lab.guest, action=action)


def plan_now(lab: Lab, policy: api.Policy | None = None) -> api.Plan:
    """What `diff` shows now."""
    desired = api.load([str(lab.specs)], use_cache=False)
    with api.connect(lab.uri) as driver:
        return api.plan(desired, driver, policy=policy or api.Policy(detach_timeout=lab.timeout))


def pending_paths(planned: api.Plan, kind: Kind, name: str) -> list[str]:
    found = planned.pending_of(ObjectKey(kind, name))
    return [c.path for c in found.changes] if found is not None else []


def get_pending(lab: Lab) -> tuple[str | None, str | None]:
    """The PENDING column of `get domains` and `get networks` for the lab's objects."""
    with api.connect(lab.uri) as driver:
        live = driver.snapshot()
    return (render.pending_of(live.domains[lab.guest]),
            render.network_pending_of(live.networks[lab.network]))


def results(result: api.Result, verb: str) -> list[object]:
    return [r for r in result.report.results if r.action.verb == verb]


# -- B4: --no-live removals -------------------------------------------------------------


def test_no_live_removals_stay_pending_until_a_live_run_applies_them(
        host: tuple[Lab, str]) -> None:
    lab, _ = host
    base = f"ip[192.168.{lab.subnet}.1]"
    lab.write(nics=[MAC_A], vcpus=(2, 2), dhcp_hosts=[(MAC_A, "11")], portgroups=["eng"])
    lab.settled()
    started = lab.guest_id()

    lab.write(nics=[MAC_A], vcpus=(2, 1))  # fewer vcpus, no DHCP host, no port group
    lab.apply(api.Policy(live=False, detach_timeout=lab.timeout))
    for _ in range(2):  # every later run, not only the one that redefined
        planned = plan_now(lab, api.Policy(live=False))
        assert planned.empty
        assert pending_paths(planned, Kind.DOMAIN, lab.guest) == ["vcpu/@current"]
        assert sorted(pending_paths(planned, Kind.NETWORK, lab.network)) == [
            f"{base}/dhcp/host[{MAC_A}]", "portgroup[eng]"]
        assert get_pending(lab) == ("restart", "restart")
    assert device(lab.running(Kind.NETWORK), f"{base}/dhcp/host[{MAC_A}]") is not None
    assert vcpus_running(lab.running()) == 2

    # Live allowed again: the network entries go live; fewer vcpus wait for the restart.
    caught_up = lab.apply()
    assert sorted(a.reason for a in caught_up.plan.actions if a.name == lab.network) == [
        "delete DHCP host " + MAC_A, "delete port group eng"]
    assert device(lab.running(Kind.NETWORK), f"{base}/dhcp/host[{MAC_A}]") is None
    assert device(lab.running(Kind.NETWORK), "portgroup[eng]") is None
    assert get_pending(lab) == ("restart", None)
    assert lab.guest_id() == started
    restarted = lab.apply(api.Policy(allow_restart=True, force_stop=True,
                                     detach_timeout=lab.timeout))
    assert verbs(restarted, lab.guest) == ["shutdown", "start"]
    assert vcpus_running(lab.running()) == 1 and get_pending(lab) == (None, None)
    assert plan_now(lab).empty and not plan_now(lab).pending


def test_a_cd_medium_removed_with_no_live_or_next_boot_stays_pending(
        state_dir: Path, specs: Path, tmp_path: Path) -> None:
    lab = Lab(uri="sim:///truth", specs=specs, guest="web", network="lan", subnet=79,
              bridge="virbr79", images=tmp_path / "images", dom_type="kvm", timeout=1)
    lab.write(cdrom="a.iso")
    lab.settled()
    lab.write(cdrom="")
    lab.apply(api.Policy(live=False))
    planned = plan_now(lab, api.Policy(live=False))
    assert pending_paths(planned, Kind.DOMAIN, lab.guest) == ["devices/disk[hdc]/source"]
    assert get_pending(lab)[0] == "restart"
    # updatePolicy: next-boot keeps it the same way, run after run.
    lab.write(cdrom="", update_policy="next-boot")
    assert pending_paths(plan_now(lab), Kind.DOMAIN, lab.guest) == ["devices/disk[hdc]/source"]
    lab.apply()
    assert pending_paths(plan_now(lab), Kind.DOMAIN, lab.guest) == ["devices/disk[hdc]/source"]
    # Live allowed: the medium is ejected without a restart.
    lab.write(cdrom="")
    assert verbs(lab.settled(), lab.guest) == ["note-pending", "update-device"]
    assert device(lab.running(), "devices/disk[hdc]").find("source") is None


def test_a_nic_removed_with_no_live_is_detached_by_the_next_live_run(
        state_dir: Path, specs: Path, tmp_path: Path) -> None:
    lab = Lab(uri="sim:///truth", specs=specs, guest="web", network="lan", subnet=79,
              bridge="virbr79", images=tmp_path / "images", dom_type="kvm", timeout=1)
    lab.write(nics=[MAC_A, MAC_B])
    lab.settled()
    lab.write(nics=[MAC_A])
    lab.apply(api.Policy(live=False))
    assert pending_paths(plan_now(lab, api.Policy(live=False)), Kind.DOMAIN, lab.guest) == [
        f"devices/interface[{MAC_B}]"]
    caught_up = lab.settled()  # the spec removed it: virtctl may unplug it
    assert verbs(caught_up, lab.guest) == ["note-pending", "detach-device"]
    assert device(lab.running(), f"devices/interface[{MAC_B}]") is None


# -- B5: a balloon the guest does not move ------------------------------------------------


def test_a_balloon_change_the_guest_does_not_take_is_reported_and_stays_pending(
        host: tuple[Lab, str]) -> None:
    lab, _ = host
    lab.write(current_memory="128MiB")
    lab.settled()
    sim_fault(lab, "set_memory", "ignore")  # no balloon driver, like the OS-less guest
    lab.write(current_memory="96MiB")
    result = lab.apply()  # exit 0: reported, not failed
    (memory,) = results(result, "set-memory")
    assert memory.outcome is Outcome.PENDING and "balloon" in memory.detail
    text = render.report_text(result.report)
    assert f"pending set memory 98304 KiB domain/{lab.guest}: " in text
    assert "1 pending (restart pending)" in text
    doc = json.loads(json.dumps(render.report_json(result.report)))
    assert doc["pending"] == 1
    assert [r["outcome"] for r in doc["results"] if r["op"] == "set-memory"] == ["pending"]
    assert pending_paths(result.remaining, Kind.DOMAIN, lab.guest) == ["currentMemory"]
    again = plan_now(lab)  # not asked again; still pending
    assert again.empty and pending_paths(again, Kind.DOMAIN, lab.guest) == ["currentMemory"]
    assert get_pending(lab)[0] == "restart"
    restarted = lab.apply(api.Policy(allow_restart=True, force_stop=True,
                                     detach_timeout=lab.timeout))
    assert verbs(restarted, lab.guest) == ["shutdown", "start"]
    assert not plan_now(lab).pending and get_pending(lab)[0] is None


# -- B6: devices the guest did not release -------------------------------------------------


def test_an_unreleased_device_is_reported_in_the_same_run_and_cleared_when_declared_again(
        host: tuple[Lab, str]) -> None:
    lab, image = host
    lab.write(disks=[image])
    lab.settled()
    sim_fault(lab, "detach", "ignore")  # never released, like the OS-less guest
    lab.write()
    result = lab.apply()  # exit 0: the change is restart-pending, reported now
    (detach,) = results(result, "detach-device")
    assert detach.outcome is Outcome.PENDING and "has not released" in detach.detail
    text = render.report_text(result.report)
    assert f"pending detach disk vdb domain/{lab.guest}: the guest has not released" in text
    doc = render.report_json(result.report)
    assert [r["outcome"] for r in doc["results"] if r["op"] == "detach-device"] == ["pending"]
    assert held(lab.running()) == {"devices/disk[vdb]"}
    # Declared again: the stale note goes, so a later removal asks the guest again.
    lab.write(disks=[image])
    back = lab.settled()
    assert "note-pending" in verbs(back, lab.guest)
    assert not held(lab.running()) and not read_note(lab.running())


# -- B7: phantom restart-pending --------------------------------------------------------------


def test_a_hot_added_nic_runs_at_the_slot_of_its_definition(host: tuple[Lab, str]) -> None:
    lab, _ = host
    lab.write(nics=[MAC_A])
    lab.settled()
    lab.write(nics=[MAC_A, MAC_B])
    added = lab.settled()  # settled: nothing pending afterwards either
    (attach,) = results(added, "attach-device")
    assert attach.outcome is Outcome.DONE and attach.detail == ""  # one call, no retry
    key = f"devices/interface[{MAC_B}]"
    with api.connect(lab.uri) as driver:
        persistent = parse(driver.definition(Kind.DOMAIN, lab.guest))
    live_address = device(lab.running(), key).find("address")
    defined_address = device(persistent, key).find("address")
    if lab.uri.startswith("qemu"):
        assert live_address is not None and defined_address is not None
    if live_address is not None and defined_address is not None:
        assert dict(live_address.attrib) == dict(defined_address.attrib)


# -- B8: a live change the host refuses ---------------------------------------------------------


def test_a_refused_hot_plug_says_the_definition_holds_it_and_is_not_asked_again(
        state_dir: Path, specs: Path, tmp_path: Path) -> None:
    lab = Lab(uri="sim:///truth", specs=specs, guest="web", network="lan", subnet=79,
              bridge="virbr79", images=tmp_path / "images", dom_type="kvm", timeout=1)
    lab.write(nics=[MAC_A])
    lab.settled()
    sim_fault(lab, "attach", "fail")
    lab.write(nics=[MAC_A, MAC_B])
    desired = api.load([str(lab.specs)], use_cache=False)
    with api.connect(lab.uri) as driver:
        result = api.reconcile(desired, driver, policy=api.Policy(detach_timeout=1))
    assert result.return_code == 1
    (attach,) = results(result, "attach-device")
    assert attach.outcome is Outcome.FAILED
    assert "the definition already holds the change" in str(attach.error)
    assert "next boot" in render.report_text(result.report)
    (item,) = [r for r in render.report_json(result.report)["results"]
               if r["op"] == "attach-device"]
    assert "the definition already holds the change" in item["error"]["message"]
    SimDriver(parse_uri(lab.uri)).clear_faults()
    again = plan_now(lab)
    assert again.empty  # not asked again before the restart
    assert pending_paths(again, Kind.DOMAIN, lab.guest) == [f"devices/interface[{MAC_B}]"]
    restarted = lab.apply(api.Policy(allow_restart=True, force_stop=True))
    assert verbs(restarted, lab.guest) == ["shutdown", "start"]
    assert device(lab.running(), f"devices/interface[{MAC_B}]") is not None
    assert plan_now(lab).empty and not plan_now(lab).pending


def test_a_refused_network_update_says_the_definition_holds_it(
        state_dir: Path, specs: Path, tmp_path: Path) -> None:
    lab = Lab(uri="sim:///truth", specs=specs, guest="web", network="lan", subnet=79,
              bridge="virbr79", images=tmp_path / "images", dom_type="kvm", timeout=1)
    lab.write()
    lab.settled()
    SimDriver(parse_uri(lab.uri)).inject_fault("update_network", Kind.NETWORK, lab.network)
    lab.write(dhcp_hosts=[(MAC_A, "12")])
    desired = api.load([str(lab.specs)], use_cache=False)
    with api.connect(lab.uri) as driver:
        result = api.reconcile(desired, driver, policy=api.Policy(detach_timeout=1))
    (update,) = results(result, "update-network")
    assert update.outcome is Outcome.FAILED and result.return_code == 1
    assert "the network's definition already holds the change" in str(update.error)
    entry = f"ip[192.168.{lab.subnet}.1]/dhcp/host[{MAC_A}]"
    with api.connect(lab.uri) as driver:
        defined = parse(driver.definition(Kind.NETWORK, lab.network))
    assert device(defined, entry) is not None  # as the message says
    assert device(lab.running(Kind.NETWORK), entry) is None
    # No live note on networks: the next run tries the entry again.
    assert [a.verb for a in result.remaining.actions] == ["update-network"]
