"""The planner, table-driven and pure: desired + live -> ordered, typed actions.

Live objects here are built the way a hypervisor reports them: `hypervisor()` replays a
plan's actions on an in-memory host that rewrites definitions as libvirt does (the sim's
own `fill_*` defaults, plus aliases, PCI addresses, extra controllers, reordered
devices), so "re-plan after apply is empty" is checked against a host that adds noise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import pytest
from lxml import etree

from virtctl import metadata
from virtctl.capabilities import parse_capabilities
from virtctl.drivers.sim.caps import CAPABILITIES_XML
from virtctl.drivers.sim.defaults import fill_domain, fill_network
from virtctl.model import (
    Desired,
    DomainSpec,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    LiveNetwork,
    NetworkSpec,
    ObjectKey,
    Ownership,
)
from virtctl.reconciler.plan.actions import (
    Define,
    Destroy,
    Resume,
    SetAutostart,
    Shutdown,
    Start,
    Suspend,
    Undefine,
)
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan import Plan, Policy, plan, plan_delete
from virtctl.render.report import plan_json, plan_text
from virtctl.xmlutil import NS, parse, tostring

CAPS = parse_capabilities(CAPABILITIES_XML)
OWNED = Ownership(spec_hash="sha256:x", source="old.xml")

# -- builders -----------------------------------------------------------------------------


def runtime(**attrs: str) -> str:
    if not attrs:
        return ""
    text = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<metadata><virtctl:runtime xmlns:virtctl="{NS}"{text}/></metadata>'


def dom(name: str, *, nets: tuple[str, ...] = (), memory: str = '<memory unit="MiB">512</memory>',
        devices: str = "", dom_type: str = "kvm", head: str = "", **rt: str) -> str:
    ifaces = "".join(
        f'<interface type="network"><source network="{n}"/></interface>' for n in nets
    )
    return (
        f'<domain type="{dom_type}"><name>{name}</name>{head}{runtime(**rt)}{memory}'
        f'<vcpu>1</vcpu><os><type>hvm</type></os><devices>{ifaces}{devices}</devices></domain>'
    )


def net(name: str, *, extra: str = "", **rt: str) -> str:
    return (
        f'<network><name>{name}</name>{runtime(**rt)}<forward mode="nat"/>{extra}'
        '<ip address="10.1.0.1" netmask="255.255.255.0"/></network>'
    )


def specs(*xmls: str) -> Desired:
    # Each spec's source names its content, so input order alone cannot change a plan.
    loaded = [load_text(x, source=f"{hashlib.sha1(x.encode()).hexdigest()[:8]}.xml")[0]
              for x in xmls]
    return Desired(
        domains={s.name: s for s in loaded if isinstance(s, DomainSpec)},
        networks={s.name: s for s in loaded if isinstance(s, NetworkSpec)},
    )


def live_dom(xml: str, *, state: DomainState = DomainState.SHUTOFF, managed: bool = True,
             autostart: bool = False, persistent: bool = True) -> LiveDomain:
    root = parse(xml)
    owner = metadata.read_owner(root) or (OWNED if managed else None)
    return LiveDomain(name=root.findtext("name") or "", uuid=root.findtext("uuid") or "",
                      xml=xml, state=state, autostart=autostart, persistent=persistent,
                      owner=owner, id=1 if state.active else None)


def live_net(xml: str, *, active: bool = True, managed: bool = True,
             autostart: bool = False) -> LiveNetwork:
    root = parse(xml)
    owner = metadata.read_owner(root) or (OWNED if managed else None)
    return LiveNetwork(name=root.findtext("name") or "", uuid=root.findtext("uuid") or "",
                       xml=xml, active=active, autostart=autostart, owner=owner)


def host(*objs: LiveDomain | LiveNetwork) -> Live:
    return Live(domains={o.name: o for o in objs if isinstance(o, LiveDomain)},
                networks={o.name: o for o in objs if isinstance(o, LiveNetwork)})


def steps(p: Plan) -> list[str]:
    """The plan as readable steps: 'start domain/web'."""
    out = []
    for a in p.actions:
        verb = a.verb
        if isinstance(a, SetAutostart):
            verb = f"autostart-{'on' if a.enabled else 'off'}"
        elif isinstance(a, Define):
            verb = "define" if a.new else "redefine"
        out.append(f"{verb} {a.key}")
    return out


# -- a reference hypervisor that rewrites definitions as libvirt does -----------------------


def libvirt_rewrite(xml: str, kind: Kind, serial: int) -> str:
    root = parse(xml)
    uuid = root.findtext("uuid") or ""
    if kind is Kind.NETWORK:
        fill_network(root, uuid=uuid, bridge=f"virbr{serial}", mac_suffix=f"00:00:{serial:02x}")
        return tostring(root)
    suffixes = [f"ff:{serial:02x}:{i:02x}" for i in range(8)]
    fill_domain(root, uuid=uuid, mac_suffixes=suffixes, caps=CAPS)
    devices = root.find("devices")
    assert devices is not None
    for i, device in enumerate(devices):
        etree.SubElement(device, "alias", name=f"dev{i}")
        etree.SubElement(device, "address", type="pci", domain="0x0000", bus="0x00",
                         slot=f"0x{i + 3:02x}", function="0x0")
    etree.SubElement(devices, "controller", type="usb", index="0", model="piix3-uhci")
    etree.SubElement(devices, "memballoon", model="virtio")
    devices[:] = list(reversed(devices))  # libvirt orders devices its own way
    return tostring(root)


def hypervisor(p: Plan, live: Live) -> Live:
    """Replay `p` on `live` the way a host would; returns the host's new state."""
    domains, networks = dict(live.domains), dict(live.networks)
    serial = itertools.count(len(domains) + len(networks))
    for a in p.actions:
        table: dict[str, LiveDomain | LiveNetwork] = (
            domains if a.kind is Kind.DOMAIN else networks  # type: ignore[assignment]
        )
        obj = table.get(a.name)
        match a:
            case Define(xml=xml):
                new_xml = libvirt_rewrite(xml, a.kind, next(serial))
                owner = metadata.read_owner(parse(new_xml))
                if obj is not None:
                    table[a.name] = dataclasses.replace(obj, xml=new_xml, owner=owner)
                elif a.kind is Kind.DOMAIN:
                    table[a.name] = live_dom(new_xml)
                else:
                    table[a.name] = live_net(new_xml, active=False)
            case Start():
                assert obj is not None
                table[a.name] = (dataclasses.replace(obj, state=DomainState.RUNNING, id=7)
                                 if isinstance(obj, LiveDomain)
                                 else dataclasses.replace(obj, active=True))
            case Shutdown() | Destroy():
                assert obj is not None
                table[a.name] = (dataclasses.replace(obj, state=DomainState.SHUTOFF, id=None)
                                 if isinstance(obj, LiveDomain)
                                 else dataclasses.replace(obj, active=False))
            case Suspend():
                table[a.name] = dataclasses.replace(obj, state=DomainState.PAUSED)
            case Resume():
                table[a.name] = dataclasses.replace(obj, state=DomainState.RUNNING)
            case SetAutostart(enabled=enabled):
                table[a.name] = dataclasses.replace(obj, autostart=enabled)
            case Undefine():
                del table[a.name]
    return Live(domains=domains, networks=networks)


