"""The applier: `apply(plan, driver) -> Report`, the one place that changes a host.

A loop with one `match`. An action whose object, or an object it needs, already failed
is skipped; everything independent goes on. A graceful shutdown waits for the guest to
stop (polling the driver) up to the action's timeout, then destroys it when the action
allows, else fails. The clock and sleep are injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ..drivers.base import Driver
from ..errors import DriverError, ErrorCode, ErrorDomain, VirtctlError
from ..model import DomainState, Kind, ObjectKey
from .actions import (
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
    SetVcpus,
    Shutdown,
    Start,
    Suspend,
    Undefine,
    UpdateDevice,
    UpdateNetwork,
)
from .applylive import perform_live
from .applystorage import perform_storage
from .plan import Plan


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: Action
    outcome: Outcome
    error: VirtctlError | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    results: tuple[ActionResult, ...] = ()

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def done(self) -> int:
        return self.count(Outcome.DONE)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    @property
    def skipped(self) -> int:
        return self.count(Outcome.SKIPPED)

    @property
    def return_code(self) -> int:
        return 1 if self.failed or self.skipped else 0


Progress = Callable[[int, int, Action], None]


@dataclass(frozen=True, slots=True)
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def apply(
    plan: Plan, driver: Driver, *, progress: Progress | None = None, clock: Clock = Clock()
) -> Report:
    results: list[ActionResult] = []
    broken: set[ObjectKey] = set()
    halted: ObjectKey | None = None  # a define that failed: nothing more runs on this host
    total = len(plan.actions)
    for index, action in enumerate(plan.actions):
        if halted is not None:
            results.append(ActionResult(action, Outcome.SKIPPED, detail=(
                f"not run: the run stopped when the define of {halted} failed")))
            continue
        if progress is not None:
            progress(index, total, action)
        blocker = _blocker(action, broken) if broken else None
        if blocker is not None:
            broken.add(action.key)
            why = "an earlier action on it failed" if blocker == action.key else f"{blocker} failed"
            results.append(ActionResult(action, Outcome.SKIPPED, detail=why))
            continue
        try:
            detail = _perform(action, driver, clock)
        except VirtctlError as exc:
            broken.add(action.key)
            results.append(ActionResult(action, Outcome.FAILED, error=exc))
            # The host refused a definition validation passed: what else was checked
            # the same way cannot be trusted either, so stop before anything more.
            if isinstance(action, Define):
                halted = action.key
            continue
        results.append(ActionResult(action, Outcome.DONE, detail=detail))
    if progress is not None and total and halted is None:
        progress(total, total, plan.actions[-1])
    return Report(results=tuple(results))


def _blocker(action: Action, broken: set[ObjectKey]) -> ObjectKey | None:
    """The object an action acts on or needs that already failed, if any."""
    return next((k for k in (action.key, *action.needs) if k in broken), None)


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
            return _shutdown(action, driver, clock)
        case Destroy():
            driver.destroy(kind, name)
        case Suspend():
            driver.suspend(name)
        case Resume():
            driver.resume(name)
        case SetAutostart(enabled=enabled):
            driver.set_autostart(kind, name, enabled)
        case SetMemory(kib=kib):
            driver.set_memory(name, kib)
        case AttachDevice() | DetachDevice() | UpdateDevice() | SetVcpus() | UpdateNetwork():
            return perform_live(action, driver, clock)
        case (BuildPool() | RecordPool() | CreateVolume() | ResizeVolume() | DeleteVolume()
              | RecordVolume()):
            return perform_storage(action, driver)
    return ""


def _domain_state(driver: Driver, name: str) -> DomainState | None:
    found = driver.snapshot().domains.get(name)
    return found.state if found is not None else None


def _shutdown(action: Shutdown, driver: Driver, clock: Clock) -> str:
    """The stop ladder: ask, wait up to the timeout, then destroy or fail."""
    if action.kind is Kind.NETWORK:
        driver.destroy(action.kind, action.name)
        return ""
    if _domain_state(driver, action.name) is DomainState.PAUSED:
        # A paused guest cannot act on the ACPI request; let it run so it can shut down.
        driver.resume(action.name)
    try:
        driver.shutdown(action.kind, action.name)
    except DriverError as exc:
        # Already off (stopped between snapshot and now) counts as stopped.
        state = _domain_state(driver, action.name)
        if state is None or not state.active:
            return "already stopped"
        raise exc
    deadline = clock.now() + action.timeout
    delay = 0.05
    while True:
        state = _domain_state(driver, action.name)
        if state is None or not state.active:
            return ""
        if clock.now() >= deadline:
            break
        clock.sleep(delay)
        delay = min(delay * 2, 1.0)
    if not action.force:
        raise DriverError(
            f"domain '{action.name}' did not shut down within {action.timeout:g}s "
            "(destroy not allowed: use --force-stop)",
            code=ErrorCode.TIMEOUT,
            domain=ErrorDomain.APPLIER,
        )
    driver.destroy(action.kind, action.name)
    return f"did not shut down within {action.timeout:g}s; destroyed"
