"""Change classes: every field change is live, next-boot, restart or recreate, and the
planner restarts or recreates only when allowed (--allow-restart, updatePolicy)."""

from __future__ import annotations

import dataclasses

import pytest

from virtctl.model import ChangeClass, DomainState, Kind, Live, LiveDomain, LiveNetwork, ObjectKey
from virtctl.reconciler.plan.actions import Define, SetMemory, SetRunningNote
from virtctl.reconciler.plan.classify import domain_class, network_class
from virtctl.reconciler.plan.diff import ChangeOp, FieldChange
from virtctl.reconciler.load.load import load_text
from virtctl.reconciler.plan.plan import Plan, Policy, plan
from virtctl.render.report import plan_json, plan_text
from virtctl.reconciler.plan.liverules import read_note
from virtctl.xmlutil import LIVE_NS, NS, parse, tostring

LIVE, NEXT_BOOT, RESTART, RECREATE = (
    ChangeClass.LIVE, ChangeClass.NEXT_BOOT, ChangeClass.RESTART, ChangeClass.RECREATE)
UUID = "5b0c9d2e-7f41-4c6a-8e1b-2d3f4a5b6c01"


def change(path: str, new: str | None = "x", op: ChangeOp = ChangeOp.CHANGE) -> FieldChange:
    return FieldChange(op, path, "old", new)


@pytest.mark.parametrize(("field", "active", "expected"), [
    pytest.param(change("@type"), True, RECREATE, id="domain-type"),
    pytest.param(change("uuid"), False, RECREATE, id="uuid-even-when-off"),
    pytest.param(change("currentMemory", "262144 KiB"), True, LIVE, id="balloon-within-max"),
    pytest.param(change("currentMemory", "2097152 KiB"), True, RESTART, id="balloon-above-max"),
    pytest.param(change("currentMemory", "262144 KiB"), False, NEXT_BOOT, id="balloon-when-off"),
    pytest.param(change("metadata/{urn:x}app"), True, LIVE, id="metadata"),
    pytest.param(change("title"), True, LIVE, id="title"),
    pytest.param(change("description"), True, LIVE, id="description"),
    pytest.param(change("on_crash"), True, NEXT_BOOT, id="lifecycle-action"),
    pytest.param(change("os/boot/@dev"), True, NEXT_BOOT, id="boot-order"),
    pytest.param(change("os/bootmenu/@enable"), True, NEXT_BOOT, id="boot-menu"),
    pytest.param(change("devices/disk[vda]/boot/@order"), True, NEXT_BOOT, id="device-boot-order"),
    pytest.param(change("memory"), True, RESTART, id="max-memory"),
    pytest.param(change("vcpu"), True, RESTART, id="vcpus"),
    pytest.param(change("devices/disk[hdb]", op=ChangeOp.ADD), True, RESTART, id="disk-added"),
    pytest.param(change("devices/interface[52:54:00:00:00:01]", None, ChangeOp.REMOVE), True,
                 RESTART, id="nic-removed"),
    pytest.param(change("memory"), False, NEXT_BOOT, id="anything-when-off-is-next-boot"),
])
def test_domain_change_class(field: FieldChange, active: bool, expected: ChangeClass) -> None:
    assert domain_class(field, active=active, max_kib=1048576) is expected


@pytest.mark.parametrize(("path", "active", "expected"), [
    pytest.param("uuid", True, RECREATE, id="uuid"),
    pytest.param("metadata/{urn:x}a", True, LIVE, id="metadata"),
    pytest.param("ip[10.1.0.1]/dhcp/range[10.1.0.2]/@end", True, RESTART, id="active-restarts"),
    pytest.param("ip[10.1.0.1]/@netmask", False, NEXT_BOOT, id="inactive-next-boot"),
])
def test_network_change_class(path: str, active: bool, expected: ChangeClass) -> None:
    assert network_class(change(path), active=active) is expected


# -- the planner's decisions ---------------------------------------------------------------


def runtime(**attrs: str) -> str:
    text = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<metadata><virtctl:runtime xmlns:virtctl="{NS}"{text}/></metadata>' if attrs else ""


def dom_xml(*, memory: int = 512, current: int | None = None, vcpu: int = 1,
            on_crash: str = "destroy", dom_type: str = "kvm", uuid: str = UUID,
            nets: tuple[str, ...] = (), **rt: str) -> str:
    cur = f'<currentMemory unit="MiB">{current}</currentMemory>' if current else ""
    ifaces = "".join(f'<interface type="network"><mac address="52:54:00:00:00:0{i}"/>'
                     f'<source network="{n}"/></interface>' for i, n in enumerate(nets))
    return (f'<domain type="{dom_type}"><name>web</name><uuid>{uuid}</uuid>{runtime(**rt)}'
            f'<memory unit="MiB">{memory}</memory>{cur}<vcpu>{vcpu}</vcpu>'
            f"<os><type>hvm</type></os><on_crash>{on_crash}</on_crash>"
            f"<devices>{ifaces}</devices></domain>")


