"""Restart-pending is what a restart would change (issue 20 B4-B8), planner side: only
fields virtctl changed while the guest ran (noted on the running guest) and whole
devices one side lacks are pending, never what the hypervisor fills in or rewrites
(addresses, cpu/@check); hot-plugged devices get a slot free in both definitions; an
active network's removals are found against its persistent definition; the applier's
`pending` outcome is printed. Pure; the end-to-end cases are in
tests/integration/test_live_truth.py."""

from __future__ import annotations

from dataclasses import replace as dc_replace

import pytest
from lxml import etree

from tests.unit.reconciler.plan.test_live_plan import CDROM, MAC, NIC, desired, dom, host, net, net_host
from virtctl.metadata import read_owner
from virtctl.model import Kind, Live
from virtctl.reconciler.plan.actions import (
    Define,
    DetachDevice,
    SetMemory,
    SetRunningNote,
    UpdateNetwork,
)
from virtctl.reconciler.apply.apply import ActionResult, Outcome, Report
from virtctl.reconciler.plan.classify import network_removals, stale_fields
from virtctl.reconciler.plan.diff import ChangeOp
from virtctl.reconciler.plan.identity import keep_assigned, place_hot_plugged
from virtctl.reconciler.plan.liverules import RunningNote, find, note_xml, read_note
from virtctl.reconciler.plan.plan import Policy, plan
from virtctl.render.report import report_json, report_text
from virtctl.xmlutil import parse, tostring

NIC_B = NIC.replace(MAC, "52:54:00:aa:00:02")


def slot(n: int) -> str:
    return f"<address type='pci' domain='0x0000' bus='0x00' slot='0x{n:02x}' function='0x0'/>"


def with_slot(device: str, n: int) -> str:
    end = "</interface>" if device.startswith("<interface") else "</disk>"
    return device.replace(end, slot(n) + end)


def test_an_address_the_spec_does_not_declare_is_never_restart_pending() -> None:
    """The hot-add of issue 20 B7: the running NIC at 0x04, its definition at 0x03."""
    defined = dom(CDROM + with_slot(NIC, 3))
    live = host(defined, running=dom(CDROM + with_slot(NIC, 4)))
    p = plan(desired(dom()), live)  # the spec declares no address
    assert p.actions == () and not p.pending


def test_a_cpu_check_the_hypervisor_rewrites_at_start_is_never_restart_pending() -> None:
    """An export of a virsh guest declares cpu/@check as defined ('none'); QEMU runs it
    as 'full'. A restart would not change that: nothing is pending."""
    cpu = ("<cpu mode='custom' match='exact' check='none'>"
           "<model fallback='forbid'>qemu64</model></cpu>")
    spec = dom().replace("<devices>", cpu + "<devices>")
    running = spec.replace("check='none'", "check='full'")
    p = plan(desired(spec), host(spec, running=running))
    assert p.actions == () and not p.pending


def test_a_field_is_pending_while_the_note_names_it_and_the_guest_differs() -> None:
    declared = parse(dom(vcpu="<vcpu current='1'>4</vcpu>"))
    running = parse(dom(vcpu="<vcpu current='2'>4</vcpu>"))
    assert stale_fields(declared, declared, running) == ()  # nobody said it changed
    meta = etree.SubElement(running, "metadata")
    meta.append(parse(note_xml(RunningNote(pending=frozenset({"vcpu/@current"})))))
    assert [c.path for c in stale_fields(declared, declared, running)] == ["vcpu/@current"]
    # Noted but equal again (applied, or declared as it runs): not pending.
    same = parse(tostring(running).replace("current=\"2\"", "current=\"1\""))
    assert stale_fields(declared, declared, same) == ()


def test_a_noted_removal_is_pending_while_the_guest_still_has_it() -> None:
    declared = parse(dom(CDROM.replace("<source file='/isos/a.iso'/>", "") + NIC))
    running = parse(dom())
    meta = etree.SubElement(running, "metadata")
    meta.append(parse(note_xml(RunningNote(pending=frozenset({"devices/disk[hdc]/source"})))))
    (found,) = stale_fields(declared, declared, running)
    assert (found.op, found.path) == (ChangeOp.REMOVE, "devices/disk[hdc]/source")


def test_a_hot_plugged_nic_gets_a_slot_free_in_both_definitions() -> None:
    """The definition has 0x03 free; the running guest still has an unreleased disk at
    0x04: the new NIC gets 0x05 in the definition, so the attach can put it there."""
    disk = "<disk type='file'><source file='/img/z'/><target dev='vdz' bus='virtio'/></disk>"
    defined = dom(CDROM + with_slot(NIC, 3)).replace(
        "<devices>", "<devices><controller type='pci' index='0' model='pci-root'/>")
    running = defined.replace("</devices>", with_slot(disk, 4) + "</devices>")
    spec = dom(CDROM + NIC + NIC_B).replace(
        "<devices>", "<devices><controller type='pci' index='0' model='pci-root'/>")
    p = plan(desired(spec), host(defined, running=running))
    define = next(a for a in p.actions if isinstance(a, Define))
    placed = find(parse(define.xml), "devices/interface[52:54:00:aa:00:02]/address")
    assert placed is not None and placed.get("slot") == "0x05"
    assert [a.verb for a in p.actions] == ["define", "attach-device"]


