"""The reconcile loop behind `virtctl watch`: `run_watch(paths, ...) -> exit status`.

Called by the CLI (watch/command.py) and by tests in-process. One thread reconciles;
the spec watcher and the driver's event thread only wake it (sources.py). Each run is
level-based: re-read every spec file, snapshot the host, settle which specs stand
(specs.py), plan, apply, then plan again until the plan is empty (bounded). Events our
own actions cause are expected and absorbed, so applying never wakes the loop.

Errors are caught here and only here: a broken spec file is reported and stands on its
last good specs; a failing driver call is logged, counted and retried with backoff; a bug
is logged with its type and the loop goes on. SIGTERM and SIGINT end the loop after the
action in flight (exit 0); a second signal kills at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TextIO

from .. import drivers
from ..capabilities import HostCapabilities, parse_capabilities
from ..drivers.base import Driver, Event, EventType
from ..errors import DriverError, SpecError, TransientError, VirtctlError
from ..gitinfo import spec_commit
from ..model import Desired, Live, ObjectKey
from ..reconciler.actions import Action
from ..reconciler.apply import Clock, Outcome, Report
from ..reconciler.apply import apply as apply_plan
from ..reconciler.plan import Plan, Policy
from ..reconciler.plan import plan as make_plan
from ..reconciler.validate import check_host
from .logs import Log, LogFormat
from .metrics import MetricsServer, WatchMetrics
from .sources import Debouncer, Expectations, Inbox, SpecWatch, Trigger
from .specs import Scan, Settled, SpecSet, settle

EXIT_OK, EXIT_ERROR = 0, 1
MAX_PASSES = 3  # apply, verify, and one more go at a host that changed meanwhile
RETRY_MIN, RETRY_MAX = 1.0, 60.0
_TRIGGER_ORDER = (Trigger.START, Trigger.SPEC, Trigger.EVENT, Trigger.RETRY, Trigger.RESYNC)


class _Stopping(Exception):
    """Raised between actions once a stop was asked for; not a VirtctlError on purpose,
    so the applier does not record it as a failed action."""


@dataclass(frozen=True, slots=True)
class PassResult:
    in_sync: bool
    failed: bool = False
    retry_after: float | None = None


class Watcher:
    def __init__(
        self, driver: Driver, specs: SpecSet, inbox: Inbox, *, journal: Log,
        metrics: WatchMetrics, policy: Policy, interval: float,
    ) -> None:
        self.driver = driver
        self.specs = specs
        self.inbox = inbox
        self.journal = journal
        self.metrics = metrics
        self.policy = policy
        self.interval = interval
        self._caps: HostCapabilities | None = None
        self._reported: dict[str, tuple[str, ...]] = {}
        self._backoff = RETRY_MIN

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        pending: set[Trigger] = {Trigger.START}
        now = time.monotonic()
        next_resync, retry_at = now + self.interval, float("inf")
        while not self.inbox.stopping:
            if pending:
                retry_at = self._round(pending)
            wake = self.inbox.wait(until=min(next_resync, retry_at))
            pending = set(wake.triggers)
            for event in wake.events:
                self._log_event(event)
            now = time.monotonic()
            if now >= next_resync:
                pending.add(Trigger.RESYNC)
                next_resync = now + self.interval
            if now >= retry_at:
                pending.add(Trigger.RETRY)

    def _round(self, triggers: set[Trigger]) -> float:
        """Reconcile until in sync (bounded); return when to retry (inf: no need)."""
        trigger = next(t for t in _TRIGGER_ORDER if t in triggers)
        self.metrics.runs.inc(trigger=str(trigger))
        started = time.monotonic()
        result, passes = PassResult(in_sync=False), 0
        while passes < MAX_PASSES and not (result.in_sync or result.failed):
            result = self._guarded_pass(trigger, first=passes == 0)
            passes += 1
        elapsed = time.monotonic() - started
        self.metrics.duration.observe(elapsed)
        self.journal.info("reconciled", "in sync" if result.in_sync else "not in sync",
                          trigger=str(trigger), in_sync=result.in_sync, passes=passes,
                          duration_ms=round(elapsed * 1000, 1))
        if result.in_sync:
            self._backoff = RETRY_MIN
            self.metrics.last_success.set(time.time())
            return float("inf")
        if not result.failed:
            self.journal.warning("not-converged", f"the host still differs after {MAX_PASSES} "
                                 "passes (something else is changing it?)",
                                 trigger=str(trigger))
        delay = result.retry_after or self._backoff
        self._backoff = min(self._backoff * 2, RETRY_MAX)
        self.journal.info("retry-scheduled", f"retrying in {delay:g}s", seconds=delay)
        return time.monotonic() + delay

    def _guarded_pass(self, trigger: Trigger, *, first: bool) -> PassResult:
        try:
            return self._pass(trigger, first=first)
        except _Stopping:
            raise
        except TransientError as exc:
            self._count_error("driver", exc)
            return PassResult(in_sync=False, failed=True, retry_after=exc.retry_after)
        except DriverError as exc:
            self._count_error("driver", exc)
            return PassResult(in_sync=False, failed=True)
        except Exception as exc:  # noqa: BLE001 (a bug: report it, keep the host watched)
            self.metrics.errors.inc(type="internal")
            self.journal.error("internal-error", f"{type(exc).__name__}: {exc}",
                               error=type(exc).__name__)
            return PassResult(in_sync=False, failed=True)

    def _count_error(self, kind: str, exc: VirtctlError) -> None:
        self.metrics.errors.inc(type=kind)
        self.journal.error("driver-error", str(exc), **exc.to_dict())

    # -- one pass: read, snapshot, settle, plan, apply --------------------------------

    def _pass(self, trigger: Trigger, *, first: bool) -> PassResult:
        scan = self.specs.read()
        live = self.driver.snapshot()
        caps = self._capabilities()
        settled = self._settle(scan, live, caps)
        # Read per pass: a `git pull` beside a running watcher moves the commit.
        policy = replace(self.policy, commit=spec_commit(self.specs.paths))
        planned = protect(make_plan(settled.desired, live, policy=policy, caps=caps), live, settled)
        if first:
            drifted = len(planned.keys())
            self.metrics.drifted.set(drifted)
            self.metrics.drifted_total.inc(drifted)
        if planned.empty:
            return PassResult(in_sync=True)
        touched = [str(key) for key in planned.keys()]  # noqa: SIM118 (a method, not a dict)
        self.journal.info("plan", f"{len(planned.actions)} action(s) to apply",
                          trigger=str(trigger), objects=touched)
        report = self._apply(planned)
        return PassResult(in_sync=False, failed=bool(report.failed or report.skipped))

    def _capabilities(self) -> HostCapabilities:
        if self._caps is None:
            self._caps = parse_capabilities(self.driver.capabilities())
        return self._caps

    def _settle(self, scan: Scan, live: Live, caps: HostCapabilities) -> Settled:
        def host_check(desired: Desired) -> list[SpecError]:
            return check_host(desired, live, caps, adopt=self.policy.adopt,
                              prune=self.policy.prune)

        settled = settle(scan, self.specs.last_good, host_check=host_check)
        self._report_specs(settled)
        self.specs.commit(settled)
        self.metrics.spec_files.set(len(set(settled.chosen) - set(settled.broken)), state="valid")
        self.metrics.spec_files.set(len(settled.broken), state="invalid")
        return settled

    def _report_specs(self, settled: Settled) -> None:
        """Log a file's errors when they change, and when it becomes valid again."""
        for name, errors in sorted(settled.broken.items()):
            messages = tuple(str(e) for e in errors)
            if self._reported.get(name) == messages:
                continue
            self._reported[name] = messages
            self.metrics.errors.inc(type="spec")
            kept = "keeping its last good specs" if name in self.specs.last_good else (
                "nothing of it is applied")
            self.journal.error("spec-invalid", f"{name}: invalid; {kept}; its objects are "
                               "not pruned", file=name, errors=list(messages))
        for name in sorted(set(self._reported) - set(settled.broken)):
            del self._reported[name]
            self.journal.info("spec-valid", f"{name}: valid again", file=name)

    def _apply(self, planned: Plan) -> Report:
        inbox = self.inbox

        def before(done: int, total: int, action: Action) -> None:
            if inbox.stopping:
                raise _Stopping()
            if done < total:
                inbox.expect(action)

        def sleep(seconds: float) -> None:
            if _wait_stop(inbox, seconds):
                raise _Stopping()

        report = apply_plan(planned, self.driver, progress=before,
                            clock=Clock(now=time.monotonic, sleep=sleep))
        for result in report.results:
            self._record(result.action, result.outcome, result.error, result.detail)
        self.journal.info("applied", f"{report.done} done, {report.failed} failed, "
                          f"{report.skipped} skipped", done=report.done, failed=report.failed,
                          skipped=report.skipped)
        return report

    def _record(self, action: Action, outcome: Outcome, error: VirtctlError | None,
                detail: str) -> None:
        if outcome is not Outcome.DONE:
            self.inbox.forget(action)
        self.metrics.actions.inc(action=action.verb, object=str(action.kind), result=str(outcome))
        fields: dict[str, object] = {"action": action.verb, "object": str(action.key),
                                     "result": str(outcome)}
        if action.reason:
            fields["reason"] = action.reason
        if error is not None:
            self.metrics.errors.inc(type="driver")
            fields["error"] = error.to_dict()
            self.journal.error("action", f"{action.verb} {action.key}: {error}", **fields)
            return
        text = f"{action.verb} {action.key}: {outcome}" + (f" ({detail})" if detail else "")
        self.journal.info("action", text, **fields)

    def _log_event(self, event: Event) -> None:
        if event.type is EventType.CONNECTION_LOST:
            self.journal.warning("connection-lost", f"lost the connection ({event.detail})")
            return
        where = f"{event.kind}/{event.name}" if event.kind else "host"
        self.journal.info("host-event", f"{where}: {event.type} outside virtctl",
                          type=str(event.type), object=where)