EMPTY = Live()

# -- ordering -------------------------------------------------------------------------------


def test_create_defines_and_starts_networks_before_the_domains_using_them() -> None:
    desired = specs(dom("web", nets=("lan",)), net("lan"), dom("db", nets=("lan", "back")),
                    net("back"))
    assert steps(plan(desired, EMPTY)) == [
        "define network/back", "define network/lan",
        "start network/back", "start network/lan",
        "define domain/db", "define domain/web",
        "start domain/db", "start domain/web",
    ]


def test_prune_tears_down_domains_before_their_networks() -> None:
    running = host(
        live_dom(dom("web", nets=("lan",),
                     head="<uuid>11111111-1111-4111-8111-111111111111</uuid>"),
                 state=DomainState.RUNNING),
        live_net(net("lan", extra='<bridge name="virbr0"/>'), active=True),
    )
    p = plan(Desired(), running, policy=Policy(prune=True))
    assert steps(p) == ["shutdown domain/web", "undefine domain/web",
                        "destroy network/lan", "undefine network/lan"]
    assert p.deletes == {ObjectKey(Kind.DOMAIN, "web"), ObjectKey(Kind.NETWORK, "lan")}
    # The network's teardown waits for its users: if their stop fails, it is skipped.
    net_actions = [a for a in p.actions if a.kind is Kind.NETWORK]
    assert all(a.needs == (ObjectKey(Kind.DOMAIN, "web"),) for a in net_actions)


