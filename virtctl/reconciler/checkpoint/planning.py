"""The pure post-pass that guards disruptive changes, and the plans of `rollback`.

`guard(plan, desired, live, policy)` finds, for each guest whose spec asks for
checkpoints (`updatePolicy: {checkpoint: true}`) or with `apply --checkpoint`, the
disruptive part of its plan: a restart, or a change to the disks (source, format,
backing store) of a guest that is off. Around it goes a `TakeCheckpoint` (after the
stop phase, so the guest is off and its disks consistent; first of all when memory
state is asked for and the guest runs) and, when the guest is to run afterwards, a
`HealthGate` last of all (else `CloseJournal`). What a checkpoint cannot save is
refused with the reason, unless `--no-checkpoint`: a writable disk that is not qcow2
(raw: no internal snapshots), a recreate (the identity the checkpoint belongs to goes),
a volume the plan replaces (its internal snapshots go with it).

`drop_before_undefine` puts a `DropCheckpoints` before each undefine of a guest with
virtctl checkpoints (libvirt refuses to undefine a guest that has snapshots): deleted
when all its volumes' deletePolicy is delete, else only forgotten (the data stays in
the retained qcow2 files). Pure: no driver, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from lxml import etree

from ...errors import ErrorCode, SpecError, SpecErrors
from ...model import (
    ChangeClass,
    DeletePolicy,
    Desired,
    DomainSpec,
    DomainState,
    Kind,
    Live,
    LiveDomain,
    ObjectKey,
)
from ..plan.actions import Action, DeleteVolume, Define, Phase, Start, Undefine, phase_of
from ..plan.diff import FieldChange, diff, removed
from ..plan.essence import essence
from ..plan.planned import Plan
from ..plan.policy import Policy
from ..plan.steps import spec_hash
from ...xmlutil import parse
from .actions import CloseJournal, DropCheckpoints, HealthGate, Rollback, TakeCheckpoint
from ...checkpoints import Failure, Health, SnapshotInfo, ours_oldest_first, record_of, safety_of

# Disk fields whose change replaces what the guest's disk holds or how it is read.
_DISK_FIELDS = ("/source", "/driver/@type", "/backingStore", "/@type")


def wanted(spec: DomainSpec, policy: Policy) -> bool:
    """Checkpoints for this guest: --checkpoint / --no-checkpoint, else its spec."""
    flag = getattr(policy, "checkpoint", None)
    return safety_of(spec.safety).checkpoint if flag is None else bool(flag)


def _disk_change(path: str) -> bool:
    return path.startswith("devices/disk") and any(f in path for f in _DISK_FIELDS)


def disruptive(planned: Plan, key: ObjectKey, live: LiveDomain) -> str:
    """Why this guest's plan needs a checkpoint ("" when it does not)."""
    if key in planned.recreates:
        return "recreate"
    if key in planned.restarts:
        return "restart"
    if live.state.active:
        return ""  # not stopped: a disk change waits for its next boot (restart-pending)
    starts = any(isinstance(a, Start) and a.key == key for a in planned.actions)
    for action in planned.actions:
        if isinstance(action, Define) and action.key == key and not action.new:
            paths = sorted({c.path for c in action.changes if _disk_change(c.path)})
            if paths:
                return "disk change " + ", ".join(paths)
            # A stopped guest this plan starts boots into every change at once.
            if starts and any(c.change_class is not None and c.change_class.rank
                              >= ChangeClass.NEXT_BOOT.rank for c in action.changes):
                return "start with a changed definition"
    return ""


def _volumes(root: etree._Element) -> list[str]:
    return [f"{s.get('pool')}/{s.get('volume')}"
            for s in root.iterfind("devices/disk[@type='volume']/source")
            if s.get("pool") and s.get("volume")]


def refusals(planned: Plan, key: ObjectKey, live: LiveDomain, why: str) -> list[str]:
    """What a checkpoint of this guest cannot save, for the change `why`."""
    out = []
    if why == "recreate":
        out.append("a recreate changes the guest's identity, which its checkpoints "
                   "belong to")
    root = parse(live.xml)
    for disk in root.iterfind("devices/disk"):
        if disk.get("device", "disk") != "disk" or disk.find("readonly") is not None \
                or disk.find("source") is None:
            continue
        driver = disk.find("driver")
        fmt = driver.get("type") if driver is not None else None
        if fmt != "qcow2":
            target = disk.find("target")
            dev = target.get("dev") if target is not None else "?"
            out.append(f"disk {dev} is {fmt or 'raw'}: only qcow2 disks hold internal "
                       "snapshots")
    used = set(_volumes(root))
    for action in planned.actions:
        if isinstance(action, DeleteVolume) and action.name in used:
            out.append(f"volume {action.name} is replaced: its snapshots would go with it")
    return out