def test_place_hot_plugged_leaves_pcie_machines_and_declared_addresses_alone() -> None:
    root = parse(dom(CDROM + NIC + with_slot(NIC_B, 9)))
    live = parse(dom())
    running = parse(dom().replace("<devices>", "<devices><controller type='pci' index='0' "
                                                "model='pcie-root'/>"))
    place_hot_plugged(root, [f"devices/interface[{MAC}]"], live, running)
    assert find(root, f"devices/interface[{MAC}]/address") is None  # q35: libvirt picks
    legacy = parse(tostring(running).replace("pcie-root", "pci-root"))
    place_hot_plugged(root, ["devices/interface[52:54:00:aa:00:02]"], live, legacy)
    assert [a.get("slot") for a in root.iterfind("devices/interface/address")] == ["0x09"]
    place_hot_plugged(root, [f"devices/interface[{MAC}]"], live, legacy)
    assert find(root, f"devices/interface[{MAC}]/address").get("slot") == "0x03"


def test_the_balloon_libvirt_added_keeps_its_slot_on_a_redefine() -> None:
    live = parse(dom(NIC).replace("</devices>", "<memballoon model='virtio'><alias name='b'/>"
                                  + slot(3) + "</memballoon></devices>"))
    root = parse(dom(NIC + NIC_B))
    keep_assigned(root, live)
    kept = root.find("devices/memballoon")
    assert kept is not None and kept.find("address").get("slot") == "0x03"
    assert kept.find("alias") is None
    declared = parse(dom(NIC + "<memballoon model='none'/>"))
    keep_assigned(declared, live)
    assert [b.get("model") for b in declared.iterfind("devices/memballoon")] == ["none"]


def test_an_active_network_runs_what_its_definition_dropped() -> None:
    persistent = parse("<network><name>lan</name><portgroup name='a'/>"
                       "<ip address='10.9.0.1' prefix='24'><dhcp>"
                       "<range start='10.9.0.10' end='10.9.0.50'/></dhcp></ip></network>")
    running = parse("<network connections='3'><name>lan</name><portgroup name='a'/>"
                    "<portgroup name='eng'/><ip address='10.9.0.1' prefix='24'><dhcp>"
                    "<range start='10.9.0.10' end='10.9.0.50'/>"
                    "<host mac='52:54:00:00:00:99' ip='10.9.0.99'/></dhcp></ip></network>")
    found = {(c.op, c.path) for c in network_removals(persistent, running)}
    assert found == {(ChangeOp.REMOVE, "portgroup[eng]"),
                     (ChangeOp.REMOVE, "ip[10.9.0.1]/dhcp/host[52:54:00:00:00:99]")}
    assert network_removals(persistent, persistent) == []


def test_a_note_without_entries_is_removed_and_reads_back() -> None:
    note = RunningNote(unreleased=frozenset({"devices/disk[vdb]"}),
                       pending=frozenset({"memory"}), refused=frozenset({"currentMemory"}))
    root = parse(dom())
    etree.SubElement(root, "metadata").append(parse(note_xml(note)))
    assert read_note(root) == note and note.paths == {"memory", "currentMemory"}
    assert note_xml(RunningNote()) is None and not read_note(None)


def test_the_pending_outcome_is_printed_and_counted() -> None:
    memory = SetMemory(kind=Kind.DOMAIN, name="web", kib=98304)
    detach = DetachDevice(kind=Kind.DOMAIN, name="web", device="devices/disk[vdb]", xml="<d/>",
                          reason="detach disk vdb")
    note = SetRunningNote(kind=Kind.DOMAIN, name="web", xml=None)
    report = Report(results=(
        ActionResult(note, Outcome.DONE),
        ActionResult(memory, Outcome.PENDING, detail="the guest's balloon is at 131072 KiB"),
        ActionResult(detach, Outcome.PENDING, detail="the guest has not released it")))
    text = report_text(report)
    assert "  pending set memory 98304 KiB domain/web: the guest's balloon is at" in text
    assert "  pending detach disk vdb domain/web: the guest has not released it" in text
    assert "Applied: 1 done, 2 pending (restart pending), 0 failed, 0 skipped." in text
    assert report.return_code == 0
    doc = report_json(report)
    assert doc["pending"] == 2 and [r["outcome"] for r in doc["results"]] == [
        "done", "pending", "pending"]


