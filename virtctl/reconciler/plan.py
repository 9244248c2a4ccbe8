"""The planner: `plan(desired, live, *, policy) -> Plan`, and `plan_delete` for `delete`.

Pure: no driver calls, no clock. Definition, power state, autostart and deletion are
separate axes with separate actions; ordering comes from one phase table (actions.py),
then kind and name, so the same inputs always give the same plan. Input is assumed to
have passed `validate.check` (ownership, references, capabilities).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from lxml import etree

from .. import metadata
from ..capabilities import HostCapabilities
from ..model import (
    ChangeClass,
    Desired,
    DomainSpec,
    DomainState,
    Kind,
    LastApplied,
    Live,
    LiveDomain,
    LiveNetwork,
    NetworkSpec,
    ObjectKey,
    Ownership,
    UpdatePolicy,
)
from ..xmlutil import parse, tostring
from .actions import (
    Action,
    Define,
    Destroy,
    Resume,
    SetAutostart,
    SetMemory,
    Shutdown,
    Start,
    Suspend,
    Undefine,
    phase_of,
)
from .classify import classified, kib_of, max_memory_kib, stale_fields, worst
from .diff import ChangeOp, FieldChange, Origin, diff_xml, removed
from .essence import essence
from .identity import fill_domain_identity, fill_network_identity, keep_host_machine
from .memo import Memo


@dataclass(frozen=True, slots=True)
class Policy:
    prune: bool = False
    adopt: bool = False
    shutdown_timeout: float = 60.0  # unless a spec sets shutdownTimeout
    force_stop: bool = False  # destroy a guest that ignores shutdown (state: shutoff, restarts)
    commit: str = ""  # git commit the specs come from, recorded in the ownership mark
    allow_restart: bool = False  # restart objects whose spec sets no updatePolicy


@dataclass(frozen=True, slots=True)
class Pending:
    """An object whose running instance lags its definition and that virtctl may not
    restart: the restart-class changes it waits for."""

    key: ObjectKey
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    creates: frozenset[ObjectKey] = field(default_factory=frozenset)
    deletes: frozenset[ObjectKey] = field(default_factory=frozenset)
    restarts: frozenset[ObjectKey] = field(default_factory=frozenset)  # running, restarted
    recreates: frozenset[ObjectKey] = field(default_factory=frozenset)
    # Every classified field change (definition and runtime) of each object, plan order.
    changes: tuple[tuple[ObjectKey, tuple[FieldChange, ...]], ...] = ()
    pending: tuple[Pending, ...] = ()
    # sync_key of every object found in sync (see memo.py), for the next run to skip.
    in_sync: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not self.actions

    def keys(self) -> list[ObjectKey]:
        """Objects the plan touches, in plan order."""
        seen: dict[ObjectKey, None] = {}
        for action in self.actions:
            seen.setdefault(action.key, None)
        return list(seen)

    def changes_of(self, key: ObjectKey) -> tuple[FieldChange, ...]:
        return next((c for k, c in self.changes if k == key), ())

    def pending_of(self, key: ObjectKey) -> Pending | None:
        return next((p for p in self.pending if p.key == key), None)


@dataclass(frozen=True, slots=True)
class _Step:
    """What the planner decided for one object."""

    actions: tuple[Action, ...] = ()
    changes: tuple[FieldChange, ...] = ()
    pending: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    restart: bool = False
    recreate: bool = False


def spec_hash(xml: str) -> str:
    return "sha256:" + hashlib.sha256(xml.encode()).hexdigest()


def _ordered(actions: Iterable[Action]) -> tuple[Action, ...]:
    # Stable sort: within one object, actions keep the order the planner emitted them.
    return tuple(sorted(actions, key=lambda a: (phase_of(a), a.kind, a.name)))


def plan(
    desired: Desired,
    live: Live,
    *,
    policy: Policy = Policy(),
    caps: HostCapabilities | None = None,
    memo: Memo | None = None,
) -> Plan:
    """The actions that make `live` match `desired`. `caps` (the host's capabilities)
    lets declared machine aliases match the versioned machines the host stores. Objects
    whose sync key (memo.py) was found in sync before, with exactly these inputs, are not
    compared again; the plan's `in_sync` lists the keys of every object in sync now."""
    memo = memo or Memo()
    steps: dict[ObjectKey, _Step] = {}
    creates: set[ObjectKey] = set()
    synced: set[str] = set()

    def remember(key: ObjectKey, step: _Step) -> _Step:
        found = memo.keys.get(key)
        if found is not None and not (step.actions or step.changes or step.pending
                                      or step.notes):
            synced.add(found)
        return step

    skip = memo.verified()
    for net in desired.networks.values():
        current = live.networks.get(net.name)
        if current is None:
            creates.add(net.key)
        step = _Step() if net.key in skip else _network_step(net, current, policy, live)
        steps[net.key] = remember(net.key, step)
    for dom in desired.domains.values():
        current_dom = live.domains.get(dom.name)
        if current_dom is None:
            creates.add(dom.key)
        step = _Step() if dom.key in skip else _domain_step(dom, current_dom, policy, caps)
        steps[dom.key] = remember(dom.key, step)
    deletes: set[ObjectKey] = set()
    if policy.prune:
        for key, pruned in _prune(desired, live, policy).items():
            deletes.add(key)
            steps[key] = pruned
    planned = _assemble(steps, creates=creates, deletes=deletes)
    return replace(planned, in_sync=frozenset(synced))


def _assemble(
    steps: dict[ObjectKey, _Step], *, creates: set[ObjectKey], deletes: set[ObjectKey],
    notes: Iterable[str] = (),
) -> Plan:
    keys = sorted(steps)
    return Plan(
        actions=_ordered(a for s in steps.values() for a in s.actions),
        notes=(*notes, *(n for k in keys for n in steps[k].notes)),
        creates=frozenset(creates),
        deletes=frozenset(deletes),
        restarts=frozenset(k for k, s in steps.items() if s.restart),
        recreates=frozenset(k for k, s in steps.items() if s.recreate),
        changes=tuple((k, steps[k].changes) for k in keys if steps[k].changes),
        pending=tuple(Pending(k, steps[k].pending) for k in keys if steps[k].pending),
    )


def _prune(desired: Desired, live: Live, policy: Policy) -> dict[ObjectKey, _Step]:
    reason = "pruned: absent from the specs"
    doomed = [d for d in live.domains.values() if d.managed and d.name not in desired.domains]
    out = {d.key: _Step(actions=tuple(_delete_domain(d, policy.shutdown_timeout,
                                                     reason=reason))) for d in doomed}
    for n in live.networks.values():
        if n.managed and n.name not in desired.networks:
            users = _users_of(n.name, doomed)
            out[n.key] = _Step(actions=tuple(_delete_network(n, users, reason=reason)))
    return out


def plan_delete(desired: Desired, live: Live, *, policy: Policy = Policy()) -> Plan:
    """Stop and undefine every managed object the specs name; leave the rest alone."""
    steps: dict[ObjectKey, _Step] = {}
    notes: list[str] = []
    doomed: list[LiveDomain] = []
    for spec in desired.domains.values():
        found = live.domains.get(spec.name)
        if found is None:
            continue
        if not found.managed:
            notes.append(f"domain/{spec.name} is not managed by virtctl; left alone")
            continue
        doomed.append(found)
        steps[found.key] = _Step(actions=tuple(_delete_domain(
            found, _timeout(spec, policy), reason="deleted")))
    for net in desired.networks.values():
        found_net = live.networks.get(net.name)
        if found_net is None:
            continue
        if not found_net.managed:
            notes.append(f"network/{net.name} is not managed by virtctl; left alone")
            continue
        steps[found_net.key] = _Step(actions=tuple(_delete_network(
            found_net, _users_of(net.name, doomed), reason="deleted")))
    return _assemble(steps, creates=set(), deletes=set(steps), notes=notes)


# -- shared ---------------------------------------------------------------------------


def _timeout(spec: DomainSpec, policy: Policy) -> float:
    return spec.shutdown_timeout if spec.shutdown_timeout is not None else policy.shutdown_timeout


def _may_restart(spec: DomainSpec | NetworkSpec, policy: Policy) -> bool:
    if spec.update_policy is not None:
        return spec.update_policy.allows_restart
    return policy.allow_restart


def _define_xml(root: etree._Element, spec: DomainSpec | NetworkSpec, policy: Policy) -> str:
    """The definition to send: a copy of `root` carrying the ownership mark and the
    last-applied record of what was declared."""
    if isinstance(spec, DomainSpec):
        record = LastApplied(metadata.encode_declared(spec.xml), state=str(spec.state),
                             autostart=spec.autostart)
    else:
        record = LastApplied(metadata.encode_declared(spec.xml), autostart=spec.autostart,
                             active=spec.active)
    out = copy.deepcopy(root)
    metadata.set_owner(out, Ownership(spec_hash=spec_hash(spec.xml), source=spec.source.file,
                                      commit=policy.commit, last_applied=record))
    # Compact: the hypervisor stores it in its own layout anyway.
    return tostring(out, pretty=False)


def _previous(
    spec: DomainSpec | NetworkSpec, owner: Ownership | None, live_root: etree._Element
) -> etree._Element | None:
    """The declaration virtctl last applied, identity filled in from the live object;
    None when there is none or it equals the current spec (nothing was changed)."""
    if owner is None or owner.last_applied is None or owner.spec_hash == spec_hash(spec.xml):
        return None
    text = metadata.declared_xml(owner.last_applied)
    if text is None:
        return None
    previous = parse(text)
    if isinstance(spec, DomainSpec):
        fill_domain_identity(previous, live_root)
    else:
        fill_network_identity(previous, live_root)
    return previous


def _field_changes(
    spec: DomainSpec | NetworkSpec, owner: Ownership | None,
    root: etree._Element, live_root: etree._Element,
) -> list[FieldChange]:
    """Declared fields that differ, plus fields the spec no longer declares that the
    object still has; each tagged with its origin (spec change or drift)."""
    found = diff_xml(root, live_root)
    previous = _previous(spec, owner, live_root)
    if previous is None:
        origin = Origin.UNKNOWN if owner is None or owner.last_applied is None else Origin.DRIFT
        return [dataclasses.replace(c, origin=origin) for c in found]
    gone = removed(essence(previous), essence(root), live=essence(live_root))
    edited = {c.path for c in diff_xml(root, previous)} | {c.path for c in gone}
    return [dataclasses.replace(c, origin=Origin.SPEC if c.path in edited else Origin.DRIFT)
            for c in (*found, *gone)]


def _runtime_change(
    path: str, old: str, new: str, *, recorded: str | None, origin_known: bool
) -> FieldChange:
    if not origin_known:
        origin = Origin.UNKNOWN
    else:
        origin = Origin.DRIFT if recorded == new else Origin.SPEC
    return FieldChange(ChangeOp.CHANGE, path, old, new, change_class=ChangeClass.LIVE,
                       origin=origin)


def _yes(flag: bool | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


def _autostart_steps(
    spec: DomainSpec | NetworkSpec, have: bool, owner: Ownership | None
) -> tuple[list[Action], list[FieldChange]]:
    if spec.autostart == have:
        return [], []
    record = owner.last_applied if owner is not None else None
    change = _runtime_change("autostart", _yes(have) or "", _yes(spec.autostart) or "",
                             recorded=_yes(record.autostart) if record else None,
                             origin_known=record is not None)
    return [SetAutostart(kind=spec.key.kind, name=spec.name, enabled=spec.autostart)], [change]


# -- domains --------------------------------------------------------------------------


def _domain_step(
    spec: DomainSpec, live: LiveDomain | None, policy: Policy, caps: HostCapabilities | None
) -> _Step:
    root = parse(spec.xml)
    live_root = parse(live.xml) if live is not None else None
    fill_domain_identity(root, live_root)
    keep_host_machine(root, live_root, caps)
    if live is None or live_root is None:
        return _Step(actions=tuple(_create_domain(spec, root, policy)))
    return _update_domain(spec, live, root, live_root, policy)


def _create_domain(spec: DomainSpec, root: etree._Element, policy: Policy) -> list[Action]:
    kind, name = Kind.DOMAIN, spec.name
    nets = tuple(ObjectKey(Kind.NETWORK, n) for n in spec.networks)
    actions: list[Action] = [
        Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=True)]
    if spec.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=True))
    if spec.state is not DomainState.SHUTOFF:
        actions.append(Start(kind=kind, name=name, needs=nets))
    if spec.state is DomainState.PAUSED:
        actions.append(Suspend(kind=kind, name=name))
    return actions


