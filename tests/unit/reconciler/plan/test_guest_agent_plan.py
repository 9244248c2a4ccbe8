"""Issue 22: what the guest agent changes in a plan. A disk detach is refused when the
agent says a filesystem on it is mounted (naming the mount point) unless --force-detach;
without an agent the plan says the guest loses the disk at once. Raising vcpus says
whether the agent onlines them or the guest must. Pure planner tests on the inputs the
agent gave; the agent itself is exercised by tests/integration/test_cloud_guest_qemu.py."""

from __future__ import annotations

from lxml import etree

from virtctl.reconciler.plan.actions import DetachDevice, SetRunningNote, SetVcpus
from virtctl.reconciler.apply.guestagent import guard_detaches, has_agent
from virtctl.reconciler.plan.liverules import read_note
from virtctl.reconciler.plan.plan import plan
from virtctl.drivers.libvirt.live import online_count
from virtctl.xmlutil import parse

from tests.unit.reconciler.plan.test_live_plan import CDROM, NIC, desired, dom, host

DATA = ("<disk type='file' device='disk'><source file='/img/data.raw'/>"
        "<target dev='vdb' bus='virtio'/></disk>")
AGENT = ("<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' "
         "state='{state}'/></channel>")


def detach_plan():  # noqa: ANN201
    p = plan(desired(dom(CDROM + NIC)), host(dom(CDROM + NIC + DATA)))
    assert [a.device for a in p.actions if isinstance(a, DetachDevice)] == [
        "devices/disk[vdb]"]
    return p


def test_a_mounted_disk_is_not_detached_and_the_plan_names_the_mount() -> None:
    guarded = guard_detaches(detach_plan(), {"web": {"vdb": ("/data",), "vda": ("/",)}},
                             force=False)
    assert not [a for a in guarded.actions if isinstance(a, DetachDevice)]
    assert any("disk vdb: not detached" in n and "mounted at /data" in n
               and "--force-detach" in n for n in guarded.notes), guarded.notes


def test_force_detach_detaches_a_mounted_disk_and_says_so() -> None:
    guarded = guard_detaches(detach_plan(), {"web": {"vdb": ("/data",)}}, force=True)
    assert [a for a in guarded.actions if isinstance(a, DetachDevice)]
    assert any("mounted at /data" in n and "--force-detach" in n for n in guarded.notes)


def test_an_unmounted_disk_is_detached_without_a_word() -> None:
    before = detach_plan()
    assert guard_detaches(before, {"web": {"vda": ("/",)}}, force=False) == before


def test_without_an_agent_the_plan_says_the_guest_loses_the_disk_at_once() -> None:
    guarded = guard_detaches(detach_plan(), {"web": None}, force=False)
    assert [a for a in guarded.actions if isinstance(a, DetachDevice)]
    assert any("disk vdb" in n and "loses the disk at once" in n for n in guarded.notes)


def test_an_agent_counts_only_when_connected() -> None:
    for state, expected in (("connected", True), ("disconnected", False)):
        root = parse(dom(CDROM + AGENT.format(state=state)))
        assert has_agent(root) is expected
    assert not has_agent(parse(dom()))


def test_raising_vcpus_says_who_onlines_them() -> None:
    xml = dom(CDROM + AGENT.format(state="connected"))
    running = parse(xml)
    running.find("devices/channel/target").set("state", "connected")
    want = dom(CDROM + AGENT.format(state="connected"), vcpu="<vcpu current='2'>4</vcpu>")
    p = plan(desired(want), host(xml))
    [setv] = [a for a in p.actions if isinstance(a, SetVcpus)]
    assert setv.reason == "set vcpus 1 -> 2 (onlined through the guest agent)"


def test_online_count_reads_libvirt_cpu_lists() -> None:
    assert online_count("0-1,3") == 3
    assert online_count("0") == 1
    assert online_count("") == 0


def test_a_refused_detach_is_noted_so_a_later_run_still_detaches_it() -> None:
    """The definition loses the disk at once; without a note the next run would take
    the disk for one plugged by hand and never detach it, --force-detach or not."""
    running = parse(dom(CDROM + NIC + DATA))
    guarded = guard_detaches(detach_plan(), {"web": {"vdb": ("/data",)}}, force=False,
                             running={"web": running})
    [note] = [a for a in guarded.actions if isinstance(a, SetRunningNote)]
    assert read_note(parse(f"<domain><metadata>{note.xml}</metadata></domain>")).pending \
        == {"devices/disk[vdb]"}
    # The next run: defined without vdb, the guest still runs it, the note says why.
    later = plan(desired(dom(CDROM + NIC)),
                 host(dom(CDROM + NIC), running=dom(CDROM + NIC + DATA), note=note.xml))
    assert [a.device for a in later.actions if isinstance(a, DetachDevice)] == [
        "devices/disk[vdb]"]
    without = plan(desired(dom(CDROM + NIC)),
                   host(dom(CDROM + NIC), running=dom(CDROM + NIC + DATA)))
    assert not [a for a in without.actions if isinstance(a, DetachDevice)]


def test_a_refused_detach_is_restart_pending_and_a_noted_guest_needs_nothing_more() -> None:
    running = parse(dom(CDROM + NIC + DATA))
    guarded = guard_detaches(detach_plan(), {"web": {"vdb": ("/data",)}}, force=False,
                             running={"web": running})
    assert [c.path for p in guarded.pending for c in p.changes] == ["devices/disk[vdb]"]
    assert not [c for _, cs in guarded.changes for c in cs if c.path == "devices/disk[vdb]"]
    [note] = [a for a in guarded.actions if isinstance(a, SetRunningNote)]
    # The run after: the guest has the note; still mounted: nothing to do, no error.
    noted = dom(CDROM + NIC)
    later = plan(desired(noted), host(noted, running=dom(CDROM + NIC + DATA), note=note.xml))
    again = guard_detaches(later, {"web": {"vdb": ("/data",)}}, force=False,
                           running={"web": parse(later_running(note.xml))})
    assert not again.actions, again.actions
    assert [c.path for p in again.pending for c in p.changes] == ["devices/disk[vdb]"]


def later_running(note: str) -> str:
    root = parse(dom(CDROM + NIC + DATA))
    meta = root.find("metadata")
    if meta is None:
        meta = etree.SubElement(root, "metadata")
    meta.append(parse(note))
    return etree.tostring(root).decode()