def test_a_dhcp_host_attribute_dropped_is_modified_away_live_and_then_settles() -> None:
    """A name dropped from a DHCP host: the live modify sends the host without it (not
    with the running name kept), so the network does not stay pending forever."""
    named = "<host mac='52:54:00:00:00:99' name='db' ip='10.9.0.99'/>"
    bare = "<host mac='52:54:00:00:00:99' ip='10.9.0.99'/>"
    p = plan(desired(net(bare)), net_host(net(named)))
    (update,) = [a for a in p.actions if isinstance(a, UpdateNetwork)]
    assert update.command == "modify" and "name=" not in update.xml
    # An earlier --no-live run defined it: the running network alone still has the name.
    before = net_host(net(named)).networks["lan"]
    defined = next(a for a in plan(desired(net(bare)), net_host(net(named))).actions
                   if isinstance(a, Define))
    later = dc_replace(before, xml=defined.xml, owner=read_owner(parse(defined.xml)))
    again = plan(desired(net(bare)), Live(networks={"lan": later}))
    (update,) = [a for a in again.actions if isinstance(a, UpdateNetwork)]
    assert update.command == "modify" and "name=" not in update.xml


HOSTDEV = ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
           "<address domain='0x0000' bus='0x06' slot='0x00' function='0x0'/></source></hostdev>")
LINK_DOWN = NIC.replace("</interface>", "<link state='down'/></interface>")
VNC = "<graphics type='vnc' port='5901' passwd='secret'/>"


@pytest.mark.parametrize(("before", "after", "path"), [
    pytest.param(CDROM + NIC + HOSTDEV, CDROM + NIC, None, id="hostdev"),
    pytest.param(CDROM + LINK_DOWN, CDROM + NIC, f"devices/interface[{MAC}]/link", id="link"),
    pytest.param(CDROM + NIC + VNC, CDROM + NIC + VNC.replace(" passwd='secret'", ""),
                 "devices/graphics[vnc]/@passwd", id="graphics-passwd"),
    pytest.param(CDROM + NIC, CDROM.replace("<source file='/isos/a.iso'/>", "") + NIC,
                 "devices/disk[hdc]/source", id="cd-medium"),
])
def test_every_removal_with_no_live_stays_pending_in_later_runs(
        before: str, after: str, path: str | None) -> None:
    """Run 1 (--no-live) redefines and notes; run 2, with the definition no longer
    holding it and the running guest still having it, still reports it pending."""
    old = host(dom(before))
    first = plan(desired(dom(after)), old, policy=Policy(live=False))
    assert first.pending
    pending = [c.path for c in first.pending[0].changes]
    define = next(a for a in first.actions if isinstance(a, Define))
    guest = old.domains["web"]
    assert guest.running_xml is not None
    running = parse(guest.running_xml)
    note = [a for a in first.actions if isinstance(a, SetRunningNote)]
    if note:
        meta = running.find("metadata")
        meta.append(parse(note[0].xml))
    later = dc_replace(guest, xml=define.xml, owner=read_owner(parse(define.xml)),
                       running_xml=tostring(running))
    second = plan(desired(dom(after)), Live(domains={"web": later}),
                  policy=Policy(live=False))
    assert second.empty and second.pending
    assert [c.path for c in second.pending[0].changes] == pending
    if path is not None:
        assert pending == [path]


@pytest.mark.parametrize("entry", [
    "<dns><host ip='10.9.0.5'><hostname>a</hostname></host></dns>",
    "<dns><txt name='t' value='v'/></dns>",
])
def test_dns_entries_and_dhcp_ranges_dropped_stay_pending_on_an_active_network(
        entry: str) -> None:
    persistent = parse(net())
    running = parse(net(dns=entry).replace(
        "<range start='10.9.0.10' end='10.9.0.50'/>",
        "<range start='10.9.0.10' end='10.9.0.50'/><range start='10.9.0.60' end='10.9.0.70'/>"))
    found = sorted(c.path for c in network_removals(persistent, running))
    assert len(found) == 2 and found[0].startswith("dns") and "range[10.9.0.60]" in found[1]


def test_the_last_device_removed_stays_pending_while_the_guest_runs_it() -> None:
    """A spec left without any device defines no <devices> at all: the disk the guest
    did not release is still restart-pending (it was silently dropped)."""
    bare = parse("<domain type='kvm'><name>web</name><memory unit='MiB'>512</memory>"
                 "<os><type arch='x86_64'>hvm</type></os></domain>")
    running = parse(dom("<disk type='file'><source file='/img/b'/>"
                        "<target dev='vdb' bus='virtio'/></disk>"))
    (found,) = stale_fields(bare, bare, running)
    assert (found.op, found.path) == (ChangeOp.REMOVE, "devices/disk[vdb]")