def _update_domain(
    spec: DomainSpec, live: LiveDomain, root: etree._Element, live_root: etree._Element,
    policy: Policy,
) -> _Step:
    active = live.state.active
    running = parse(live.running_xml) if active and live.running_xml else None
    max_kib = max_memory_kib(running if running is not None else live_root)
    changes = classified(_field_changes(spec, live.owner, root, live_root), network=False,
                         active=active, max_kib=max_kib)
    if worst(changes) is ChangeClass.RECREATE:
        return _recreate_domain(spec, live, root, changes, policy)
    actions: list[Action] = []
    if changes or not live.managed or not live.persistent:
        actions.append(Define(kind=Kind.DOMAIN, name=spec.name,
                              xml=_define_xml(root, spec, policy), new=False, changes=changes,
                              reason=_define_reason(changes, live.managed, live.persistent)))
    autostart, runtime = _autostart_steps(spec, live.autostart, live.owner)
    actions += autostart
    stale = _stale(spec, changes, root, live_root, running)
    restart = bool(stale) and _may_restart(spec, policy)
    if restart:
        actions += _restart_domain(spec, stale, policy)
    else:
        power, state_changes = _power_actions(spec, live, policy)
        actions += power + _live_memory(spec, live, changes)
        runtime += state_changes
    return _Step(actions=tuple(actions), changes=(*changes, *runtime), restart=restart,
                 pending=() if restart else stale)


