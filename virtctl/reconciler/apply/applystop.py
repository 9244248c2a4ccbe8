"""The stop ladder (apply.py's part for `Shutdown`), for many guests at once.

Every guest of a batch is asked first (a paused one is resumed so it can act on the
request), then all are waited on together: each guest's own state is polled (one
`Driver.domain_state` call per guest, backing off to 1 s; never a host snapshot) until
it is off or its deadline passes: the moment the last guest was asked, plus its own
action's timeout (the spec's `shutdownTimeout`, else `--shutdown-timeout`).
A guest past its deadline is destroyed when its action allows (guests due together are
destroyed side by side, up to DESTROYERS at once), else it fails. So N guests cost
about one timeout, not N, and every request is made before any destroy.
Networks (which have no graceful stop) are destroyed when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import DriverError, ErrorCode, ErrorDomain, VirtctlError
from ...model import DomainState, Kind
from ..plan.actions import Shutdown

if TYPE_CHECKING:
    from ...drivers.base import Driver
    from .clock import Clock

#: The longest pause between two polls of the guests still running.
MAX_POLL = 1.0
#: Destroys in flight at once: libvirtd serves up to five calls of one client at once
#: (max_client_requests); more would only queue there.
DESTROYERS = 5


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
    asked: list[int] = []
    for index, action in enumerate(batch):
        if asking is not None:
            asking(action)
        try:
            found = _ask(action, driver)
        except VirtctlError as exc:
            found = Stopped(action, error=exc)
        if found is None:
            asked.append(index)
        else:
            done[index] = found
    # One start for every deadline: guests with one timeout fall due together (and are
    # destroyed together), and each still gets at least its timeout after its request.
    start = clock.now()
    deadlines = {i: start + batch[i].timeout for i in asked}
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
        due = [i for i, at in deadlines.items() if now >= at]
        for index in due:
            del deadlines[index]
        done.update(zip(due, _overdue_all([batch[i] for i in due], driver), strict=True))
        if deadlines:
            clock.sleep(min(delay, max(min(deadlines.values()) - now, 0.0)))
            delay = min(delay * 2, MAX_POLL)


def _overdue_all(actions: list[Shutdown], driver: Driver) -> list[Stopped]:
    """`_overdue` for each guest past its deadline, up to DESTROYERS at once: a destroy
    waits for the guest's process to end (about 2 s for QEMU on a busy host, measured in
    docs/benchmarks.md), so one after the other they would add up to N again."""
    if len(actions) <= 1:
        return [_overdue(a, driver) for a in actions]
    with ThreadPoolExecutor(min(DESTROYERS, len(actions)),
                            thread_name_prefix="virtctl-destroy") as pool:
        return list(pool.map(lambda a: _overdue(a, driver), actions))


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
