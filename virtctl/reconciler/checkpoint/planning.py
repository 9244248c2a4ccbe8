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
from ..plan.planned import Plan
from ..plan.policy import Policy
from ..plan.steps import spec_hash
from ...xmlutil import parse
from .actions import CloseJournal, DropCheckpoints, HealthGate, Rollback, TakeCheckpoint
from ...checkpoints import Health, SnapshotInfo, ours_oldest_first, record_of, safety_of

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


def guard(planned: Plan, desired: Desired, live: Live, policy: Policy) -> Plan:
    """`planned` with checkpoints and health gates around disruptive changes; SpecErrors
    naming each guest whose change cannot be checkpointed."""
    if getattr(policy, "checkpoint", None) is False or not planned.actions:
        return planned
    first: list[Action] = []
    after_stop: list[Action] = []
    last: list[Action] = []
    notes: list[str] = []
    errors: list[SpecError] = []
    for key in planned.keys():
        spec = desired.domains.get(key.name) if key.kind is Kind.DOMAIN else None
        dom = live.domains.get(key.name) if spec is not None else None
        if spec is None or dom is None or not dom.persistent or not wanted(spec, policy):
            continue
        why = disruptive(planned, key, dom)
        if not why:
            continue
        problems = refusals(planned, key, dom, why)
        if problems:
            errors += [SpecError(
                f"{key}: cannot take a checkpoint before this {why}: {p} "
                "(apply --no-checkpoint to change it without one)",
                code=ErrorCode.OPERATION_INVALID, source=spec.source) for p in problems]
            continue
        safety = safety_of(spec.safety)
        running = spec.state is DomainState.RUNNING and any(
            isinstance(a, Start) and a.key == key for a in planned.actions)
        rollback = getattr(policy, "rollback", True)
        take = TakeCheckpoint(
            kind=Kind.DOMAIN, name=key.name, reason=f"before {why}", commit=policy.commit,
            memory=safety.memory and dom.state.active, keep=safety.keep,
            target=spec_hash(spec.xml), running=running, health=safety.health,
            rollback=rollback)
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
    if not first and not after_stop:
        return planned
    actions = planned.actions
    cut = _stop_end(actions)
    return replace(planned, actions=(*first, *actions[:cut], *after_stop, *actions[cut:],
                                     *last),
                   notes=(*planned.notes, *notes))


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


def plan_rollback(dom: LiveDomain, checkpoint: SnapshotInfo) -> Plan:
    """One Rollback action; the guest is started afterwards unless its last-applied
    state is shutoff."""
    record = dom.owner.last_applied if dom.owner is not None else None
    start = not (record is not None and record.state == str(DomainState.SHUTOFF))
    rec = record_of(checkpoint.description)
    detail = f" (taken {rec.time}, commit {rec.commit or 'none'})" if rec else ""
    action = Rollback(kind=Kind.DOMAIN, name=dom.name, checkpoint=checkpoint.name,
                      start=start, reason=f"restore {checkpoint.name}{detail}")
    return Plan(actions=(action,), notes=(
        f"{dom.key}: definition and disks from {checkpoint.name}{detail}"
        + ("; then started" if start else ""),))