def _stale(
    spec: DomainSpec, changes: tuple[FieldChange, ...], root: etree._Element,
    live_root: etree._Element, running: etree._Element | None,
) -> tuple[FieldChange, ...]:
    """Restart-class differences between what was declared and what the guest runs;
    none when the guest is not running or is to be stopped anyway."""
    if running is None or spec.state is DomainState.SHUTOFF:
        return ()
    found = {c.path: c for c in stale_fields(root, live_root, running)}
    for change in changes:  # fields the spec dropped, still in the running guest too
        if change.op is ChangeOp.REMOVE and change.change_class is ChangeClass.RESTART:
            found.setdefault(change.path, change)
    return tuple(found[p] for p in sorted(found))


def _restart_domain(
    spec: DomainSpec, stale: tuple[FieldChange, ...], policy: Policy
) -> list[Action]:
    kind, name = Kind.DOMAIN, spec.name
    nets = tuple(ObjectKey(Kind.NETWORK, n) for n in spec.networks)
    why = "restart to apply " + ", ".join(sorted({c.path for c in stale}))
    actions: list[Action] = [
        Shutdown(kind=kind, name=name, reason=why, timeout=_timeout(spec, policy),
                 force=policy.force_stop),
        Start(kind=kind, name=name, needs=nets, reason=why),
    ]
    if spec.state is DomainState.PAUSED:
        actions.append(Suspend(kind=kind, name=name, reason=why))
    return actions


