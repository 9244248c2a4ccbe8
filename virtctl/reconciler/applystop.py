"""The stop ladder (apply.py's part for `Shutdown`), for many guests at once.

Every guest of a batch is asked first (a paused one is resumed so it can act on the
request), then all are waited on together: each guest's own state is polled (one
`Driver.domain_state` call per guest, backing off to 1 s; never a host snapshot) until
it is off or its own deadline passes (the time it was asked plus its action's timeout).
A guest past its deadline is destroyed when its action allows, else it fails. So N
guests cost about one timeout, not N, and every request is made before any destroy.
Networks (which have no graceful stop) are destroyed when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DriverError, ErrorCode, ErrorDomain, VirtctlError
from ..model import DomainState, Kind
from .actions import Shutdown

if TYPE_CHECKING:
    from ..drivers.base import Driver
    from .apply import Clock

#: The longest pause between two polls of the guests still running.
MAX_POLL = 1.0


@dataclass(frozen=True, slots=True)
class Stopped:
    """What became of one Shutdown: done (with a detail for the report) or `error`."""

    action: Shutdown
    detail: str = ""
    error: VirtctlError | None = None


def stop_all(
    batch: Sequence[Shutdown], driver: Driver, clock: Clock,
    *, asking: Callable[[Shutdown], None] | None = None,
) -> list[Stopped]:
    """Stop every guest of `batch`; one result each, in batch order. `asking` is
    called with each action just before its guest is asked (progress, the watcher's
    expected events)."""
    done: dict[int, Stopped] = {}
    deadlines: dict[int, float] = {}
    for index, action in enumerate(batch):
        if asking is not None:
            asking(action)
        try:
            found = _ask(action, driver)
        except VirtctlError as exc:
            found = Stopped(action, error=exc)
        if found is None:
            deadlines[index] = clock.now() + action.timeout
        else:
            done[index] = found
    _wait(batch, deadlines, done, driver, clock)
    return [done[i] for i in range(len(batch))]


def _off(state: DomainState | None) -> bool:
    return state is None or not state.active


def _ask(action: Shutdown, driver: Driver) -> Stopped | None:
    """Send the graceful request; a result when there is nothing to wait for."""
    if action.kind is not Kind.DOMAIN:
        driver.destroy(action.kind, action.name)
        return Stopped(action)
    state = driver.domain_state(action.name)
    if _off(state):
        return Stopped(action, detail="already stopped")
    if state is DomainState.PAUSED:
        # A paused guest cannot act on the ACPI request; let it run so it can shut down.
        driver.resume(action.name)
    try:
        driver.shutdown(action.kind, action.name)
    except DriverError:
        # Stopped between reading its state and now: that counts as stopped.
        if _off(driver.domain_state(action.name)):
            return Stopped(action, detail="already stopped")
        raise
    return None


def _wait(
    batch: Sequence[Shutdown], deadlines: dict[int, float], done: dict[int, Stopped],
    driver: Driver, clock: Clock,
) -> None:
    """Poll the guests in `deadlines` until each is off or past its own deadline."""
    delay = 0.05
    while deadlines:
        for index in list(deadlines):
            try:
                off = _off(driver.domain_state(batch[index].name))
            except VirtctlError as exc:
                done[index], off = Stopped(batch[index], error=exc), True
            if off:
                done.setdefault(index, Stopped(batch[index]))
                del deadlines[index]
        now = clock.now()
        for index in [i for i, due in deadlines.items() if now >= due]:
            del deadlines[index]
            done[index] = _overdue(batch[index], driver)
        if deadlines:
            clock.sleep(min(delay, max(min(deadlines.values()) - now, 0.0)))
            delay = min(delay * 2, MAX_POLL)


def _overdue(action: Shutdown, driver: Driver) -> Stopped:
    """A guest still running at its deadline: destroyed when allowed, else failed."""
    if not action.force:
        return Stopped(action, error=DriverError(
            f"domain '{action.name}' did not shut down within {action.timeout:g}s "
            "(destroy not allowed: use --force-stop)",
            code=ErrorCode.TIMEOUT,
            domain=ErrorDomain.APPLIER,
        ))
    try:
        driver.destroy(action.kind, action.name)
    except VirtctlError as exc:
        try:
            off = isinstance(exc, DriverError) and _off(driver.domain_state(action.name))
        except VirtctlError:
            off = False
        # It went off by itself between the last poll and the destroy.
        return Stopped(action) if off else Stopped(action, error=exc)
    return Stopped(action, detail=f"did not shut down within {action.timeout:g}s; destroyed")
