"""The applier: `apply(plan, driver) -> Report`, the one place that changes a host.

A loop with one `match`. An action whose object, or an object it needs, already failed
is skipped; everything independent goes on. Consecutive `Shutdown`s (the plan's stop
phase: deletes, prunes, restarts, `state: shutoff`) run as one batch (applystop.py):
every guest is asked, then all are waited on at once, each up to its own timeout, and
those still running are destroyed when their action allows, else fail. The clock and
sleep are injectable for tests.
"""

from __future__ import annotations

from collections.abc import Callable

from ...drivers.base import Driver
from ...errors import CallTimeout, ErrorCode, TransientError, VirtctlError
from ...model import ObjectKey
from ..plan.actions import (
    Action,
    AttachDevice,
    BuildPool,
    CreateVolume,
    Define,
    DeleteVolume,
    DetachDevice,
    RecordPool,
    RecordVolume,
    ResizeVolume,
    Destroy,
    Resume,
    SetAutostart,
    SetMemory,
    SetRunningNote,
    SetVcpus,
    Shutdown,
    Start,
    Suspend,
    Undefine,
    UpdateDevice,
    UpdateNetwork,
)
from .clock import Clock
from .report import ActionResult, Outcome, Report
from .applylive import NotTaken, perform_live, perform_memory, perform_note
from .applystop import stop_all
from .applystorage import perform_storage
from ..plan.plan import Plan


Progress = Callable[[int, int, Action], None]
# Checked before every action (and batch of stops): raises a VirtctlError when this run
# no longer holds the host's lock (virtctl.coord.backend), and nothing more runs.
Guard = Callable[[], None]


def apply(
    plan: Plan, driver: Driver, *, progress: Progress | None = None, clock: Clock = Clock(),
    guard: Guard | None = None,
) -> Report:
    results: list[ActionResult] = []
    broken: set[ObjectKey] = set()
    halted: ObjectKey | None = None  # a define that failed: nothing more runs on this host
    lost = ""  # the host stopped answering: nothing more runs on it
    unlocked = ""  # the host's lock was lost: nothing more runs on it
    total = len(plan.actions)
    stopped_to = 0  # actions before this index were run in a batch of stops
    for index, action in enumerate(plan.actions):
        if index < stopped_to:
            continue
        if guard is not None and not (halted is not None or lost or unlocked):
            try:
                guard()
            except VirtctlError as exc:
                unlocked = str(exc)
        if (halted is not None and not getattr(action, "after_failure", False)) \
                or lost or unlocked:
            why = lost or unlocked or f"the run stopped when the define of {halted} failed"
            results.append(ActionResult(action, Outcome.SKIPPED, detail=f"not run: {why}"))
            continue
        batch = _stop_batch(plan.actions, index)
        if len(batch) > 1:
            # Consecutive graceful stops: every guest asked, then all waited on at once.
            stopped = _stop_together(batch, index, total, driver, clock, broken, progress)
            # A guest's request may have gone out before a later poll was refused:
            # every unanswered one of a batch is uncertain, none "not run".
            results += [_unanswered(r, batch=True) for r in stopped]
            lost = next((_lost(r.action, driver) for r in results[-len(stopped):]
                         if r.outcome is Outcome.UNCERTAIN), "")
            stopped_to = index + len(batch)
            continue
        if progress is not None:
            progress(index, total, action)
        # A health gate runs even when the change before it failed: it rolls back.
        blocker = _blocker(action, broken) if broken and not getattr(
            action, "after_failure", False) else None
        if blocker is not None:
            broken.add(action.key)
            why = "an earlier action on it failed" if blocker == action.key else f"{blocker} failed"
            results.append(ActionResult(action, Outcome.SKIPPED, detail=why))
            continue
        try:
            detail = _perform(action, driver, clock)
        except NotTaken as exc:
            results.append(ActionResult(action, Outcome.PENDING, detail=str(exc)))
            continue
        except VirtctlError as exc:
            broken.add(action.key)
            if host_lost(exc):  # it may or may not have happened; nothing more runs
                results.append(_unanswered(ActionResult(action, Outcome.FAILED, error=exc)))
                lost = _lost(action, driver)
                continue
            results.append(ActionResult(action, Outcome.FAILED, error=exc))
            # The host refused a definition validation passed: what else was checked
            # the same way cannot be trusted either, so stop before anything more.
            if isinstance(action, Define):
                halted = action.key
            continue
        results.append(ActionResult(action, Outcome.DONE, detail=detail))
    if progress is not None and total and halted is None and not lost and not unlocked:
        progress(total, total, plan.actions[-1])
    return Report(results=tuple(results), lost_host=lost, lost_lock=unlocked)