def _stop_end(actions: tuple[Action, ...]) -> int:
    """Index just after the stop phase (the plan is in phase order)."""
    n = 0
    for action in actions:
        if phase_of(action) is not Phase.DOMAIN_STOP:
            break
        n += 1
    return n


def guard(planned: Plan, desired: Desired, live: Live, policy: Policy,
          failures: Mapping[str, Failure] | None = None) -> Plan:
    """`planned` with the changes that failed their gate before held back (`failures`,
    unless --retry-failed), and checkpoints and health gates around disruptive changes;
    SpecErrors naming each guest whose change cannot be checkpointed. A guest that
    declares `health:` without checkpoints gets a gate that only reports."""
    if failures and not getattr(policy, "retry_failed", False):
        planned = hold(planned, desired, live, failures)
    if not planned.actions:
        return planned
    first: list[Action] = []
    after_stop: list[Action] = []
    last: list[Action] = []
    notes: list[str] = []
    errors: list[SpecError] = []
    rollback = getattr(policy, "rollback", True)
    for key in planned.keys():  # noqa: SIM118 (a method, not a dict)
        spec = desired.domains.get(key.name) if key.kind is Kind.DOMAIN else None
        dom = live.domains.get(key.name) if spec is not None else None
        if spec is None or dom is None or not dom.persistent:
            continue
        safety = safety_of(spec.safety)
        checkpoint = wanted(spec, policy)
        if not checkpoint and safety.health is None:
            continue
        why = disruptive(planned, key, dom)
        if not why:
            continue
        running = spec.state is DomainState.RUNNING and any(
            isinstance(a, Start) and a.key == key for a in planned.actions)
        if not checkpoint:
            assert safety.health is not None
            if running:  # nothing to roll back to: the verdict is waited for and reported
                last.append(HealthGate(kind=Kind.DOMAIN, name=key.name, health=safety.health,
                                       rollback=False, checkpointed=False,
                                       reason=f"wait for {safety.health.describe()}; no "
                                       "checkpoint, so no rollback"))
                notes.append(f"{key}: health gate ({safety.health.describe()}) after the "
                             f"{why}, without a checkpoint: a failure is reported, not "
                             "rolled back")
            continue
        problems = refusals(planned, key, dom, why)
        if problems:
            errors += [SpecError(
                f"{key}: cannot take a checkpoint before this {why}: {p} "
                "(apply --no-checkpoint to change it without one)",
                code=ErrorCode.OPERATION_INVALID, source=spec.source) for p in problems]
            continue
        take = TakeCheckpoint(
            kind=Kind.DOMAIN, name=key.name, reason=f"before {why}", commit=policy.commit,
            memory=safety.memory and dom.state.active, keep=safety.keep,
            target=spec_hash(spec.xml), running=running, health=safety.health,
            rollback=rollback, digest=spec.digest)
        (first if take.memory else after_stop).append(take)
        # No `health:`: the gate only checks that the guest runs (no probe, no wait).
        health = safety.health or Health(timeout=0.0)
        if running:
            last.append(HealthGate(kind=Kind.DOMAIN, name=key.name, health=health,
                                   rollback=rollback, reason=f"wait for {health.describe()}"))
        else:
            last.append(CloseJournal(kind=Kind.DOMAIN, name=key.name,
                                     reason="the guest stays off: no gate"))
        notes.append(f"{key}: checkpoint before {why}"
                     + (f", then health gate ({health.describe()})" if running else ""))
    if errors:
        raise SpecErrors(errors)
    if not last:
        return planned
    actions = planned.actions
    cut = _stop_end(actions)
    return replace(planned, actions=(*first, *actions[:cut], *after_stop, *actions[cut:],
                                     *last),
                   notes=(*planned.notes, *notes))


def held_back(failure: Failure, spec: DomainSpec, dom: LiveDomain) -> bool:
    """Whether the plan for this guest is the change that failed: the same spec, and
    the same guest as the rollback left it."""
    base = dom.owner.spec_hash if dom.owner is not None else ""
    return (failure.digest == spec.digest and failure.uuid == dom.uuid
            and failure.base == base)