def desired_of(xml: str):  # type: ignore[no-untyped-def]
    from virtctl.model import Desired, DomainSpec, NetworkSpec
    specs = [load_text(xml, source="spec.xml")[0]]
    return Desired(domains={s.name: s for s in specs if isinstance(s, DomainSpec)},
                   networks={s.name: s for s in specs if isinstance(s, NetworkSpec)})


def running(xml: str, *, state: DomainState = DomainState.RUNNING) -> Live:
    """A host where the domain, defined from `xml` by an earlier apply, runs it."""
    spec = load_text(xml, source="spec.xml")[0]
    first = plan(desired_of(xml), Live())
    (define,) = [a for a in first.actions if isinstance(a, Define)]
    from virtctl.metadata import read_owner
    from virtctl.xmlutil import parse
    dom = LiveDomain(name=spec.name, uuid=UUID, xml=define.xml, state=state,
                     owner=read_owner(parse(define.xml)), id=1 if state.active else None,
                     running_xml=define.xml if state.active else None)
    return Live(domains={spec.name: dom})


def with_note(running_xml: str, action: object) -> str:
    """The running definition with the note a SetRunningNote action sets (as a host
    would: it replaces virtctl's element in the live metadata)."""
    assert isinstance(action, SetRunningNote)
    root = parse(running_xml)
    meta = root.find("metadata")
    if meta is None:
        meta = root.makeelement("metadata")
        root.append(meta)
    for old in meta.findall(f"{{{LIVE_NS}}}*"):
        meta.remove(old)
    if action.xml is not None:
        meta.append(parse(action.xml))
    return tostring(root)


def steps(p: Plan) -> list[str]:
    return [f"{a.verb} {a.name}" for a in p.actions]


def test_memory_change_on_a_running_guest_is_restart_pending_without_permission() -> None:
    p = plan(desired_of(dom_xml(memory=1024)), running(dom_xml()))
    # The running guest is noted as lacking it, so later runs still report it.
    assert steps(p) == ["define web", "note-pending web"]
    assert read_note(parse(with_note(dom_xml(), p.actions[1]))).pending == {"memory"}
    ((key, changes),) = p.changes
    assert [(c.path, c.change_class) for c in changes] == [("memory", RESTART)]
    (pending,) = p.pending
    assert pending.key == ObjectKey(Kind.DOMAIN, "web")
    assert [c.path for c in pending.changes] == ["memory"]
    assert not p.restarts
    text = plan_text(p)
    assert "~ memory: 524288 KiB -> 1048576 KiB  [restart]" in text
    assert "restart pending (memory)" in text
    assert "0 running guests to restart" in text


def test_allow_restart_stops_redefines_and_starts_the_guest() -> None:
    p = plan(desired_of(dom_xml(memory=1024)), running(dom_xml()),
             policy=Policy(allow_restart=True, shutdown_timeout=5))
    assert steps(p) == ["shutdown web", "define web", "start web"]
    assert p.restarts == {ObjectKey(Kind.DOMAIN, "web")} and not p.pending
    assert p.actions[0].timeout == 5  # type: ignore[union-attr]
    assert "1 running guest to restart" in plan_text(p)
    assert plan_json(p)["summary"]["restart"] == 1


@pytest.mark.parametrize(("rt", "allow", "restarts"), [
    pytest.param({"update-policy": "restart"}, False, True, id="policy-restart-allows"),
    pytest.param({"update-policy": "next-boot"}, True, False, id="policy-next-boot-wins"),
    pytest.param({"update-policy": "recreate"}, False, True, id="policy-recreate-allows"),
    pytest.param({}, False, False, id="default-no-restart"),
])
def test_update_policy_decides_per_object(rt: dict[str, str], allow: bool,
                                          restarts: bool) -> None:
    p = plan(desired_of(dom_xml(vcpu=2, **rt)), running(dom_xml()),
             policy=Policy(allow_restart=allow))
    assert bool(p.restarts) is restarts
    assert bool(p.pending) is not restarts


def test_per_object_shutdown_timeout_reaches_the_ladder() -> None:
    p = plan(desired_of(dom_xml(vcpu=2, **{"update-policy": "restart",
                                           "shutdown-timeout": "7"})), running(dom_xml()),
             policy=Policy(shutdown_timeout=60))
    assert p.actions[0].verb == "shutdown" and p.actions[0].timeout == 7  # type: ignore[union-attr]


def test_current_memory_within_max_is_set_live_without_restart() -> None:
    p = plan(desired_of(dom_xml(current=256)), running(dom_xml(current=512)),
             policy=Policy(allow_restart=True))
    assert steps(p) == ["define web", "set-memory web"]
    memory = p.actions[1]
    assert isinstance(memory, SetMemory) and memory.kib == 262144
    assert not p.restarts and not p.pending
    assert "[live]" in plan_text(p)


def test_next_boot_change_never_restarts_nor_pends() -> None:
    p = plan(desired_of(dom_xml(on_crash="preserve")), running(dom_xml()),
             policy=Policy(allow_restart=True))
    assert steps(p) == ["define web"] and not p.restarts and not p.pending
    assert p.changes[0][1][0].change_class is NEXT_BOOT