def _wait_stop(inbox: Inbox, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when a stop is asked for."""
    deadline = time.monotonic() + seconds
    while not inbox.stopping and time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return inbox.stopping


def protect(planned: Plan, live: Live, settled: Settled) -> Plan:
    """Drop prune actions on objects owned by broken files (or paths we cannot read)."""
    broken = [Path(f).resolve() for f in settled.broken]
    if not broken or not planned.deletes:
        return planned
    kept: set[ObjectKey] = set()
    for key in planned.deletes:
        found = live.get(key)
        if found is not None and found.owner is not None and found.owner.source:
            owner = Path(found.owner.source).resolve()
            if any(owner == b or owner.is_relative_to(b) for b in broken):
                kept.add(key)
    if not kept:
        return planned
    return Plan(
        actions=tuple(a for a in planned.actions if a.key not in kept),
        notes=planned.notes + tuple(f"{k}: not pruned, its spec file is invalid"
                                    for k in sorted(kept)),
        creates=planned.creates,
        deletes=planned.deletes - kept,
    )


# -- entry point -----------------------------------------------------------------------


@contextlib.contextmanager
def _signals(inbox: Inbox) -> Iterator[None]:
    """SIGTERM/SIGINT ask the loop to stop; a second one restores the default (kills)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if inbox.stopping:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        inbox.stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


def run_watch(
    paths: Sequence[str],
    *,
    uri: str | None,
    policy: Policy,
    interval: float = 300.0,
    log_format: str = "text",
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
    stop: threading.Event | None = None,
    stream: TextIO | None = None,
    debounce: float = 0.1,
) -> int:
    """Watch `paths` and keep the host at `uri` as they declare until stopped.

    Returns 0 after a clean stop (SIGTERM, SIGINT, or `stop` set), 1 if it cannot
    start (a missing path, no connection, the metrics port taken)."""
    journal = Log(stream or sys.stderr, fmt=LogFormat(log_format))
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        journal.error("startup-failed", f"no such file or directory: {', '.join(missing)}")
        return EXIT_ERROR
    metrics = WatchMetrics()
    inbox = Inbox(debounce=Debouncer(delay=debounce), expectations=Expectations())
    with contextlib.ExitStack() as stack:
        try:
            driver = stack.enter_context(_connected(uri))
            server = _serve(metrics, metrics_address, metrics_port, journal)
        except (VirtctlError, OSError) as exc:
            journal.error("startup-failed", str(exc))
            return EXIT_ERROR
        if server is not None:
            stack.callback(server.close)
        stack.enter_context(_signals(inbox))
        if stop is not None:
            _relay_stop(stop, inbox, stack)
        stack.callback(driver.subscribe(inbox.driver_event))
        watch = SpecWatch(paths, inbox.spec_changed)
        watch.start()
        stack.callback(watch.close)
        journal.info("started", f"watching {', '.join(paths)} on {driver.uri}",
                     paths=list(paths), uri=driver.uri, interval=interval,
                     prune=policy.prune, adopt=policy.adopt)
        watcher = Watcher(driver, SpecSet(paths), inbox, journal=journal, metrics=metrics,
                          policy=policy, interval=interval)
        with contextlib.suppress(_Stopping):
            watcher.run()
    journal.info("stopped", "stopped cleanly")
    return EXIT_OK


@contextlib.contextmanager
def _connected(uri: str | None) -> Iterator[Driver]:
    driver = drivers.connect(uri)
    try:
        yield driver
    finally:
        driver.close()


def _serve(
    metrics: WatchMetrics, address: str, port: int | None, journal: Log
) -> MetricsServer | None:
    if port is None:
        return None
    server = MetricsServer(metrics, address=address, port=port)
    server.start()
    journal.info("metrics", f"serving metrics on http://{address}:{server.port}/metrics",
                 address=address, port=server.port)
    return server


def _relay_stop(stop: threading.Event, inbox: Inbox, stack: contextlib.ExitStack) -> None:
    """Turn a caller's threading.Event into a stop of the loop."""
    done = threading.Event()

    def relay() -> None:
        while not done.is_set():
            if stop.wait(0.1):
                inbox.stop()
                return

    thread = threading.Thread(target=relay, name="virtctl-watch-stop", daemon=True)
    thread.start()
    stack.callback(done.set)

