"""Live changes: which differences a running guest or network takes without a restart,
the one operation each gets, and when virtctl keeps to restart-pending instead
(--no-live, updatePolicy: next-boot, a host without the operation, a device the guest
did not release). Pure planner tests; the drivers are in tests/contract and the whole
loop in tests/integration/test_live_updates*.py."""

from __future__ import annotations

import pytest
from lxml import etree

from virtctl.model import (
    ChangeClass,
    Desired,
    DomainSpec,
    NetworkSpec,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    LiveNetwork,
    LiveOp,
    NetworkCommand,
    NetworkSection,
)
from virtctl.reconciler.plan.actions import (
    AttachDevice,
    Define,
    DetachDevice,
    SetVcpus,
    UpdateDevice,
    UpdateNetwork,
)
from virtctl.reconciler.plan.liverules import find, overlay, split_path, unreleased, unreleased_note
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan import Plan, Policy, plan
from virtctl.render.report import plan_json, plan_text
from virtctl.xmlutil import LIVE_NS, parse, tostring

UUID = "5b0c9d2e-7f41-4c6a-8e1b-2d3f4a5b6c02"
MAC = "52:54:00:aa:00:01"
CDROM = ("<disk type='file' device='cdrom'><source file='/isos/a.iso'/>"
         "<target dev='hdc' bus='ide'/><readonly/></disk>")
NIC = f"<interface type='network'><mac address='{MAC}'/><source network='lan'/>" \
      "<model type='virtio'/></interface>"


def dom(devices: str = CDROM + NIC, *, vcpu: str = "<vcpu current='1'>4</vcpu>",
        policy: str = "", features: str = "<features><acpi/></features>") -> str:
    rules = (f'<metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" '
             f'{policy}/></metadata>' if policy else "")
    return (f"<domain type='kvm'><name>web</name><uuid>{UUID}</uuid>{rules}"
            f"<memory unit='MiB'>512</memory>{vcpu}"
            f"<os><type arch='x86_64' machine='pc'>hvm</type></os>{features}"
            f"<devices>{devices}</devices></domain>")


def desired(xml: str) -> Desired:
    specs = load_text(xml, source="spec.xml")
    return Desired(domains={s.name: s for s in specs if isinstance(s, DomainSpec)},
                   networks={s.name: s for s in specs if isinstance(s, NetworkSpec)})


def host(xml: str, *, running: str | None = None, note: str | None = None) -> Live:
    """A host running the guest as first applied from `xml` (owner mark and last-applied
    record included); `running` overrides the running definition; `note` goes into its
    live metadata."""
    define = plan(desired(xml), Live()).actions[0]
    assert isinstance(define, Define)
    from virtctl.metadata import read_owner

    root = parse(running or define.xml)
    root.set("id", "7")
    if note is not None:
        meta = root.find("metadata")
        if meta is None:
            meta = etree.SubElement(root, "metadata")
        meta.append(parse(note))
    guest = LiveDomain(name="web", uuid=UUID, xml=define.xml, state=DomainState.RUNNING,
                       id=7, owner=read_owner(parse(define.xml)), running_xml=tostring(root))
    lan = LiveNetwork(name="lan", uuid="5b0c9d2e-7f41-4c6a-8e1b-2d3f4a5b6c03",
                      xml="<network><name>lan</name></network>", active=True)
    return Live(domains={"web": guest}, networks={"lan": lan})


def verbs(p: Plan) -> list[str]:
    return [a.verb for a in p.actions]


def only(p: Plan, kind: type):  # noqa: ANN201
    found = [a for a in p.actions if isinstance(a, kind)]
    assert len(found) == 1, p.actions
    return found[0]