def test_start_of_a_domain_needs_exactly_its_networks() -> None:
    p = plan(specs(dom("web", nets=("lan", "back", "lan")), dom("solo"), net("lan"),
                   net("back")), EMPTY)
    starts = {a.name: a.needs for a in p.actions if isinstance(a, Start)}
    assert starts["web"] == (ObjectKey(Kind.NETWORK, "back"), ObjectKey(Kind.NETWORK, "lan"))
    assert starts["solo"] == ()
    assert starts["lan"] == () and starts["back"] == ()


# -- determinism and idempotence --------------------------------------------------------------

SCENARIOS = [
    pytest.param((dom("a"),), id="one-domain"),
    pytest.param((dom("a", nets=("n",)), net("n")), id="domain-on-network"),
    pytest.param((dom("a", nets=("n", "n")), net("n", autostart="yes")), id="two-nics-same-net"),
    pytest.param((dom("a", state="paused", autostart="yes"), dom("b", state="shutoff")),
                 id="paused-and-shutoff"),
    pytest.param((net("n", active="no", autostart="yes"),), id="inactive-network"),
    pytest.param((dom("x", dom_type="xen",
                      devices='<interface type="bridge"><source bridge="xenbr0"/></interface>'),),
                 id="xen-hvm-bridge"),
    pytest.param((dom("m", memory='<memory unit="GiB">1</memory>'
                      '<currentMemory unit="MiB">768</currentMemory>',
                      devices='<disk type="file" device="disk"><source file="/d.img"/>'
                              '<target dev="vda" bus="virtio"/></disk>'),),
                 id="units-and-disk"),
]


@pytest.mark.parametrize("xmls", SCENARIOS)
def test_plan_is_byte_identical_for_equal_inputs(xmls: tuple[str, ...]) -> None:
    forward, backward = specs(*xmls), specs(*reversed(xmls))
    first, second = plan(forward, EMPTY), plan(backward, EMPTY)
    assert first == second
    assert plan_text(first) == plan_text(second)
    assert plan_json(first) == plan_json(second)


@pytest.mark.parametrize("xmls", SCENARIOS)
def test_replan_after_apply_is_empty(xmls: tuple[str, ...]) -> None:
    desired = specs(*xmls)
    first = plan(desired, EMPTY)
    assert not first.empty
    after = hypervisor(first, EMPTY)
    again = plan(desired, after)
    assert again.empty, steps(again)


@pytest.mark.parametrize("xmls", SCENARIOS)
def test_replan_after_apply_is_empty_with_prune(xmls: tuple[str, ...]) -> None:
    desired = specs(*xmls)
    after = hypervisor(plan(desired, EMPTY, policy=Policy(prune=True)), EMPTY)
    assert plan(desired, after, policy=Policy(prune=True)).empty


# -- no phantom diffs from what the host filled in ---------------------------------------------

UUID = "5b0c9d2e-7f41-4c6a-8e1b-2d3f4a5b6c01"
OWNER_MD = (f'<metadata><virtctl:owner xmlns:virtctl="{NS}" spec-hash="h" source="s"/>'
            "</metadata>")


def live_form(body: str, *, root_attrs: str = 'type="kvm"') -> str:
    if "<devices>" not in body:
        body += "<devices/>"  # libvirt always reports <devices>
    return f"<domain {root_attrs}><name>d</name><uuid>{UUID}</uuid>{OWNER_MD}{body}</domain>"


