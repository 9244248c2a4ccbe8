"""Performing checkpoint actions (the applier calls `perform` for them).

Each step writes the journal (journal.py) before it acts, so a run killed anywhere
leaves the stage it was in: taking the checkpoint, making the change, waiting at the
gate, rolling back. Names and times come from the wall clock here, not the planner.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from ...errors import ErrorCode, ErrorDomain, VirtctlError
from ...metadata import read_owner
from ...model import DomainState, Kind
from ...xmlutil import parse
from .actions import CloseJournal, DropCheckpoints, HealthGate, Rollback, TakeCheckpoint
from .health import wait_healthy
from .journal import Entry, Journal, Stage
from ...checkpoints import CheckpointRecord, Failure, checkpoint_name, ours_oldest_first


class HealthFailed(VirtctlError):
    """The guest was not healthy after the change (rolled back, or left as it is)."""

    default_code = ErrorCode.VERIFICATION
    default_domain = ErrorDomain.APPLIER


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def perform(action: Any, driver: Any, clock: Any) -> str:
    match action:
        case TakeCheckpoint():
            return take(action, driver)
        case HealthGate():
            return gate(action, driver, clock)
        case CloseJournal():
            Journal(driver.uri).clear(action.name)
            return ""
        case Rollback():
            return manual_rollback(action, driver)
        case DropCheckpoints():
            return drop(action, driver)
    raise AssertionError(f"unknown action {action!r}")


def take(action: TakeCheckpoint, driver: Any) -> str:
    name = action.name
    root = parse(driver.definition(Kind.DOMAIN, name))
    owner = read_owner(root)
    taken = {s.name for s in driver.snapshots(name)}
    now = _now()
    snapshot = checkpoint_name(now.strftime("%Y%m%dT%H%M%SZ"), action.commit, taken)
    journal = Journal(driver.uri)
    entry = Entry(guest=name, uuid=(root.findtext("uuid") or "").strip(),
                  checkpoint=snapshot, stage=Stage.CHECKPOINT, target=action.target,
                  running=action.running, health=action.health, rollback=action.rollback,
                  started=now.isoformat(timespec="seconds"), digest=action.digest)
    journal.write(entry)
    journal.forget_failure(name)  # a new attempt (the spec changed, or --retry-failed)
    record = CheckpointRecord(commit=action.commit, time=entry.started,
                              spec=owner.spec_hash if owner is not None else "",
                              reason=action.reason)
    driver.create_snapshot(name, snapshot, record.text(), memory=action.memory)
    journal.write(entry.at(Stage.CHANGING))
    # Retention: virtctl's own checkpoints beyond `keep`, oldest first; never this one.
    ours = ours_oldest_first(driver.snapshots(name))
    gone = [s.name for s in ours if s.name != snapshot][: max(0, len(ours) - action.keep)]
    for old in gone:
        driver.delete_snapshot(name, old)
    return snapshot + (f"; deleted {', '.join(gone)} (keep {action.keep})" if gone else "")


def restore(driver: Any, name: str, checkpoint: str, *, start: bool) -> None:
    """Definition and disks from `checkpoint`, then the guest started (when `start`
    and the checkpoint did not bring it back running)."""
    if (driver.domain_state(name) or DomainState.SHUTOFF).active:
        driver.destroy(Kind.DOMAIN, name)  # what runs now is what failed: no shutdown
    driver.revert_snapshot(name, checkpoint)
    if start and not (driver.domain_state(name) or DomainState.SHUTOFF).active:
        driver.start(Kind.DOMAIN, name)


def owner_hash(xml: str | None) -> str:
    if not xml:
        return ""
    owner = read_owner(parse(xml))
    return owner.spec_hash if owner is not None else ""


def gate(action: HealthGate, driver: Any, clock: Any) -> str:
    journal = Journal(driver.uri)
    if not action.checkpointed:
        return unguarded(driver, action, clock)
    entry = journal.get(action.name)
    if entry is not None and entry.stage is Stage.CHECKPOINT:
        # The checkpoint itself failed, so nothing after it ran: the guest has its old
        # definition (and was stopped by this plan): start it again as it was.
        journal.clear(action.name)
        if not (driver.domain_state(action.name) or DomainState.SHUTOFF).active:
            driver.start(Kind.DOMAIN, action.name)
        raise HealthFailed("no checkpoint was taken, so the change was not made; the "
                           "guest runs its old definition")
    if entry is None:
        # The checkpoint never began (a step before it failed, and so nothing of the
        # change ran): there is no change to judge; that failure is already reported.
        return "not judged: no checkpoint was taken, so the change was not made"
    journal.write(entry.at(Stage.GATE))
    return verdict(driver, action.name, entry, action.health, action.rollback, clock, journal)


def verdict(driver: Any, name: str, entry: Entry | None, health: Any, rollback: bool,
            clock: Any, journal: Journal, *, start: bool = True) -> str:
    """Wait at the gate; healthy: close the journal; not: roll back (or leave it) and
    raise HealthFailed. `start`: start the guest after a rollback (recovery leaves that
    to the plan that follows it)."""
    started = time.monotonic()
    why = wait_healthy(driver, name, health, clock)
    what = health.describe() if health is not None else "running"
    if not why:
        journal.clear(name)
        return f"healthy ({what}) after {time.monotonic() - started:.1f}s"
    if entry is None:
        raise HealthFailed(f"change failed health: {why}; no checkpoint to roll back to")
    if not rollback:
        journal.clear(name)
        raise HealthFailed(
            f"change failed health: {why}; left as it is for inspection (--no-rollback); "
            f"'virtctl rollback {name}' restores checkpoint {entry.checkpoint}")
    journal.write(entry.at(Stage.ROLLBACK))
    began = time.monotonic()
    restore(driver, name, entry.checkpoint, start=start)
    remember(driver, journal, entry, why)
    journal.clear(name)
    raise HealthFailed(
        f"change failed health and was rolled back to checkpoint {entry.checkpoint} "
        f"({time.monotonic() - began:.1f}s): {why}; held back until the spec changes "
        "(apply --retry-failed tries it again)")


def remember(driver: Any, journal: Journal, entry: Entry, why: str) -> None:
    """Record that the change `entry` guards failed its gate and was rolled back, so
    that the next apply or watch pass does not make it again (and fail, and roll back)
    each time: planning.hold holds it back until the spec changes."""
    if not entry.digest:  # an entry of `virtctl rollback`, or of an older virtctl
        return
    journal.fail(Failure(guest=entry.guest, uuid=entry.uuid, digest=entry.digest,
                         base=owner_hash(driver.definition(Kind.DOMAIN, entry.guest)),
                         checkpoint=entry.checkpoint, why=why,
                         time=_now().isoformat(timespec="seconds")))


def unguarded(driver: Any, action: HealthGate, clock: Any) -> str:
    """The gate of a guest that declares `health:` but took no checkpoint: the verdict
    is waited for and reported; there is nothing to roll back to."""
    started = time.monotonic()
    why = wait_healthy(driver, action.name, action.health, clock)
    if not why:
        return f"healthy ({action.health.describe()}) after {time.monotonic() - started:.1f}s"
    raise HealthFailed(
        f"change failed health: {why}; no checkpoint was taken (updatePolicy checkpoint "
        "or --checkpoint), so it was not rolled back: the guest is left as it is")


def manual_rollback(action: Rollback, driver: Any) -> str:
    journal = Journal(driver.uri)
    root = parse(driver.definition(Kind.DOMAIN, action.name))
    journal.write(Entry(guest=action.name, uuid=(root.findtext("uuid") or "").strip(),
                        checkpoint=action.checkpoint, stage=Stage.ROLLBACK, target="",
                        running=action.start, health=None, rollback=True,
                        started=_now().isoformat(timespec="seconds")))
    restore(driver, action.name, action.checkpoint, start=action.start)
    journal.clear(action.name)
    return f"restored {action.checkpoint}"


def drop(action: DropCheckpoints, driver: Any) -> str:
    ours = ours_oldest_first(driver.snapshots(action.name))
    for snap in ours:
        driver.delete_snapshot(action.name, snap.name, keep_data=action.keep_data)
    Journal(driver.uri).clear(action.name)
    Journal(driver.uri).forget_failure(action.name)
    how = "forgot (data kept in the volumes)" if action.keep_data else "deleted"
    return f"{how} {len(ours)} checkpoint(s)"