def test_changes_to_a_stopped_guest_are_next_boot() -> None:
    p = plan(desired_of(dom_xml(memory=1024, state="shutoff")),
             running(dom_xml(state="shutoff"), state=DomainState.SHUTOFF),
             policy=Policy(allow_restart=True))
    assert steps(p) == ["define web"] and not p.pending
    assert p.changes[0][1][0].change_class is NEXT_BOOT


def test_declared_shutoff_stops_instead_of_restarting() -> None:
    p = plan(desired_of(dom_xml(memory=1024, state="shutoff")), running(dom_xml()),
             policy=Policy(allow_restart=True))
    assert steps(p) == ["shutdown web", "define web"]
    assert not p.restarts and not p.pending


def test_type_change_is_recreate_and_needs_the_recreate_policy() -> None:
    blocked = plan(desired_of(dom_xml(dom_type="qemu")), running(dom_xml()),
                   policy=Policy(allow_restart=True))
    assert blocked.empty and "updatePolicy: recreate" in blocked.notes[0]
    p = plan(desired_of(dom_xml(dom_type="qemu", **{"update-policy": "recreate"})),
             running(dom_xml()))
    assert steps(p) == ["shutdown web", "undefine web", "define web", "start web"]
    assert p.recreates == {ObjectKey(Kind.DOMAIN, "web")}
    assert plan_json(p)["objects"][0]["action"] == "recreate"
    assert plan_json(p)["objects"][0]["changeClass"] == "recreate"


def test_a_guest_restarted_outside_virtctl_is_no_longer_pending() -> None:
    old = running(dom_xml())
    first = plan(desired_of(dom_xml(memory=1024)), old)
    (define, note) = first.actions
    assert isinstance(define, Define) and isinstance(note, SetRunningNote)
    dom = old.domains["web"]
    assert dom.running_xml is not None
    # running_xml still the old one, with virtctl's note on it
    redefined = dataclasses.replace(dom, xml=define.xml,
                                    running_xml=with_note(dom.running_xml, note))
    still = plan(desired_of(dom_xml(memory=1024)), Live(domains={"web": redefined}))
    assert still.empty and [p.key.name for p in still.pending] == ["web"]
    restarted = dataclasses.replace(redefined, running_xml=define.xml)
    done = plan(desired_of(dom_xml(memory=1024)), Live(domains={"web": restarted}))
    assert done.empty and not done.pending


def test_graphics_autoport_in_the_running_definition_is_not_pending() -> None:
    xml = dom_xml().replace("<devices>", '<devices><graphics type="vnc" port="-1" '
                            'autoport="yes"/>')
    host = running(xml)
    dom = host.domains["web"]
    assert dom.running_xml is not None
    ran = dom.running_xml.replace('port="-1"', 'port="5900"')
    live = Live(domains={"web": dataclasses.replace(dom, running_xml=ran)})
    assert not plan(desired_of(xml), live).pending


# -- networks -------------------------------------------------------------------------------


def net_xml(end: str = "10.1.0.100", mode: str = "nat", **rt: str) -> str:
    return (f"<network><name>lan</name><uuid>{UUID}</uuid>{runtime(**rt)}<forward mode='{mode}'/>"
            f"<bridge name='virbr9'/><ip address='10.1.0.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='10.1.0.2' end='{end}'/></dhcp></ip></network>")


def net_host(guest_running: bool) -> Live:
    spec_plan = plan(desired_of(net_xml()), Live())
    define = spec_plan.actions[0]
    assert isinstance(define, Define)
    from virtctl.metadata import read_owner
    from virtctl.xmlutil import parse
    lan = LiveNetwork(name="lan", uuid=UUID, xml=define.xml, active=True,
                      owner=read_owner(parse(define.xml)))
    guest = running(dom_xml(nets=("lan",)),
                    state=DomainState.RUNNING if guest_running else DomainState.SHUTOFF)
    return Live(domains=guest.domains, networks={"lan": lan})


def test_active_network_change_is_pending_without_permission() -> None:
    # The forward mode is no virNetworkUpdate section: it needs a restart.
    p = plan(desired_of(net_xml(mode="route")), net_host(True))
    assert steps(p) == ["define lan"]
    assert [c.change_class for c in p.changes[0][1]] == [RESTART]
    assert [x.key.name for x in p.pending] == ["lan"]


def test_active_network_restart_names_the_guests_using_it() -> None:
    p = plan(desired_of(net_xml(mode="route")), net_host(True),
             policy=Policy(allow_restart=True))
    assert steps(p) == ["destroy lan", "define lan", "start lan"]
    assert p.restarts == {ObjectKey(Kind.NETWORK, "lan")}
    assert any("domain/web" in n for n in p.notes)
    assert "1 active network to restart" in plan_text(p)
    idle = plan(desired_of(net_xml(mode="route")), net_host(False),
                policy=Policy(allow_restart=True))
    assert any("no running guest" in n for n in idle.notes)