PHANTOMS = [
    pytest.param(
        dom("d", memory='<memory unit="MiB">512</memory>'),
        live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu><os><type>hvm</type></os>'),
        id="memory-unit-rewritten-to-KiB"),
    pytest.param(
        dom("d", memory='<memory unit="G">1</memory>'),
        live_form('<memory unit="KiB">1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os>'),
        id="memory-G-is-GiB"),
    pytest.param(
        dom("d"),
        live_form('<memory unit="KiB">524288</memory><currentMemory unit="KiB">524288'
                  '</currentMemory><vcpu placement="static">1</vcpu>'
                  '<os><type arch="x86_64" machine="pc-i440fx-7.2">hvm</type><boot dev="hd"/></os>'
                  '<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>'
                  '<on_crash>destroy</on_crash>'),
        id="currentMemory-machine-arch-lifecycle-defaults"),
    pytest.param(
        dom("d"),
        live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu><os><type>hvm</type></os>',
                  root_attrs='type="kvm" id="42"'),
        id="runtime-id"),
    pytest.param(
        dom("d", head=f"<uuid>{UUID.upper().replace('-', '')}</uuid>"),
        live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu><os><type>hvm</type></os>'),
        id="uuid-undashed-upper-case"),
    pytest.param(
        dom("d", nets=("lan", "lan")),
        live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu><os><type>hvm</type></os>'
                  '<devices><interface type="network"><mac address="52:54:00:0a:0b:0c"/>'
                  '<source network="lan" bridge="virbr0"/><alias name="net0"/>'
                  '<address type="pci" slot="0x03"/></interface>'
                  '<interface type="network"><mac address="52:54:00:0a:0b:0d"/>'
                  '<source network="lan"/></interface>'
                  '<controller type="usb" index="0"/></devices>'),
        id="macs-filled-aliases-addresses-controllers"),
    pytest.param(
        dom("d", devices='<interface type="bridge"><mac address="52:54:00:AA:BB:CC"/>'
                         '<source bridge="br0"/></interface>'
                         '<disk type="file" device="disk"><source file="/a"/>'
                         '<target dev="vda"/></disk>'
                         '<disk type="file" device="disk"><source file="/b"/>'
                         '<target dev="vdb"/></disk>'),
        live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu><os><type>hvm</type></os>'
                  '<devices><disk type="file" device="disk"><source file="/b"/>'
                  '<target dev="vdb"/></disk><interface type="bridge">'
                  '<mac address="52:54:00:aa:bb:cc"/><source bridge="br0"/></interface>'
                  '<disk type="file" device="disk"><source file="/a"/><target dev="vda"/>'
                  '</disk></devices>'),
        id="mac-case-and-device-order"),
    pytest.param(
        dom("d", dom_type="xen", memory='<memory unit="MiB">512</memory>').replace(
            "<type>hvm</type>", "<type>linux</type>"),
        live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu>'
                  '<os><type arch="x86_64" machine="xenpv">xen</type></os>',
                  root_attrs='type="xen"'),
        id="xen-linux-reported-as-xen"),
]


@pytest.mark.parametrize(("declared", "reported"), PHANTOMS)
def test_values_the_host_filled_in_are_not_differences(declared: str, reported: str) -> None:
    p = plan(specs(declared), host(live_dom(reported, state=DomainState.RUNNING)))
    assert p.empty, [(a.verb, getattr(a, "changes", ())) for a in p.actions]


def test_network_bridge_name_and_mac_assigned_by_host_are_not_differences() -> None:
    reported = (f"<network><name>lan</name><uuid>{UUID}</uuid>{OWNER_MD}<forward mode='nat'/>"
                "<bridge name='virbr7' stp='on' delay='0'/><mac address='52:54:00:01:02:03'/>"
                "<ip address='10.1.0.1' netmask='255.255.255.0'/></network>")
    p = plan(specs(net("lan")), host(live_net(reported)))
    assert p.empty, steps(p)


@pytest.mark.parametrize(("declared", "reported", "path"), [
    pytest.param(dom("d", memory='<memory unit="MiB">1024</memory>'),
                 live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu>'
                           '<os><type>hvm</type></os>'),
                 "memory", id="memory"),
    pytest.param(dom("d").replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>"),
                 live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu>'
                           '<os><type>hvm</type></os>'),
                 "vcpu", id="vcpu"),
    pytest.param(dom("d", devices='<disk type="file" device="disk"><source file="/new"/>'
                                  '<target dev="vda"/></disk>'),
                 live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu>'
                           '<os><type>hvm</type></os><devices><disk type="file" device="disk">'
                           '<source file="/old"/><target dev="vda"/></disk></devices>'),
                 "devices/disk[vda]/source/@file", id="disk-source"),
])
def test_a_real_difference_is_a_redefine_naming_the_field(declared: str, reported: str,
                                                         path: str) -> None:
    p = plan(specs(declared), host(live_dom(reported, state=DomainState.RUNNING)))
    (define,) = p.actions
    assert isinstance(define, Define) and define.new is False
    assert path in [c.path for c in define.changes]