def _live_memory(
    spec: DomainSpec, live: LiveDomain, changes: tuple[FieldChange, ...]
) -> list[Action]:
    """A running guest gets its new current memory now (a balloon change)."""
    if not live.state.active or spec.state is DomainState.SHUTOFF:
        return []
    return [SetMemory(kind=Kind.DOMAIN, name=spec.name, kib=kib_of(c.new),
                      reason=f"currentMemory: {c.old} -> {c.new}")
            for c in changes if c.path == "currentMemory" and c.change_class is ChangeClass.LIVE]


def _recreate_domain(
    spec: DomainSpec, live: LiveDomain, root: etree._Element,
    changes: tuple[FieldChange, ...], policy: Policy,
) -> _Step:
    """Identity changes (uuid, domain type): undefine and define again, when allowed."""
    if spec.update_policy is not UpdatePolicy.RECREATE:
        return _Step(changes=changes, notes=(
            f"{spec.key}: {_paths(changes, ChangeClass.RECREATE)} cannot change in place; "
            "set updatePolicy: recreate to undefine and define it again",))
    kind, name, why = Kind.DOMAIN, spec.name, "recreate: " + _paths(changes, ChangeClass.RECREATE)
    actions: list[Action] = []
    if live.state.active:
        actions.append(Shutdown(kind=kind, name=name, reason=why,
                                timeout=_timeout(spec, policy), force=policy.force_stop))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, reason=why))
    actions += _create_domain(spec, root, policy)
    return _Step(actions=tuple(actions), changes=changes, recreate=True,
                 restart=live.state.active)