def hold(planned: Plan, desired: Desired, live: Live, failures: Mapping[str, Failure]) -> Plan:
    """`planned` without the actions of each guest whose change failed its gate and was
    rolled back (the same change: `held_back`): its changes stay shown, held."""
    held: list[tuple[ObjectKey, str]] = []
    for key in planned.keys():  # noqa: SIM118 (a method, not a dict)
        failure = failures.get(key.name) if key.kind is Kind.DOMAIN else None
        spec = desired.domains.get(key.name)
        dom = live.domains.get(key.name)
        if failure is None or spec is None or dom is None or not held_back(failure, spec, dom):
            continue
        held.append((key, f"this change failed its health gate at {failure.time} and was "
                          f"rolled back to checkpoint {failure.checkpoint} ({failure.why}); "
                          "held back until the spec changes (apply --retry-failed tries "
                          "it again)"))
    if not held:
        return planned
    keys = {k for k, _ in held}
    # A guest the rollback left off (recovery leaves its start to the plan) is still
    # started, into the definition it was rolled back to: only the change is held.
    off = {k for k in keys if not live.domains[k.name].state.active}
    return replace(planned, actions=tuple(
        a for a in planned.actions if a.key not in keys
        or (a.key in off and isinstance(a, Start))),
        restarts=planned.restarts - keys, recreates=planned.recreates - keys,
        held=(*planned.held, *held))


def undefined_guests(planned: Plan) -> list[str]:
    return [a.name for a in planned.actions
            if isinstance(a, Undefine) and a.kind is Kind.DOMAIN]


def drop_before_undefine(planned: Plan, live: Live, desired: Desired,
                         has_checkpoints: Mapping[str, bool]) -> Plan:
    """A DropCheckpoints before each undefine of a guest with virtctl checkpoints."""
    drops: list[Action] = []
    for name in undefined_guests(planned):
        dom = live.domains.get(name)
        if dom is None or not has_checkpoints.get(name):
            continue
        volumes = _volumes(parse(dom.xml))
        deleted = bool(volumes) and all(
            (v := desired.volumes.get(name_)) is not None
            and v.delete_policy is DeletePolicy.DELETE for name_ in volumes)
        drops.append(DropCheckpoints(
            kind=Kind.DOMAIN, name=name, keep_data=not deleted,
            reason="its volumes' deletePolicy is delete" if deleted
            else "its volumes are retained: the checkpoints stay in them"))
    if not drops:
        return planned
    actions = planned.actions
    cut = _stop_end(actions)
    return replace(planned, actions=(*actions[:cut], *drops, *actions[cut:]))


# -- virtctl rollback -----------------------------------------------------------------


def choose(snapshots: Iterable[SnapshotInfo], name: str, to: str | None) -> SnapshotInfo:
    """The checkpoint `rollback` restores: `to`, else virtctl's newest."""
    ours = ours_oldest_first(tuple(snapshots))
    if to is not None:
        found = next((s for s in ours if s.name == to), None)
        if found is None:
            known = ", ".join(s.name for s in ours) or "none"
            raise SpecError(f"domain '{name}' has no checkpoint '{to}' (it has: {known})",
                            code=ErrorCode.OPERATION_INVALID)
        return found
    if not ours:
        raise SpecError(f"domain '{name}' has no virtctl checkpoint to roll back to",
                        code=ErrorCode.OPERATION_INVALID)
    return ours[-1]


def rollback_changes(current: str, saved: str) -> tuple[FieldChange, ...]:
    """What a rollback changes in the definition, field by field, as a plan shows it:
    `current` made into `saved` (both whole definitions, so what `saved` lacks is a
    removal). Compared by their essence, as the planner compares (virtctl's metadata,
    addresses and aliases are not differences)."""
    if not saved:
        return ()
    have, want = essence(parse(current)), essence(parse(saved))
    return (*diff(want, have), *removed(have, want))


def plan_rollback(dom: LiveDomain, checkpoint: SnapshotInfo) -> Plan:
    """One Rollback action, with the field changes from the guest's definition to the
    checkpoint's; the guest is started afterwards unless its last-applied state is
    shutoff."""
    record = dom.owner.last_applied if dom.owner is not None else None
    start = not (record is not None and record.state == str(DomainState.SHUTOFF))
    rec = record_of(checkpoint.description)
    detail = f" (taken {rec.time}, commit {rec.commit or 'none'})" if rec else ""
    action = Rollback(kind=Kind.DOMAIN, name=dom.name, checkpoint=checkpoint.name,
                      start=start, reason=f"restore {checkpoint.name}{detail}")
    changes = rollback_changes(dom.xml, checkpoint.definition)
    same = "" if changes or not checkpoint.definition else \
        "; the definition is the same, only the disks go back"
    return Plan(actions=(action,), changes=((dom.key, changes),) if changes else (), notes=(
        f"{dom.key}: definition and disks from {checkpoint.name}{detail}"
        + ("; then started" if start else "") + same,))