def test_changed_spec_redefines_keeping_live_uuid_and_macs() -> None:
    reported = live_form(
        '<memory unit="KiB">524288</memory><vcpu>1</vcpu><os><type>hvm</type></os>'
        '<devices><interface type="network"><mac address="52:54:00:11:22:33"/>'
        '<source network="lan"/></interface><interface type="bridge">'
        '<mac address="52:54:00:44:55:66"/><source bridge="br0"/></interface></devices>')
    declared = dom("d", nets=("lan",), memory='<memory unit="MiB">1024</memory>',
                   devices='<interface type="bridge"><source bridge="br0"/></interface>')
    p = plan(specs(declared), host(live_dom(reported, state=DomainState.RUNNING)))
    assert steps(p) == ["redefine domain/d"]
    (define,) = p.actions
    assert isinstance(define, Define)
    root = parse(define.xml)
    assert root.findtext("uuid") == UUID
    macs = {i.get("type"): i.find("mac").get("address")  # type: ignore[union-attr]
            for i in root.iterfind("devices/interface")}
    assert macs == {"network": "52:54:00:11:22:33", "bridge": "52:54:00:44:55:66"}
    assert metadata.read_owner(root) is not None
    assert [c.path for c in define.changes] == ["memory"]


def test_new_domain_without_identity_gets_a_stable_derived_uuid_and_macs() -> None:
    first = plan(specs(dom("d", nets=("lan",))), EMPTY)
    second = plan(specs(dom("d", nets=("lan",))), EMPTY)
    a, b = (parse(p.actions[0].xml) for p in (first, second))  # type: ignore[union-attr]
    assert a.findtext("uuid") and a.findtext("uuid") == b.findtext("uuid")
    mac = a.find("devices/interface/mac")
    assert mac is not None and mac.get("address", "").startswith("52:54:00:")


def test_redefine_carries_the_ownership_mark_for_adopted_objects() -> None:
    reported = live_form('<memory unit="KiB">524288</memory><vcpu>1</vcpu>'
                         '<os><type>hvm</type></os>').replace(OWNER_MD, "")
    p = plan(specs(dom("d")), host(live_dom(reported, managed=False, state=DomainState.RUNNING)),
             policy=Policy(adopt=True))
    (define,) = p.actions
    assert isinstance(define, Define) and not define.new and define.changes == ()
    assert metadata.read_owner(parse(define.xml)) is not None


# -- power state and autostart axes -------------------------------------------------------------

R, S, P = DomainState.RUNNING, DomainState.SHUTOFF, DomainState.PAUSED
TRANSITIONS = [
    pytest.param(R, R, [], id="running-stays-running"),
    pytest.param(R, S, ["shutdown"], id="running-to-shutoff"),
    pytest.param(R, P, ["suspend"], id="running-to-paused"),
    pytest.param(S, R, ["start"], id="shutoff-to-running"),
    pytest.param(S, S, [], id="shutoff-stays-shutoff"),
    pytest.param(S, P, ["start", "suspend"], id="shutoff-to-paused"),
    pytest.param(P, R, ["resume"], id="paused-to-running"),
    pytest.param(P, S, ["shutdown"], id="paused-to-shutoff"),
    pytest.param(P, P, [], id="paused-stays-paused"),
    pytest.param(DomainState.CRASHED, R, ["start"], id="crashed-to-running"),
]


def converged(xml: str, *, state: DomainState, autostart: bool = False) -> Live:
    """The host after applying `xml`, then put in `state`."""
    desired = specs(xml)
    live = hypervisor(plan(desired, EMPTY), EMPTY)
    (name,) = live.domains
    return host(dataclasses.replace(live.domains[name], state=state, autostart=autostart))


@pytest.mark.parametrize(("have", "want", "verbs"), TRANSITIONS)
def test_power_state_transitions(have: DomainState, want: DomainState,
                                 verbs: list[str]) -> None:
    live = converged(dom("d", state="shutoff"), state=have)
    p = plan(specs(dom("d", state=str(want))), live)
    assert [a.verb for a in p.actions] == verbs
    assert not any(isinstance(a, Define | Undefine | SetAutostart) for a in p.actions)