def _paths(changes: Iterable[FieldChange], cls: ChangeClass) -> str:
    return ", ".join(c.path for c in changes if c.change_class is cls)


def _define_reason(changes: tuple[FieldChange, ...], managed: bool, persistent: bool) -> str:
    if not persistent:
        return "make the transient object persistent"
    if not managed:
        return "adopt: mark as managed by virtctl"
    return f"{len(changes)} field(s) differ"


def _power_actions(
    spec: DomainSpec, live: LiveDomain, policy: Policy
) -> tuple[list[Action], list[FieldChange]]:
    have, want = live.state, spec.state
    actions = _power_steps(spec, have, policy)
    if not actions:
        return [], []
    record = live.owner.last_applied if live.owner is not None else None
    change = _runtime_change("state", str(have), str(want),
                             recorded=record.state if record else None,
                             origin_known=record is not None)
    return actions, [change]


def _power_steps(spec: DomainSpec, have: DomainState, policy: Policy) -> list[Action]:
    kind, name, want = Kind.DOMAIN, spec.name, spec.state
    nets = tuple(ObjectKey(Kind.NETWORK, n) for n in spec.networks)
    why = f"state: {have} -> {want}"
    if want is DomainState.SHUTOFF:
        if have.active:
            return [Shutdown(kind=kind, name=name, reason=why,
                             timeout=_timeout(spec, policy), force=policy.force_stop)]
        return []
    if not have.active:
        out: list[Action] = [Start(kind=kind, name=name, needs=nets, reason=why)]
        if want is DomainState.PAUSED:
            out.append(Suspend(kind=kind, name=name, reason=why))
        return out
    if want is DomainState.RUNNING and have is DomainState.PAUSED:
        return [Resume(kind=kind, name=name, reason=why)]
    if want is DomainState.PAUSED and have in (DomainState.RUNNING, DomainState.BLOCKED):
        return [Suspend(kind=kind, name=name, reason=why)]
    return []


def _delete_domain(live: LiveDomain, timeout: float, *, reason: str) -> list[Action]:
    kind, name = Kind.DOMAIN, live.name
    actions: list[Action] = []
    if live.state.active:
        # The guest is going away: ask it to shut down, then power it off after the timeout.
        actions.append(Shutdown(kind=kind, name=name, reason=reason, timeout=timeout,
                                force=True))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, reason=reason))
    return actions


def _users_of(network: str, domains: Iterable[LiveDomain]) -> tuple[ObjectKey, ...]:
    users = []
    for dom in domains:
        root = parse(dom.xml)
        if any(
            s.get("network") == network
            for s in root.iterfind("devices/interface[@type='network']/source")
        ):
            users.append(dom.key)
    return tuple(users)


# -- networks -------------------------------------------------------------------------