def test_a_virtio_disk_is_hot_plugged_after_the_redefinition() -> None:
    disk = "<disk type='file'><source file='/img/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
    p = plan(desired(dom(CDROM + NIC + disk)), host(dom()))
    assert verbs(p) == ["define", "attach-device"]
    attach = only(p, AttachDevice)
    assert attach.device == "devices/disk[vdb]" and attach.reason == "attach disk vdb"
    assert parse(attach.xml).find("target").get("dev") == "vdb"
    (change,) = p.changes_of(attach.key)
    assert change.change_class is ChangeClass.LIVE and change.operation == "attach disk vdb"
    assert not p.pending and not p.restarts
    assert "[live, attach disk vdb]" in plan_text(p)
    assert plan_json(p)["objects"][0]["changes"][0]["operation"] == "attach disk vdb"


def test_an_ide_disk_waits_for_a_restart() -> None:
    disk = "<disk type='file'><source file='/img/b.qcow2'/><target dev='hdb' bus='ide'/></disk>"
    p = plan(desired(dom(CDROM + NIC + disk)), host(dom()))
    assert verbs(p) == ["define"]
    assert [c.path for c in p.pending[0].changes] == ["devices/disk[hdb]"]
    assert p.changes[0][1][0].change_class is ChangeClass.RESTART


def test_a_removed_nic_is_detached_with_the_timeout_of_the_policy() -> None:
    p = plan(desired(dom(CDROM)), host(dom()), policy=Policy(detach_timeout=4))
    detach = only(p, DetachDevice)
    assert detach.device == f"devices/interface[{MAC}]" and detach.timeout == 4
    assert detach.reason == f"detach interface {MAC}"
    assert verbs(p) == ["define", "detach-device"] and not p.pending


def test_a_device_the_guest_did_not_release_stays_pending_and_is_not_asked_again() -> None:
    note = unreleased_note([f"devices/interface[{MAC}]"])
    assert note is not None
    first = host(dom())
    live = host(dom(), running=first.domains["web"].running_xml, note=note)
    # The persistent definition already lacks the NIC: an earlier run removed it.
    no_nic = plan(desired(dom(CDROM)), live).actions[0]
    assert isinstance(no_nic, Define)
    guest = live.domains["web"]
    live = Live(domains={"web": LiveDomain(**{**{f: getattr(guest, f) for f in (
        "name", "uuid", "state", "autostart", "persistent", "id", "owner", "running_xml")},
        "xml": no_nic.xml})}, networks=live.networks)
    p = plan(desired(dom(CDROM)), live)
    assert not any(isinstance(a, DetachDevice) for a in p.actions)
    assert [c.path for c in p.pending[0].changes] == [f"devices/interface[{MAC}]"]
    assert any("has not released" in n for n in p.notes)


def test_cdrom_media_change_updates_the_running_device_in_place() -> None:
    new = CDROM.replace("/isos/a.iso", "/isos/b.iso")
    running = dom().replace("<target dev='hdc' bus='ide'/>",
                            "<target dev='hdc' bus='ide'/><alias name='ide0-1-0'/>")
    p = plan(desired(dom(new + NIC)), host(dom(), running=running))
    update = only(p, UpdateDevice)
    sent = parse(update.xml)
    assert sent.find("source").get("file") == "/isos/b.iso"
    assert sent.find("alias").get("name") == "ide0-1-0"  # what libvirt matches on, kept
    assert update.reason == "update media of disk hdc"


def test_ejecting_a_cdrom_sends_the_device_without_its_source() -> None:
    empty = "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>"
    p = plan(desired(dom(empty + NIC)), host(dom()))
    assert only(p, UpdateDevice).xml.count("source") == 0


def test_nic_link_state_is_live_but_its_model_is_not() -> None:
    down = NIC.replace("</interface>", "<link state='down'/></interface>")
    p = plan(desired(dom(CDROM + down)), host(dom()))
    assert only(p, UpdateDevice).reason == f"update link of interface {MAC}"
    e1000 = NIC.replace("virtio", "e1000")
    p = plan(desired(dom(CDROM + e1000)), host(dom()))
    assert verbs(p) == ["define", "note-pending"] and p.pending