def test_shutdown_uses_the_policy_timeout_and_force() -> None:
    live = converged(dom("d"), state=R)
    p = plan(specs(dom("d", state="shutoff")), live,
             policy=Policy(shutdown_timeout=5, force_stop=True))
    (stop,) = p.actions
    assert isinstance(stop, Shutdown) and stop.timeout == 5 and stop.force


@pytest.mark.parametrize(("have", "want", "expected"), [
    pytest.param(False, True, ["autostart-on domain/d"], id="off-to-on"),
    pytest.param(True, False, ["autostart-off domain/d"], id="on-to-off"),
    pytest.param(True, True, [], id="on-stays-on"),
    pytest.param(False, False, [], id="off-stays-off"),
])
def test_domain_autostart(have: bool, want: bool, expected: list[str]) -> None:
    live = converged(dom("d"), state=R, autostart=have)
    p = plan(specs(dom("d", autostart="yes" if want else "no")), live)
    assert steps(p) == expected


@pytest.mark.parametrize(("active", "autostart", "want", "expected"), [
    pytest.param(False, False, {"active": "yes"}, ["start network/n"], id="start"),
    pytest.param(True, False, {"active": "no"}, ["destroy network/n"], id="stop"),
    pytest.param(True, False, {"autostart": "yes"}, ["autostart-on network/n"], id="autostart-on"),
    pytest.param(True, True, {"autostart": "no"}, ["autostart-off network/n"],
                 id="autostart-off"),
    pytest.param(True, True, {"autostart": "yes"}, [], id="in-sync"),
])
def test_network_active_and_autostart(active: bool, autostart: bool, want: dict[str, str],
                                      expected: list[str]) -> None:
    live = hypervisor(plan(specs(net("n", active="no")), EMPTY), EMPTY)
    live = host(dataclasses.replace(live.networks["n"], active=active, autostart=autostart))
    assert steps(plan(specs(net("n", **want)), live)) == expected


def test_new_domain_axes_are_separate_actions() -> None:
    p = plan(specs(dom("d", state="paused", autostart="yes")), EMPTY)
    assert steps(p) == ["define domain/d", "autostart-on domain/d", "start domain/d",
                        "suspend domain/d"]
    assert steps(plan(specs(dom("d", state="shutoff")), EMPTY)) == ["define domain/d"]


# -- ownership: prune and delete ---------------------------------------------------------------


def _mixed_host() -> Live:
    managed = converged(dom("mine", nets=()), state=R).domains["mine"]
    other = dataclasses.replace(converged(dom("theirs"), state=R).domains["theirs"], owner=None)
    kept = converged(dom("kept"), state=S).domains["kept"]
    return host(managed, other, kept)


def test_prune_removes_only_managed_objects_absent_from_specs() -> None:
    p = plan(specs(dom("kept", state="shutoff")), _mixed_host(), policy=Policy(prune=True))
    assert steps(p) == ["shutdown domain/mine", "undefine domain/mine"]
    (stop, _) = p.actions
    assert isinstance(stop, Shutdown) and stop.force  # the guest is going away regardless


def test_without_prune_absent_objects_are_left_alone() -> None:
    assert plan(specs(dom("kept", state="shutoff")), _mixed_host()).empty


def test_plan_delete_leaves_unmanaged_objects_alone_with_a_note() -> None:
    live = _mixed_host()
    p = plan_delete(specs(dom("mine"), dom("theirs"), dom("absent")), live)
    assert steps(p) == ["shutdown domain/mine", "undefine domain/mine"]
    assert p.deletes == {ObjectKey(Kind.DOMAIN, "mine")}
    assert len(p.notes) == 1 and "domain/theirs" in p.notes[0] and "not managed" in p.notes[0]


def test_plan_delete_orders_domains_before_their_network() -> None:
    live = hypervisor(plan(specs(dom("web", nets=("lan",)), net("lan")), EMPTY), EMPTY)
    p = plan_delete(specs(net("lan"), dom("web", nets=("lan",))), live)
    assert steps(p) == ["shutdown domain/web", "undefine domain/web",
                        "destroy network/lan", "undefine network/lan"]
    assert all(a.needs == (ObjectKey(Kind.DOMAIN, "web"),)
               for a in p.actions if a.kind is Kind.NETWORK)


def test_transient_domain_is_made_persistent_not_undefined() -> None:
    live = converged(dom("d"), state=R)
    live = host(dataclasses.replace(live.domains["d"], persistent=False))
    assert steps(plan(specs(dom("d")), live)) == ["redefine domain/d"]