def _network_step(
    spec: NetworkSpec, live: LiveNetwork | None, policy: Policy, host: Live
) -> _Step:
    kind, name = Kind.NETWORK, spec.name
    root = parse(spec.xml)
    live_root = parse(live.xml) if live is not None else None
    fill_network_identity(root, live_root)
    if live is None or live_root is None:
        return _Step(actions=tuple(_create_network(spec, root, policy)))
    changes = classified(_field_changes(spec, live.owner, root, live_root), network=True,
                         active=live.active)
    if worst(changes) is ChangeClass.RECREATE:
        return _recreate_network(spec, live, root, changes, policy)
    actions: list[Action] = []
    if changes or not live.managed or not live.persistent:
        actions.append(
            Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=False,
                   changes=changes, reason=_define_reason(changes, live.managed, live.persistent))
        )
    autostart, runtime = _autostart_steps(spec, live.autostart, live.owner)
    actions += autostart
    stale = tuple(c for c in changes if c.change_class is ChangeClass.RESTART)
    if stale and spec.active and _may_restart(spec, policy):
        why = "restart to apply " + ", ".join(c.path for c in stale)
        actions += [Destroy(kind=kind, name=name, reason=why), Start(kind=kind, name=name,
                                                                       reason=why)]
        users = _users_of(name, (d for d in host.domains.values() if d.state.active))
        note = (f"{spec.key} restarts: running guests on it ({', '.join(map(str, users))}) "
                "lose their connection until their interfaces are reattached"
                if users else f"{spec.key} restarts: no running guest uses it")
        return _Step(actions=tuple(actions), changes=(*changes, *runtime), restart=True,
                     notes=(note,))
    power, state_changes = _network_power(spec, live)
    return _Step(actions=tuple(actions + power), changes=(*changes, *runtime, *state_changes),
                 pending=stale if spec.active else ())


def _network_power(spec: NetworkSpec, live: LiveNetwork) -> tuple[list[Action], list[FieldChange]]:
    kind, name = Kind.NETWORK, spec.name
    if spec.active == live.active:
        return [], []
    record = live.owner.last_applied if live.owner is not None else None
    change = _runtime_change("active", _yes(live.active) or "", _yes(spec.active) or "",
                             recorded=_yes(record.active) if record else None,
                             origin_known=record is not None)
    if spec.active:
        return [Start(kind=kind, name=name, reason="active: no -> yes")], [change]
    return [Destroy(kind=kind, name=name, reason="active: yes -> no")], [change]


def _create_network(spec: NetworkSpec, root: etree._Element, policy: Policy) -> list[Action]:
    kind, name = Kind.NETWORK, spec.name
    actions: list[Action] = [
        Define(kind=kind, name=name, xml=_define_xml(root, spec, policy), new=True)]
    if spec.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=True))
    if spec.active:
        actions.append(Start(kind=kind, name=name))
    return actions


def _recreate_network(
    spec: NetworkSpec, live: LiveNetwork, root: etree._Element,
    changes: tuple[FieldChange, ...], policy: Policy,
) -> _Step:
    if spec.update_policy is not UpdatePolicy.RECREATE:
        return _Step(changes=changes, notes=(
            f"{spec.key}: {_paths(changes, ChangeClass.RECREATE)} cannot change in place; "
            "set updatePolicy: recreate to undefine and define it again",))
    why = "recreate: " + _paths(changes, ChangeClass.RECREATE)
    actions: list[Action] = []
    if live.active:
        actions.append(Destroy(kind=Kind.NETWORK, name=spec.name, reason=why))
    if live.persistent:
        actions.append(Undefine(kind=Kind.NETWORK, name=spec.name, reason=why))
    actions += _create_network(spec, root, policy)
    return _Step(actions=tuple(actions), changes=changes, recreate=True, restart=live.active)


def _delete_network(
    live: LiveNetwork, users: tuple[ObjectKey, ...], *, reason: str
) -> list[Action]:
    kind, name = Kind.NETWORK, live.name
    actions: list[Action] = []
    if live.active:
        actions.append(Destroy(kind=kind, name=name, needs=users, reason=reason))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, needs=users, reason=reason))
    return actions