def host_lost(error: VirtctlError) -> bool:
    """Whether `error` says the host stopped answering (a call past its deadline, a
    connection lost mid-call) rather than refused: the call may have happened."""
    return isinstance(error, CallTimeout) or (
        isinstance(error, TransientError) and error.code is ErrorCode.CONNECTION)


def _unanswered(result: ActionResult, *, batch: bool = False) -> ActionResult:
    """A failure for want of an answer: uncertain if a call of it went out, else (its
    first call refused: the connection was already given up) not run."""
    if result.outcome is not Outcome.FAILED or result.error is None \
            or not host_lost(result.error):
        return result
    if isinstance(result.error, CallTimeout) and not result.error.attempted and not batch:
        return ActionResult(result.action, Outcome.SKIPPED, detail=(
            "not run: the host had stopped answering"))
    return ActionResult(result.action, Outcome.UNCERTAIN, error=result.error, detail=(
        "the host stopped answering while this ran: it may or may not have happened"))


def _lost(action: Action, driver: Driver) -> str:
    return f"{driver.uri} stopped answering during {action.verb} {action.key}"


def _blocker(action: Action, broken: set[ObjectKey]) -> ObjectKey | None:
    """The object an action acts on or needs that already failed, if any."""
    return next((k for k in (action.key, *action.needs) if k in broken), None)


def _stop_batch(actions: tuple[Action, ...], start: int) -> tuple[Shutdown, ...]:
    """The run of consecutive Shutdowns at `start` (one phase: the plan is in phase
    order), up to one that needs an object stopped in the run itself."""
    run: list[Shutdown] = []
    for action in actions[start:]:
        if not isinstance(action, Shutdown) or any(
                k == a.key for k in action.needs for a in run):
            break
        run.append(action)
    return tuple(run)


def _stop_together(
    batch: tuple[Shutdown, ...], first: int, total: int, driver: Driver, clock: Clock,
    broken: set[ObjectKey], progress: Progress | None,
) -> list[ActionResult]:
    """The stop ladder of a batch (applystop.py), with skipping as for one action."""
    results: dict[int, ActionResult] = {}
    ready: list[Shutdown] = []
    at: dict[int, int] = {}  # position in `ready` -> plan index
    for offset, action in enumerate(batch):
        blocker = _blocker(action, broken) if broken else None
        if blocker is None:
            at[len(ready)] = first + offset
            ready.append(action)
            continue
        if progress is not None:
            progress(first + offset, total, action)
        why = "an earlier action on it failed" if blocker == action.key else f"{blocker} failed"
        results[first + offset] = ActionResult(action, Outcome.SKIPPED, detail=why)
    asked = iter(range(len(ready)))

    def asking(action: Shutdown) -> None:
        index = at[next(asked)]
        if progress is not None:
            progress(index, total, action)

    for position, stopped in enumerate(stop_all(ready, driver, clock, asking=asking)):
        if stopped.error is not None:
            results[at[position]] = ActionResult(stopped.action, Outcome.FAILED,
                                                 error=stopped.error)
        else:
            results[at[position]] = ActionResult(stopped.action, Outcome.DONE,
                                                 detail=stopped.detail)
    for result in results.values():
        if result.outcome is not Outcome.DONE:
            broken.add(result.action.key)
    return [results[i] for i in sorted(results)]


def _perform(action: Action, driver: Driver, clock: Clock) -> str:
    kind, name = action.kind, action.name
    match action:
        case Define(xml=xml):
            driver.define(kind, xml)
        case Undefine():
            driver.undefine(kind, name)
        case Start():
            driver.start(kind, name)
        case Shutdown():
            return _stop_one(action, driver, clock)
        case Destroy():
            driver.destroy(kind, name)
        case Suspend():
            driver.suspend(name)
        case Resume():
            driver.resume(name)
        case SetAutostart(enabled=enabled):
            driver.set_autostart(kind, name, enabled)
        case SetMemory():
            return perform_memory(action, driver, clock)
        case SetRunningNote():
            return perform_note(action, driver)
        case AttachDevice() | DetachDevice() | UpdateDevice() | SetVcpus() | UpdateNetwork():
            return perform_live(action, driver, clock)
        case (BuildPool() | RecordPool() | CreateVolume() | ResizeVolume() | DeleteVolume()
              | RecordVolume()):
            return perform_storage(action, driver)
        case _ if getattr(action, "phase", None) is not None:
            from ..checkpoint.execute import perform  # checkpoints, health gate, rollback

            return perform(action, driver, clock)
    return ""


def _stop_one(action: Shutdown, driver: Driver, clock: Clock) -> str:
    """A lone Shutdown: the ladder of a batch of one."""
    (stopped,) = stop_all((action,), driver, clock)
    if stopped.error is not None:
        raise stopped.error
    return stopped.detail