# -- networks still running an older definition ------------------------------------------

NET_IDENTITY = ('<uuid>7c0c4b7e-3b5e-4d0a-9a8f-1d2e3f405162</uuid>'
                '<bridge name="virbr7" stp="on" delay="0"/>'
                '<mac address="52:54:00:aa:bb:cc"/>')


def live_lan(xml: str) -> str:
    """`xml` as a host keeps it: identity filled in."""
    return xml.replace("<name>lan</name>", f"<name>lan</name>{NET_IDENTITY}")


@pytest.mark.parametrize(
    ("running", "policy", "expected_steps", "pending"),
    [
        pytest.param(net("lan"), "", [], ["domain"], id="older-running-definition-pending"),
        pytest.param(net("lan"), "restart", ["destroy network/lan", "start network/lan"], [],
                     id="older-running-definition-restarted"),
        pytest.param(net("lan", extra='<domain name="new.lan"/>'), "", [], [],
                     id="running-what-was-declared"),
        pytest.param(None, "", [], [], id="no-running-definition-known"),
    ],
)
def test_a_network_running_an_older_definition_waits_for_a_restart(
    running: str | None, policy: str, expected_steps: list[str], pending: list[str]
) -> None:
    """A run after the one that redefined an active network still reports (or, when the
    spec allows, makes) the restart its running definition is waiting for."""
    extra = '<domain name="new.lan"/>'
    rt = {"update-policy": policy} if policy else {}
    declared = net("lan", extra=extra, **rt)
    persistent = live_lan(net("lan", extra=extra))
    live = dataclasses.replace(live_net(persistent), running_xml=(
        live_lan(running) if running is not None else None))
    planned = plan(specs(declared), host(live), caps=CAPS)
    assert steps(planned) == expected_steps
    found = planned.pending_of(ObjectKey(Kind.NETWORK, "lan"))
    assert ([c.path for c in found.changes] if found else []) == pending


# Apply sets: prune scope and the --prune-all guard (virtctl.reconciler.plan.plan)


@pytest.mark.parametrize(("owner_set", "run_set", "prune_all", "others", "pruned"), [
    pytest.param("a", "a", False, (), True, id="own-set"),
    pytest.param("b", "a", False, (), False, id="other-set"),
    pytest.param("", "a", False, (), False, id="mark-older-than-sets"),
    # --prune-all lifts the count limit only: it never reaches another set (issue 20).
    pytest.param("b", "a", True, (), False, id="prune-all-stays-in-its-set"),
    pytest.param("", "a", True, (), False, id="prune-all-leaves-marks-without-set"),
    pytest.param("b", "a", False, ("b",), True, id="prune-set-names-it"),
    pytest.param("c", "a", True, ("b",), False, id="prune-set-names-another"),
    pytest.param("", "a", False, ("",), True, id="prune-set-empty-names-no-set"),
])
def test_prune_touches_only_its_own_set(owner_set: str, run_set: str, prune_all: bool,
                                        others: tuple[str, ...], pruned: bool) -> None:
    from virtctl.reconciler.plan.plan import in_prune_scope

    policy = Policy(prune=True, apply_set=run_set, prune_all=prune_all,
                    prune_sets=tuple(sorted(others)))
    assert in_prune_scope(Ownership(spec_hash="h", apply_set=owner_set), policy) is pruned
    assert in_prune_scope(None, policy) is False  # unmanaged: never


def test_prune_all_plans_no_object_of_another_set() -> None:
    """The refusal's advice (--prune-all) plans the same deletions: its own set's."""
    from virtctl.reconciler.plan.plan import prune_refusal

    def marked(name: str, apply_set: str) -> LiveDomain:
        return dataclasses.replace(live_dom(dom(name)),
                                   owner=Ownership(spec_hash="h", apply_set=apply_set))

    mine = [marked(f"a{i}", "A") for i in range(7)]
    # Another set's guest, and one marked before sets existed: never reached implicitly.
    live = host(*mine, marked("b0", "B"), marked("o0", ""))
    policy = Policy(prune=True, apply_set="A")
    refused = plan(Desired(), live, policy=policy)
    message = prune_refusal(refused, Desired(), policy)
    assert message is not None and "set 'A'" in message and "b0" not in message
    assert "lifts this limit only" in message
    allowed = plan(Desired(), live, policy=dataclasses.replace(policy, prune_all=True))
    assert allowed.deletes == refused.deletes
    assert {k.name for k in allowed.deletes} == {f"a{i}" for i in range(7)}
    named = plan(Desired(), live, policy=dataclasses.replace(
        policy, prune_all=True, prune_sets=("B",)))
    assert {k.name for k in named.deletes} == {*(f"a{i}" for i in range(7)), "b0"}