@pytest.mark.parametrize(("vcpu", "expected"), [
    pytest.param("<vcpu current='3'>4</vcpu>", 3, id="up-within-max"),
    pytest.param("<vcpu>4</vcpu>", 4, id="current-dropped-means-all"),
])
def test_running_vcpus_change_within_the_maximum(vcpu: str, expected: int) -> None:
    p = plan(desired(dom(vcpu=vcpu)), host(dom()))
    setv = only(p, SetVcpus)
    assert setv.count == expected and setv.reason == (
        f"set vcpus 1 -> {expected} (no guest agent: the guest must online them itself)")
    assert not p.pending


def test_a_new_vcpu_maximum_needs_a_restart() -> None:
    p = plan(desired(dom(vcpu="<vcpu current='1'>8</vcpu>")), host(dom()))
    assert verbs(p) == ["define", "note-pending"]
    assert [c.path for c in p.pending[0].changes] == ["vcpu"]


@pytest.mark.parametrize("policy", [
    pytest.param(Policy(live=False), id="no-live"),
    pytest.param(None, id="updatePolicy-next-boot"),
])
def test_no_live_keeps_changes_for_the_next_boot(policy: Policy | None) -> None:
    rule = "update-policy='next-boot'" if policy is None else ""
    disk = "<disk type='file'><source file='/img/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
    p = plan(desired(dom(CDROM + NIC + disk, policy=rule)), host(dom(policy=rule)),
             policy=policy or Policy(allow_restart=True))
    assert verbs(p) == ["define"] and p.pending and not p.restarts


def test_a_host_without_the_operation_gets_no_live_action() -> None:
    disk = "<disk type='file'><source file='/img/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
    p = plan(desired(dom(CDROM + NIC + disk, vcpu="<vcpu current='2'>4</vcpu>")), host(dom()),
             live_ops=frozenset({LiveOp.VCPUS, LiveOp.NETWORK}))
    assert verbs(p) == ["define", "set-vcpus"]
    assert [c.path for c in p.pending[0].changes] == ["devices/disk[vdb]"]


def test_a_restart_that_must_happen_anyway_applies_the_live_changes_too() -> None:
    disk = "<disk type='file'><source file='/img/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
    p = plan(desired(dom(CDROM + NIC + disk, vcpu="<vcpu>8</vcpu>")), host(dom()),
             policy=Policy(allow_restart=True))
    assert verbs(p) == ["shutdown", "define", "start"]
    assert not any(isinstance(a, AttachDevice) for a in p.actions)


def test_a_change_only_the_running_guest_lacks_is_applied_live() -> None:
    """An earlier --no-live run redefined; this run hot-plugs what still only waits."""
    disk = "<disk type='file'><source file='/img/b.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
    before = host(dom()).domains["web"]
    defined = plan(desired(dom(CDROM + NIC + disk)), host(dom())).actions[0]
    assert isinstance(defined, Define)
    from virtctl.metadata import read_owner

    guest = LiveDomain(name="web", uuid=UUID, xml=defined.xml, state=DomainState.RUNNING,
                       id=7, owner=read_owner(parse(defined.xml)),
                       running_xml=before.running_xml)
    p = plan(desired(dom(CDROM + NIC + disk)), Live(domains={"web": guest}))
    assert verbs(p) == ["attach-device"]
    assert p.changes_of(guest.key)[0].change_class is ChangeClass.LIVE


# -- networks ---------------------------------------------------------------------------

NET_UUID = "5b0c9d2e-7f41-4c6a-8e1b-2d3f4a5b6c04"


def net(dhcp: str = "", dns: str = "", mode: str = "") -> str:
    forward = f"<forward mode='{mode}'/>" if mode else ""
    return (f"<network><name>lan</name><uuid>{NET_UUID}</uuid>{forward}"
            f"<bridge name='virbr77'/>{dns}"
            "<ip address='10.9.0.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='10.9.0.10' end='10.9.0.50'/>{dhcp}</dhcp></ip></network>")


