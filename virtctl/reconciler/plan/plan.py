"""The planner: `plan(desired, live, *, policy) -> Plan`, and `plan_delete` for `delete`.

Pure: no driver calls, no clock. Definition, power state, autostart and deletion are
separate axes with separate actions; ordering comes from one phase table (actions.py),
then kind and name, so the same inputs always give the same plan. Input is assumed to
have passed `validate.check` (ownership, references, capabilities).

This module holds the plan itself and domain planning; networks are planned in
`plan_network`, and `steps` holds what both share (`Policy` and `spec_hash` live there
and are re-exported here, where callers import them from).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import replace

from lxml import etree

from ...capabilities import HostCapabilities
from ...model import (
    ChangeClass,
    Desired,
    DomainSpec,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    LiveOp,
    ObjectKey,
    Ownership,
    UpdatePolicy,
)
from virtctl.reconciler.trees import (
    live_tree,
    private,
    running_or_live_tree,
    running_tree,
    spec_tree,
)
from .actions import (
    Action,
    AttachDevice,
    CreateVolume,
    Define,
    Phase,
    Resume,
    SetAutostart,
    SetMemory,
    SetRunningNote,
    Shutdown,
    Start,
    Suspend,
    Undefine,
    phase_of,
)
from .classify import classified, kib_of, max_memory_kib, stale_fields, touches, whole_device, worst
from .diff import ChangeOp, FieldChange
from .identity import fill_domain_identity, keep_assigned, keep_host_machine, place_hot_plugged
from .liverules import LivePlan, RunningNote, domain_live, find, note_xml, read_note, unreleased
from .members import plan_members
from ..memo import Memo
from .plan_network import delete_network, network_step
from .plan_storage import StorageView, delete_storage, plan_storage
from .planned import Pending, Plan
from .steps import (
    Policy,
    Step,
    as_live,
    autostart_steps,
    define_reason,
    moved_set,
    relabeled,
    removed_in,
    define_xml,
    field_changes,
    live_allowed,
    may_restart,
    paths,
    recreate_refused,
    runtime_change,
    same_field,
    set_in_scope,
    spec_hash,
    users_of,
)

__all__ = ["Pending", "Plan", "Policy", "plan", "plan_delete", "spec_hash"]


def _ordered(actions: Iterable[Action]) -> tuple[Action, ...]:
    # Stable sort: within one object, actions keep the order the planner emitted them.
    # An action's phase depends on its type and kind only: look each pair up once.
    phases: dict[tuple[type, Kind], Phase] = {}

    def order(action: Action) -> tuple[Phase, Kind, int, str]:
        kind = action.kind
        phase = phases.get((type(action), kind))
        if phase is None:
            phase = phases[(type(action), kind)] = phase_of(action)
        # A copy-on-write overlay is created after the volume it is backed by.
        depth = action.depth if isinstance(action, CreateVolume) else 0
        return phase, kind, depth, action.name

    return tuple(sorted(actions, key=order))


def plan(
    desired: Desired,
    live: Live,
    *,
    policy: Policy = Policy(),
    caps: HostCapabilities | None = None,
    memo: Memo | None = None,
    live_ops: frozenset[LiveOp] = frozenset(LiveOp),
    storage: StorageView | None = None,
) -> Plan:
    """The actions that make `live` match `desired`. `storage` (the host's pools and
    volumes with virtctl's records) is needed when specs declare storage or with
    --prune; without it, storage is left out of the plan. `caps` (the host's capabilities)
    lets declared machine aliases match the versioned machines the host stores;
    `live_ops` says what the host changes on running objects (`Reader.live_ops`). Objects
    whose sync key (memo.py) was found in sync before, with exactly these inputs, are not
    compared again; the plan's `in_sync` lists the keys of every object in sync now."""
    memo = memo or Memo()
    steps: dict[ObjectKey, Step] = {}
    creates: set[ObjectKey] = set()
    synced: set[str] = set()

    def remember(key: ObjectKey, step: Step) -> Step:
        found = memo.keys.get(key)
        if found is not None and not (step.actions or step.changes or step.pending
                                      or step.notes):
            synced.add(found)
        return step

    skip = memo.verified()
    for net in desired.networks.values():
        key = net.key
        current = live.networks.get(net.name)
        if current is None:
            creates.add(key)
        step = Step() if key in skip else network_step(net, current, policy, live, live_ops)
        steps[key] = remember(key, step)
    for dom in desired.domains.values():
        key = dom.key
        current_dom = live.domains.get(dom.name)
        if current_dom is None:
            creates.add(key)
        step = (Step() if key in skip
                else _domain_step(dom, current_dom, policy, caps, live_ops))
        steps[key] = remember(key, step)
    deletes: set[ObjectKey] = set()
    # Guests this plan stops (restarts included) leave their networks before any
    # network is torn down (actions.Phase), so they keep no pruned network alive.
    stopping = frozenset(
        k.name for k, s in steps.items()
        if k.kind is Kind.DOMAIN and any(isinstance(a, Shutdown) for a in s.actions))
    pruned = _prune(desired, live, policy, stopping) if policy.prune else {}
    if storage is not None:
        leaving = frozenset(k.name for k in pruned if k.kind is Kind.DOMAIN)
        for key, step in plan_storage(desired, storage, policy, leaving,
                                      live_media=policy.live and LiveOp.UPDATE in live_ops,
                                      ).items():
            steps[key] = step
            if key.kind is Kind.POOL and key.name not in storage.storage.pools or (
                    key.kind is Kind.VOLUME and key.name not in storage.storage.volumes):
                creates.add(key)
            elif step.actions and key.name not in (
                    desired.pools if key.kind is Kind.POOL else desired.volumes):
                deletes.add(key)  # (a step with notes only: kept, saying why)
    for key, step in pruned.items():
        if step.actions:
            deletes.add(key)  # (a step with notes only: kept, saying why)
        steps[key] = step
    planned = _assemble(steps, creates=creates, deletes=deletes)
    return replace(planned, in_sync=frozenset(synced),
                   members=plan_members(_touched(planned), desired, live, storage))


def _touched(planned: Plan) -> list[ObjectKey]:
    return [*planned.keys(), *(k for k, _ in planned.changes), *(p.key for p in planned.pending)]


def _assemble(
    steps: dict[ObjectKey, Step], *, creates: set[ObjectKey], deletes: set[ObjectKey],
    notes: Iterable[str] = (),
) -> Plan:
    # Sorted by (kind, name), as ObjectKey orders, without calling its Python-level `<`.
    ordered = sorted(steps.items(), key=lambda item: (item[0].kind, item[0].name))
    return Plan(
        actions=_ordered(a for s in steps.values() for a in s.actions),
        notes=(*notes, *(n for _, s in ordered for n in s.notes)),
        creates=frozenset(creates),
        deletes=frozenset(deletes),
        restarts=frozenset(k for k, s in steps.items() if s.restart),
        recreates=frozenset(k for k, s in steps.items() if s.recreate),
        changes=tuple((k, s.changes) for k, s in ordered if s.changes),
        pending=tuple(Pending(k, s.pending) for k, s in ordered if s.pending),
    )


#: More deletions than this in one --prune need --prune-all (a wrong -f path or an
#: emptied directory must not wipe a host).
PRUNE_LIMIT = 5


def in_prune_scope(owner: Ownership | None, policy: Policy) -> bool:
    """Whether --prune may delete an object with this mark: a managed object of this
    run's apply set, or of a set the run names with --prune-set. --prune-all does not
    widen it (it lifts the count limit only); an unmanaged object is never in it. With a
    selector (-l), only objects whose recorded labels match it (selectors.py)."""
    if not set_in_scope(owner.apply_set if owner is not None else None, policy):
        return False
    if policy.selector:
        from ...selectors import parse_selector

        assert owner is not None
        return parse_selector(policy.selector).matches(owner.labels)
    return True


def _sets_named(policy: Policy) -> str:
    others = sorted(set(policy.prune_sets) - {policy.apply_set})
    return f"set {policy.apply_set!r}" + "".join(f", set {s!r} (--prune-set)" for s in others)


def prune_refusal(planned: Plan, desired: Desired, policy: Policy, *,
                  declared_elsewhere: bool = False) -> str | None:
    """Why this plan's pruning needs --prune-all, or None: more than PRUNE_LIMIT
    deletions, or specs that declare nothing on this host (everything of the set goes).
    `declared_elsewhere`: spec files that declare something here could not be read this
    time (the watcher keeps their objects), so the specs are not empty.

    The advice must be safe to follow: the plan's deletions are all of this run's sets
    (in_prune_scope), and --prune-all plans exactly the same ones, so the message lists
    what it would delete and says that nothing of another set is reached."""
    if not policy.prune or policy.prune_all:
        return None
    doomed = sorted(str(k) for k in planned.deletes)
    if not doomed:
        return None
    empty = not (declared_elsewhere or desired.domains or desired.networks or desired.pools
                 or desired.volumes)
    if not empty and len(doomed) <= PRUNE_LIMIT:
        return None
    why = ("the specs declare nothing for this host" if empty
           else f"more than {PRUNE_LIMIT} objects would go")
    shown = ", ".join(doomed[:10]) + (", ..." if len(doomed) > 10 else "")
    return (f"refusing to prune {len(doomed)} object(s) of {_sets_named(policy)}: {why} "
            f"({shown}); check the -f paths and the set; if exactly these are to go, "
            "pass --prune-all, which lifts this limit only (no object of a set not named "
            "here is ever pruned)")


def _prune(desired: Desired, live: Live, policy: Policy,
           stopping: frozenset[str] = frozenset()) -> dict[ObjectKey, Step]:
    reason = "pruned: absent from the specs"
    doomed = [d for d in live.domains.values()
              if in_prune_scope(d.owner, policy) and d.name not in desired.domains
              and str(d.key) not in policy.protected]
    out = {d.key: Step(actions=tuple(_delete_domain(d, policy.shutdown_timeout,
                                                    reason=reason))) for d in doomed}
    linked: dict[str, list[str]] | None = None  # read once, only when a network goes
    for n in live.networks.values():
        if (in_prune_scope(n.owner, policy) and n.name not in desired.networks
                and str(n.key) not in policy.protected):
            if linked is None:
                linked = _running_links(live, {d.name for d in doomed} | stopping)
            if n.active and linked.get(n.name):
                # Another set's (or an unmanaged) running guest would lose its link.
                out[n.key] = Step(notes=(
                    f"{n.key}: not pruned: running guest(s) {', '.join(linked[n.name])} "
                    "staying on the host use it",))
                continue
            # A guest the plan stops first must have stopped before its network goes:
            # if its stop fails, the network is kept (the applier skips what needs it).
            users = users_of(n.name, doomed) + tuple(
                live.domains[name].key for name in sorted(stopping)
                if name in live.domains and _runs_on(live.domains[name], n.name))
            out[n.key] = Step(actions=tuple(delete_network(n, users, reason=reason)))
    return out


def _runs_on(dom: LiveDomain, network: str) -> bool:
    """Whether the running guest `dom` has an interface on `network`."""
    root = running_or_live_tree(dom)
    return any(s.get("network") == network
               for s in root.iterfind("devices/interface[@type='network']/source"))


def _running_links(live: Live, leaving: set[str]) -> dict[str, list[str]]:
    """network -> the running guests (sorted) that stay on the host and use it."""
    out: dict[str, list[str]] = {}
    for dom in sorted(live.domains.values(), key=lambda d: d.name):
        if not dom.state.active or dom.name in leaving:
            continue
        root = running_or_live_tree(dom)
        for source in root.iterfind("devices/interface[@type='network']/source"):
            name = source.get("network")
            if name and dom.name not in out.setdefault(name, []):
                out[name].append(dom.name)
    return out


def plan_delete(desired: Desired, live: Live, *, policy: Policy = Policy(),
                storage: StorageView | None = None) -> Plan:
    """Stop and undefine every managed object the specs name; leave the rest alone.
    Volumes are deleted only where their spec says deletePolicy: delete."""
    steps: dict[ObjectKey, Step] = {}
    notes: list[str] = []
    if storage is not None:
        leaving = frozenset(name for name in desired.domains
                            if (d := live.domains.get(name)) is not None and d.managed)
        found, said = delete_storage(desired, storage, leaving)
        steps.update(found)
        notes += said
    doomed: list[LiveDomain] = []
    for spec in desired.domains.values():
        found = live.domains.get(spec.name)
        if found is None:
            continue
        if not found.managed:
            notes.append(f"domain/{spec.name} is not managed by virtctl; left alone")
            continue
        doomed.append(found)
        steps[found.key] = Step(actions=tuple(_delete_domain(
            found, _timeout(spec, policy), reason="deleted")))
    for net in desired.networks.values():
        found_net = live.networks.get(net.name)
        if found_net is None:
            continue
        if not found_net.managed:
            notes.append(f"network/{net.name} is not managed by virtctl; left alone")
            continue
        steps[found_net.key] = Step(actions=tuple(delete_network(
            found_net, users_of(net.name, doomed), reason="deleted")))
    planned = _assemble(steps, creates=set(), deletes=set(steps), notes=notes)
    return replace(planned, members=plan_members(planned.keys(), desired, live, storage))


# -- domains --------------------------------------------------------------------------


def _timeout(spec: DomainSpec, policy: Policy) -> float:
    return spec.shutdown_timeout if spec.shutdown_timeout is not None else policy.shutdown_timeout


def _domain_step(
    spec: DomainSpec, live: LiveDomain | None, policy: Policy, caps: HostCapabilities | None,
    live_ops: frozenset[LiveOp],
) -> Step:
    root = private(spec_tree(spec))  # edited below: identity, machine, addresses
    live_root = live_tree(live) if live is not None else None  # shared: read only
    fill_domain_identity(root, live_root)
    keep_host_machine(root, live_root, caps)
    if live is None or live_root is None:
        return Step(actions=tuple(_create_domain(spec, root, policy)))
    # What the user declared (identity filled in): restart-pending compares only this,
    # never what virtctl keeps for the user (addresses, seclabel) or libvirt fills in.
    declared = copy.deepcopy(root) if live.state.active else root
    keep_assigned(root, live_root)
    return _update_domain(spec, live, root, declared, live_root, policy, live_ops)


def _create_domain(spec: DomainSpec, root: etree._Element, policy: Policy) -> list[Action]:
    """Define (and start...) a new domain from `root`, which the definition takes over:
    callers do not use it afterwards."""
    kind, name = Kind.DOMAIN, spec.name
    nets = (*(ObjectKey(Kind.NETWORK, n) for n in spec.networks), *_volumes_used(root))
    xml = define_xml(root, spec, policy, last_use=True)
    actions: list[Action] = [Define(kind=kind, name=name, xml=xml, new=True)]
    if spec.autostart:
        actions.append(SetAutostart(kind=kind, name=name, enabled=True))
    if spec.state is not DomainState.SHUTOFF:
        actions.append(Start(kind=kind, name=name, needs=nets))
    if spec.state is DomainState.PAUSED:
        actions.append(Suspend(kind=kind, name=name))
    return actions


def _volumes_used(root: etree._Element) -> tuple[ObjectKey, ...]:
    """The pools and volumes a guest's disks name: starting it needs them."""
    out: list[ObjectKey] = []
    for source in root.iterfind("devices/disk[@type='volume']/source"):
        pool, volume = source.get("pool"), source.get("volume")
        if pool and volume:
            out += [ObjectKey(Kind.POOL, pool), ObjectKey(Kind.VOLUME, f"{pool}/{volume}")]
    return tuple(dict.fromkeys(out))


def _update_domain(
    spec: DomainSpec, live: LiveDomain, root: etree._Element, declared: etree._Element,
    live_root: etree._Element, policy: Policy, live_ops: frozenset[LiveOp],
) -> Step:
    active = live.state.active
    running = running_tree(live) if active and live.running_xml else None
    max_kib = max_memory_kib(running if running is not None else live_root)
    changes = classified(field_changes(spec, live.owner, root, live_root), network=False,
                         active=active, max_kib=max_kib)
    if worst(changes) is ChangeClass.RECREATE:
        return _recreate_domain(spec, live, root, changes, policy)
    stale = _stale(spec, live.owner, changes, declared, live_root, running)
    hot = LivePlan()
    if stale and running is not None and live_allowed(spec, policy):
        hot = domain_live(stale, root, running, name=spec.name, support=live_ops,
                          detach_timeout=policy.detach_timeout)
    rest = tuple(c for c in stale if c.path not in hot.covered)
    restart = bool(rest) and may_restart(spec, policy)
    if not restart and running is not None:
        # Hot-plugged devices get an address free in both definitions, so the guest
        # sees them where they will be after its next boot, in one attach call.
        place_hot_plugged(root, [a.device for a in hot.actions if isinstance(a, AttachDevice)],
                          live_root, running)
    actions: list[Action] = []
    if (changes or not live.managed or not live.persistent
            or moved_set(live.owner, policy) or relabeled(live.owner, spec)):
        actions.append(Define(kind=Kind.DOMAIN, name=spec.name,
                              xml=define_xml(root, spec, policy), new=False, changes=changes,
                              reason=define_reason(changes, live.owner, live.persistent,
                                                   policy)))
    autostart, runtime = autostart_steps(spec, live.autostart, live.owner)
    actions += autostart
    notes: tuple[str, ...] = ()
    if restart:
        actions += _restart_domain(spec, rest, policy)  # a restart applies the live ones too
    else:
        power, state_changes = _power_actions(spec, live, policy)
        note = _running_note(spec, changes, rest, declared, running)
        actions += (power + note + list(hot.actions)
                    + _live_memory(spec, live, changes, policy.detach_timeout))
        runtime += state_changes
        changes = _with_live(changes, stale, hot)
        notes = _unreleased_notes(spec, rest, running)
    return Step(actions=tuple(actions), changes=(*changes, *runtime), restart=restart,
                pending=() if restart else rest, notes=notes)


def _running_note(
    spec: DomainSpec, changes: tuple[FieldChange, ...],
    rest: tuple[FieldChange, ...], declared: etree._Element, running: etree._Element | None,
) -> list[Action]:
    """The note on the running guest (liverules.RunningNote) made current: what this run
    changes in the definition and leaves for the restart is added, so it stays pending
    in later runs (the definition will no longer show it); what no longer differs, and
    devices declared again, are dropped. None when the note is already right."""
    if running is None or spec.state is DomainState.SHUTOFF:
        return []
    old = read_note(running)
    # What a live action of this run covers is left out: done, it no longer differs;
    # refused or not taken, the applier notes it itself (applylive.py).
    still = [c.path for c in rest]
    changed = {c.path for c in changes}
    new = RunningNote(
        unreleased=frozenset(k for k in old.unreleased
                             if find(running, k) is not None and find(declared, k) is None),
        # A whole new device needs no note: a device only one side has is always pending.
        pending=frozenset({p for p in old.pending if touches(p, still)}
                          | {c.path for c in rest if c.path in changed
                             and not (c.op is ChangeOp.ADD and whole_device(c.path))}),
        refused=frozenset(p for p in old.refused if touches(p, still)),
    )
    if new == old:
        return []
    return [SetRunningNote(kind=Kind.DOMAIN, name=spec.name, xml=note_xml(new),
                           reason="note what the running guest keeps until it restarts")]


def _with_live(
    changes: tuple[FieldChange, ...], stale: tuple[FieldChange, ...], hot: LivePlan
) -> tuple[FieldChange, ...]:
    """The definition's changes with those applied live classed so, plus differences only
    the running guest has (an earlier run redefined without applying them live)."""
    if not hot.covered:
        return changes
    # A running difference the definition's changes already name (at any depth within
    # the device) is the same field: shown once, by the definition's change.
    known = [c.path for c in changes]
    extra = [replace(c, change_class=ChangeClass.RESTART) for c in stale
             if c.path in hot.covered and not any(same_field(c.path, k) for k in known)]
    return as_live((*changes, *extra), hot.covered)


def _unreleased_notes(
    spec: DomainSpec, rest: tuple[FieldChange, ...], running: etree._Element | None
) -> tuple[str, ...]:
    held = unreleased(running)
    return tuple(
        f"{spec.key}: the guest has not released {c.path} (asked to detach it); it goes "
        "when the guest restarts" for c in rest if c.path in held)


def _stale(
    spec: DomainSpec, owner: Ownership | None, changes: tuple[FieldChange, ...],
    declared: etree._Element, live_root: etree._Element, running: etree._Element | None,
) -> tuple[FieldChange, ...]:
    """Restart-class differences between what was declared and what the guest runs;
    none when the guest is not running or is to be stopped anyway."""
    if running is None or spec.state is DomainState.SHUTOFF:
        return ()
    # Fields the spec dropped, still in the running guest too: first, so they keep their
    # origin (only what the spec removed is ever detached live). One the guest never got
    # (a change reverted before any restart) needs no restart.
    removals = [c for c in changes
                if c.op is ChangeOp.REMOVE and c.change_class is ChangeClass.RESTART]
    running_has = removed_in(spec, owner, declared, running) if removals else set()
    found = {c.path: c for c in removals if c.path in running_has}
    for change in stale_fields(declared, live_root, running,
                               changed=[c.path for c in changes]):
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
    spec: DomainSpec, live: LiveDomain, changes: tuple[FieldChange, ...], timeout: float
) -> list[Action]:
    """A running guest gets its new current memory now (a balloon change; the guest has
    `timeout` seconds to take it)."""
    if not live.state.active or spec.state is DomainState.SHUTOFF:
        return []
    return [SetMemory(kind=Kind.DOMAIN, name=spec.name, kib=kib_of(c.new), timeout=timeout,
                      reason=f"currentMemory: {c.old} -> {c.new}")
            for c in changes if c.path == "currentMemory" and c.change_class is ChangeClass.LIVE]


def _recreate_domain(
    spec: DomainSpec, live: LiveDomain, root: etree._Element,
    changes: tuple[FieldChange, ...], policy: Policy,
) -> Step:
    """Identity changes (uuid, domain type): undefine and define again, when allowed."""
    if spec.update_policy is not UpdatePolicy.RECREATE:
        return recreate_refused(spec, changes)
    kind, name, why = Kind.DOMAIN, spec.name, "recreate: " + paths(changes, ChangeClass.RECREATE)
    actions: list[Action] = []
    if live.state.active:
        actions.append(Shutdown(kind=kind, name=name, reason=why,
                                timeout=_timeout(spec, policy), force=policy.force_stop))
    if live.persistent:
        actions.append(Undefine(kind=kind, name=name, reason=why))
    actions += _create_domain(spec, root, policy)
    # Running again afterwards only when the spec wants it running (or paused).
    return Step(actions=tuple(actions), changes=changes, recreate=True,
                restart=live.state.active and spec.state is not DomainState.SHUTOFF)


def _power_actions(
    spec: DomainSpec, live: LiveDomain, policy: Policy
) -> tuple[list[Action], list[FieldChange]]:
    have, want = live.state, spec.state
    actions = _power_steps(spec, have, policy)
    if not actions:
        return [], []
    record = live.owner.last_applied if live.owner is not None else None
    change = runtime_change("state", str(have), str(want),
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