@pytest.mark.parametrize(("doomed", "declared", "refused"), [
    pytest.param(5, True, False, id="five-is-fine"),
    pytest.param(6, True, True, id="six-needs-prune-all"),
    pytest.param(1, False, True, id="specs-declare-nothing"),
    pytest.param(0, False, False, id="nothing-to-prune"),
])
def test_big_or_total_prunes_need_prune_all(doomed: int, declared: bool, refused: bool) -> None:
    from virtctl.reconciler.plan.plan import prune_refusal

    keys = frozenset(ObjectKey(Kind.DOMAIN, f"d{i}") for i in range(doomed))
    keep = load_text(dom("keep"), source="k.xml")[0]
    desired = Desired(domains={"keep": keep}) if declared else Desired()  # type: ignore[dict-item]
    policy = Policy(prune=True, apply_set="s")
    assert (prune_refusal(Plan(deletes=keys), desired, policy) is not None) is refused
    assert prune_refusal(Plan(deletes=keys), desired,
                         dataclasses.replace(policy, prune_all=True)) is None


def test_prune_keeps_a_network_a_running_guest_staying_on_the_host_uses() -> None:
    """Set A's network, set B's running guest on it: A's prune would cut B's link."""
    net_a = dataclasses.replace(live_net(net("lan")),
                                owner=Ownership(spec_hash="h", apply_set="A"))
    guest_b = dataclasses.replace(live_dom(dom("web", nets=("lan",)),
                                           state=DomainState.RUNNING),
                                  owner=Ownership(spec_hash="h", apply_set="B"))
    policy = Policy(prune=True, apply_set="A")
    kept = plan(Desired(), host(net_a, guest_b), policy=policy)
    assert kept.actions == () and not kept.deletes
    assert kept.notes == ("network/lan: not pruned: running guest(s) web staying on the "
                          "host use it",)
    # Pruned together with the guest (both A's), or with the guest off, it goes.
    guest_a = dataclasses.replace(guest_b, owner=Ownership(spec_hash="h", apply_set="A"))
    both = plan(Desired(), host(net_a, guest_a), policy=dataclasses.replace(
        policy, prune_all=True))
    assert {str(k) for k in both.deletes} == {"network/lan", "domain/web"}
    off = dataclasses.replace(guest_b, state=DomainState.SHUTOFF)
    assert {str(k) for k in plan(Desired(), host(net_a, off), policy=policy).deletes} == {
        "network/lan"}


def test_prune_removes_a_network_a_guest_this_plan_restarts_off_it() -> None:
    """A guest restarted onto another network stops before networks are torn down, so
    its old network is pruned in the same run (one apply converges), and the network's
    teardown needs the guest's stop: if the stop fails, the network stays."""
    old, new = live_net(net("old")), net("new")
    uuid = "<uuid>6b1e6a2c-1f0e-4a57-9a3a-2d9f0c1b7e10</uuid>"
    running = live_dom(dom("web", nets=("old",), head=uuid))
    guest = dataclasses.replace(running, state=DomainState.RUNNING, id=1,
                                running_xml=running.xml)
    desired = specs(dom("web", nets=("new",), head=uuid, **{"update-policy": "restart"}), new)
    planned = plan(desired, host(old, guest), policy=Policy(prune=True))
    assert "network/old" in {str(k) for k in planned.deletes}
    assert not planned.notes
    teardown = [a for a in planned.actions if a.name == "old"]
    assert teardown and all(
        any(str(n) == "domain/web" for n in a.needs) for a in teardown)
    # The same guest left running (no restart allowed): the network is kept, noted.
    kept = plan(specs(dom("web", nets=("new",), head=uuid), new), host(old, guest),
                policy=Policy(prune=True))
    assert "network/old" not in {str(k) for k in kept.deletes}
    assert any("network/old: not pruned" in n for n in kept.notes)