def net_host(xml: str) -> Live:
    define = plan(desired(xml), Live()).actions[0]
    assert isinstance(define, Define)
    from virtctl.metadata import read_owner

    lan = LiveNetwork(name="lan", uuid=NET_UUID, xml=define.xml, active=True,
                      owner=read_owner(parse(define.xml)), running_xml=define.xml)
    return Live(networks={"lan": lan})


HOST = "<host mac='52:54:00:00:00:99' name='db' ip='10.9.0.99'/>"


def net_plan(before: str, after: str) -> Plan:
    return plan(desired(after), net_host(before))


def test_a_dhcp_host_is_added_live() -> None:
    p = net_plan(net(), net(HOST))
    assert verbs(p) == ["define", "update-network"]
    update = only(p, UpdateNetwork)
    assert (update.command, update.section) == (NetworkCommand.ADD, NetworkSection.DHCP_HOST)
    assert update.parent_index == 0 and update.reason == "add DHCP host 52:54:00:00:00:99"
    assert update.entry == "ip[10.9.0.1]/dhcp/host[52:54:00:00:00:99]"
    assert not p.pending and not p.restarts


def test_a_dhcp_host_is_modified_and_deleted_live() -> None:
    moved = HOST.replace("10.9.0.99", "10.9.0.98")
    assert only(net_plan(net(HOST), net(moved)), UpdateNetwork).command is NetworkCommand.MODIFY
    gone = only(net_plan(net(HOST), net()), UpdateNetwork)
    assert gone.command is NetworkCommand.DELETE and "10.9.0.99" in gone.xml


def test_a_dhcp_range_cannot_be_modified_so_it_is_replaced() -> None:
    p = net_plan(net(), net().replace("10.9.0.50", "10.9.0.60"))
    assert [(a.command, a.section) for a in p.actions if isinstance(a, UpdateNetwork)] == [
        (NetworkCommand.DELETE, NetworkSection.DHCP_RANGE),
        (NetworkCommand.ADD, NetworkSection.DHCP_RANGE)]


def test_dns_hosts_are_live_and_the_forward_mode_is_not() -> None:
    dns = "<dns><host ip='10.9.0.7'><hostname>cache</hostname></host></dns>"
    p = net_plan(net(dns="<dns/>"), net(dns=dns))
    assert only(p, UpdateNetwork).section is NetworkSection.DNS_HOST
    routed = net_plan(net(), net(mode="route"))
    assert verbs(routed) == ["define"] and routed.pending


def test_no_live_keeps_network_changes_for_a_restart() -> None:
    p = plan(desired(net(HOST)), net_host(net()), policy=Policy(live=False))
    assert verbs(p) == ["define"] and p.pending


# -- the pieces -------------------------------------------------------------------------


def test_paths_split_outside_keys_only() -> None:
    assert split_path("devices/filesystem[/mnt/a]/source/@dir") == [
        "devices", "filesystem[/mnt/a]", "source", "@dir"]
    root = parse(dom())
    assert find(root, "devices/disk[hdc]/source").get("file") == "/isos/a.iso"
    assert find(root, "devices/disk[vdz]") is None


def test_overlay_keeps_running_fields_and_drops_removed_ones() -> None:
    running = parse("<interface type='network'><mac address='52:54:00:00:00:01'/>"
                    "<model type='virtio'/><alias name='net0'/><link state='down'/></interface>")
    declared = parse("<interface type='network'><mac address='52:54:00:00:00:01'/>"
                     "<bandwidth><inbound average='100'/></bandwidth></interface>")
    out = overlay(running, declared, removed=["link"])
    assert out.find("model").get("type") == "virtio" and out.find("alias") is not None
    assert out.find("bandwidth/inbound").get("average") == "100" and out.find("link") is None


def test_the_unreleased_note_round_trips() -> None:
    note = unreleased_note(["devices/disk[vdb]", "devices/disk[vdb]", "devices/disk[sda]"])
    assert note is not None and LIVE_NS in note
    root = parse(dom())
    meta = etree.SubElement(root, "metadata")
    meta.append(parse(note))
    assert unreleased(root) == {"devices/disk[vdb]", "devices/disk[sda]"}
    assert unreleased_note([]) is None and unreleased(None) == frozenset()
    assert Kind.DOMAIN  # the vocabulary is importable alongside


def test_forward_interfaces_and_txt_records_are_keyed_by_name() -> None:
    # A pool of host interfaces belongs to a macvtap network (mode private), which routes
    # nothing: no bridge, no <ip> (netcheck refuses them there, as libvirt does).
    pool = (f"<network><name>lan</name><uuid>{NET_UUID}</uuid><forward mode='private'>"
            "<interface dev='eth1'/></forward></network>")
    grown = pool.replace("<interface dev='eth1'/>",
                         "<interface dev='eth1'/><interface dev='eth2'/>")
    before = net(dns="<dns><txt name='a' value='1'/></dns>")
    after = before.replace("<txt name='a' value='1'/>",
                           "<txt name='a' value='1'/><txt name='b' value='2'/>")
    found = [(a.section, a.entry) for old, new in ((pool, grown), (before, after))
             for a in net_plan(old, new).actions if isinstance(a, UpdateNetwork)]
    assert found == [(NetworkSection.FORWARD_INTERFACE, "forward/interface[eth2]"),
                     (NetworkSection.DNS_TXT, "dns/txt[b]")]


def test_a_device_hot_plugged_by_hand_is_never_unplugged_live() -> None:
    extra = ("<disk type='file'><source file='/img/theirs.qcow2'/>"
             "<target dev='vdc' bus='virtio'/></disk>")
    running = host(dom()).domains["web"].running_xml
    assert running is not None
    live = host(dom(), running=running.replace("</devices>", extra + "</devices>"))
    p = plan(desired(dom()), live)
    assert p.actions == () and [c.path for c in p.pending[0].changes] == ["devices/disk[vdc]"]


def test_fewer_running_vcpus_wait_for_a_restart() -> None:
    """QEMU 7.2 with libvirt 9.0 never reports a vcpu unplug: only raising is live."""
    p = plan(desired(dom(vcpu="<vcpu current='1'>4</vcpu>")),
             host(dom(vcpu="<vcpu current='3'>4</vcpu>")))
    assert not any(isinstance(a, SetVcpus) for a in p.actions)
    assert [c.path for c in p.pending[0].changes] == ["vcpu/@current"]


def test_current_vcpus_equal_to_the_maximum_are_what_libvirt_shows_without_current() -> None:
    """libvirt drops current= when every vcpu runs: no phantom difference, no action."""
    p = plan(desired(dom(vcpu="<vcpu current='4'>4</vcpu>")),
             host(dom(vcpu="<vcpu current='4'>4</vcpu>"), running=dom(vcpu="<vcpu>4</vcpu>")))
    assert p.actions == () and not p.pending


def test_a_guest_without_acpi_cannot_hot_plug_pci_devices() -> None:
    """QEMU refuses PCI hot-plug without ACPI, and such a guest could never release one:
    virtio disks and NICs wait for a restart; a USB disk does not need it."""
    virtio = "<disk type='file'><source file='/img/b'/><target dev='vdb' bus='virtio'/></disk>"
    usb = "<disk type='file'><source file='/img/c'/><target dev='sdc' bus='usb'/></disk>"
    p = plan(desired(dom(CDROM + NIC + virtio + usb, features="")), host(dom(features="")))
    assert [a.reason for a in p.actions if isinstance(a, AttachDevice)] == ["attach disk sdc"]
    assert [c.path for c in p.pending[0].changes] == ["devices/disk[vdb]"]
    gone = plan(desired(dom(CDROM, features="")), host(dom(features="")))
    assert not any(isinstance(a, DetachDevice) for a in gone.actions) and gone.pending
