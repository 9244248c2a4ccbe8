"""One host's reconcile loop behind `virtctl watch`: the `Watcher`.

Run by the fleet (fleet.py), one Watcher per host, each on its own thread; the spec
watcher and the host's event thread only wake it (sources.py). Each run is level-based:
re-read every spec file (the Catalog routes them to their hosts), snapshot the host,
settle which specs stand for it (specs.py), plan, apply, then plan again until the plan
is empty (bounded). Each round of passes holds the host's lock once
(virtctl.coord.hostlock.host_lock), so a `virtctl apply` on the same host runs between rounds,
never interleaved with one. A spec wake that finds the host and its share of the specs
as the last in-sync round left them runs no pass (`Watcher._unchanged`), and neither
does a fleet member's first round on a host whose last status record, whoever wrote it,
holds the run key the host has now (`Watcher._taken_over`: a takeover after a member
died, a member starting again).
Events our own actions cause are expected and absorbed, so applying never wakes the loop.

Errors are caught here and only here: a broken spec file is reported and stands on its
last good specs; a failing driver call, or a host that cannot be reached, is logged,
counted and retried with backoff (reconnecting if it never connected); a bug is logged
with its type and the loop goes on. A stop ends the loop after the action in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .. import drivers
from ..capabilities import HostCapabilities, parse_capabilities
from ..coord.status import StatusRecord
from ..drivers.base import Driver, Event, EventType
from ..errors import CallTimeout, DriverError, SpecError, TransientError, VirtctlError
from ..coord.backend import Held, HostLocks, LockWaitCancelled
from ..coord.etcd import EtcdError
from ..coord.hostlock import UnsafeLockDir, host_lock
from ..model import Desired, Kind, Live, ObjectKey, PoolSpec, VolumeSpec
from ..reconciler.plan.actions import Action
from ..reconciler.apply.apply import Clock, Outcome, Report
from ..reconciler.apply.apply import apply as apply_plan
from ..reconciler.plan.plan import Plan, Policy, prune_refusal
from ..reconciler.plan.plan import plan as make_plan
from ..reconciler.apply.contentcheck import check_content
from ..reconciler.plan.plan_storage import StorageView, check_storage, view
from ..reconciler.apply.storageprobe import probed
from ..reconciler.memo import context_of
from ..reconciler.load.validate import check_host
from .logs import Log
from .metrics import WatchMetrics
from .sources import Inbox, Trigger
from .specs import Scan, Settled, Specs, desired_of, settle

EXIT_OK, EXIT_ERROR = 0, 1
MAX_PASSES = 3  # apply, verify, and one more go at a host that changed meanwhile
RETRY_MIN, RETRY_MAX = 1.0, 60.0
_TRIGGER_ORDER = (Trigger.START, Trigger.SPEC, Trigger.EVENT, Trigger.RETRY, Trigger.RESYNC)


class StopRequested(Exception):
    """Raised between actions once a stop was asked for; not a VirtctlError on purpose,
    so the applier does not record it as a failed action."""


@dataclass(frozen=True, slots=True)
class PassResult:
    in_sync: bool
    failed: bool = False
    retry_after: float | None = None
    skipped: str = ""  # why the host was left alone (a fleet agent reconciles it)
    error: str = ""  # why it failed, in short (for the fleet's status record)


class FleetHook(Protocol):
    """A fleet member's part in each round (watch/fleetmember.py)."""

    member: str

    def skip(self, uri: str, driver: Driver) -> str:
        """Why this member must leave the host alone now ("" if it need not)."""

    def passed(self, driver: Driver, started: float, ended: float) -> None:
        """A pass ran on `driver`'s host under its lock from `started` to `ended`."""

    def round_done(self, uri: str, driver: Driver | None, result: PassResult, *,
                   duration: float, commit: str, restart_pending: int,
                   key: str = "") -> None:
        """The round is over: write the host's status record (with the run key, `key`,
        of a round that ended in sync; "" when it has none)."""

    def previous(self, driver: Driver) -> StatusRecord | None:
        """The host's last status record, whichever member wrote it (None: none)."""


class HostSpecs(Protocol):
    """One host's view of the watched spec files (fleet.HostSpecs)."""

    paths: tuple[str, ...]
    last_good: dict[str, Specs]

    def read(self) -> Scan: ...

    def commit_id(self) -> str: ...  # the spec paths' git commit (fleet.Catalog caches it)

    def commit(self, settled: Settled) -> None: ...


class Watcher:
    """Keeps one host as the specs declare. Connects on its first pass unless handed a
    connected `driver` (which then stays the caller's to close)."""

    def __init__(
        self, uri: str, specs: HostSpecs, inbox: Inbox, *, journal: Log,
        metrics: WatchMetrics, policy: Policy, interval: float,
        driver: Driver | None = None, lock_root: Path | None = None,
        call_timeout: float | None = None, host_locks: HostLocks | None = None,
        fleet: FleetHook | None = None,
    ) -> None:
        self.uri = uri
        self.fleet = fleet  # --fleet: skip agents' hosts, record passes, write status
        self._commit = ""  # the last pass's commit and restart-pending count, for status
        self._restart_pending = 0
        # What the last pass that planned nothing saw (its share of the specs and the
        # snapshot's fingerprint), and the round's restart-pending count once that round
        # ended in sync: a wake that finds both unchanged needs no pass (`_unchanged`).
        self._empty_seen: tuple[object, str] | None = None
        self._synced: tuple[tuple[object, str], int] | None = None
        # The run key (`run_key`) of the last pass that planned nothing, when it has one,
        # and of the round that ended in sync: written in the host's status record.
        self._empty_key = ""
        self._key = ""
        self._context = ""  # run_key's context, per connection (`_run_context`)
        self.driver = driver
        self.specs = specs
        self.inbox = inbox
        self.journal = journal
        self.metrics = metrics
        self.policy = policy
        self.interval = interval
        self.lock_root = lock_root
        self.call_timeout = call_timeout  # per libvirt call (drivers.connect)
        self.host_locks = host_locks  # etcd locks (--coordination), besides lock_root's
        self._held: Held | None = None  # the etcd lock of the pass under way
        self._owns_driver = driver is None
        self._unsubscribe: Callable[[], None] | None = None
        if driver is not None:
            self._unsubscribe = driver.subscribe(inbox.driver_event)
        self._caps: HostCapabilities | None = None
        self._reported: dict[str, tuple[str, ...]] = {}
        # The changes held back after a failed health gate, as last logged (once each).
        self._held_changes: tuple[tuple[ObjectKey, str], ...] = ()
        self._backoff = RETRY_MIN

    def close(self) -> None:
        """Stop listening to the host; close the connection if this watcher opened it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._owns_driver and self.driver is not None:
            with contextlib.suppress(VirtctlError):
                self.driver.close()
            self.driver = None

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
        self.metrics.runs.inc(host=self.uri, trigger=str(trigger))
        started = time.monotonic()
        if ((triggers == {Trigger.SPEC} and self._unchanged())
                or (triggers == {Trigger.START} and self._taken_over())):
            result, passes = PassResult(in_sync=True), 0
        else:
            self._synced, self._key = None, ""
            result, passes = self._guarded_passes(trigger)
            if result.in_sync and self._empty_seen is not None:
                self._synced = (self._empty_seen, self._restart_pending)
                self._key = self._empty_key
        elapsed = time.monotonic() - started
        if result.skipped:
            self.journal.info("host-skipped", result.skipped, trigger=str(trigger))
            return float("inf")  # the resync asks again
        self.metrics.duration.observe(elapsed)
        if self.fleet is not None:
            self.fleet.round_done(self.uri, self.driver, result, duration=elapsed,
                                  commit=self._commit, restart_pending=self._restart_pending,
                                  key=self._key if result.in_sync else "")
        self.journal.info("reconciled", "in sync" if result.in_sync else "not in sync",
                          trigger=str(trigger), in_sync=result.in_sync, passes=passes,
                          duration_ms=round(elapsed * 1000, 1))
        if result.in_sync:
            self._backoff = RETRY_MIN
            self.metrics.last_success.set(time.time(), host=self.uri)
            return float("inf")
        if not result.failed:
            self.journal.warning("not-converged", f"the host still differs after {MAX_PASSES} "
                                 "passes (something else is changing it?)",
                                 trigger=str(trigger))
        # The driver's retry_after is a floor: an unreachable host still backs off.
        delay = max(result.retry_after or 0.0, self._backoff)
        self._backoff = min(self._backoff * 2, RETRY_MAX)
        self.journal.info("retry-scheduled", f"retrying in {delay:g}s", seconds=delay)
        return time.monotonic() + delay

    def _unchanged(self) -> bool:
        """Is the host as the last round left it in sync, with the same share of the
        specs? Then a spec wake (a git commit that changed no file, another host's file
        edited, an agent coming or going) needs no pass: the pass would plan nothing
        again, since planning is a pure function of the share, the snapshot (its
        fingerprint covers every live object), the policy and the capabilities, which
        stay as long as the connection does. Only the status record's commit moves.
        Taken without the host lock: a snapshot caught mid-change by someone else has
        another fingerprint, so the full pass runs. Never with storage in play (pools
        and volumes are not in the snapshot's fingerprint), nor while an agent has the
        host (the full path says so)."""
        synced, driver = self._synced, self.driver
        if synced is None or driver is None:
            return False
        (share, fingerprint), pending = synced
        try:
            if self.fleet is not None and self.fleet.skip(self.uri, driver):
                return False
            scan = self.specs.read()
            if self.policy.prune or _declares_storage(scan) or _share_key(scan) != share:
                return False
            if driver.snapshot().fingerprint != fingerprint:
                return False
            self._commit, self._restart_pending = self.specs.commit_id(), pending
        except StopRequested:
            raise
        except Exception:  # noqa: BLE001 (whatever it is, the full pass meets it properly)
            return False
        return True

    def _taken_over(self) -> bool:
        """A fleet member's first round on a host (taken over from a member that died or
        left, or its own from before a restart): is the host as its last status record
        says an in-sync round left it? Then it needs no pass, and no lock: the record
        holds that round's run key (`run_key`), a hash of everything the pass's plan is
        a pure function of (the host's share of the specs, the snapshot's fingerprint,
        the policy, the host's capabilities and live operations, virtctl's code), and a
        pass with the same key plans nothing again. The same rules as `_unchanged`, the
        writer's key standing for this process's memory: only a record `in-sync` at the
        commit the specs have now, with nothing restart-pending; never with storage in
        play, a broken or unreadable spec file (each member keeps its own last good
        specs), an agent on the host, or an interrupted checkpointed change to finish
        (docs/checkpoints.md); any other trigger runs the full pass. Taken without the
        lock: a host caught mid-change by someone else has another fingerprint."""
        fleet = self.fleet
        if fleet is None:
            return False
        try:
            driver = self._connected()
            if fleet.skip(self.uri, driver):
                return False
            scan = self.specs.read()
            if not _keyable(scan, self.policy):
                return False
            record = fleet.previous(driver)
            commit = self.specs.commit_id()
            if (record is None or record.outcome != "in-sync" or record.restart_pending
                    or not record.key or record.commit != commit):
                return False
            from ..reconciler.checkpoint.journal import Journal

            if next(Journal(driver.uri).entries(), None) is not None:
                return False  # the full pass finishes or rolls it back first
            live = driver.snapshot()
            if not live.fingerprint or record.key != run_key(
                    self.uri, scan, live.fingerprint, self._run_context(driver)):
                return False
        except StopRequested:
            raise
        except Exception:  # noqa: BLE001 (whatever it is, the full pass meets it properly)
            return False
        self._commit, self._restart_pending = commit, 0
        self._synced, self._key = ((_share_key(scan), live.fingerprint), 0), record.key
        self.journal.info("taken-over", f"in sync as {record.member}'s last round left "
                          "it (same run key, same commit): no pass", member=record.member)
        return True

    def _run_context(self, driver: Driver) -> str:
        """run_key's context: the policy (but the commit), the host's capabilities XML
        and live operations, virtctl's code; the same in every member with the same
        flags, asked of the host once per connection."""
        if not self._context:
            from ..reconciler.speccache import code_fingerprint

            self._context = context_of(
                repr((replace(self.policy, commit=""), sorted(driver.live_ops()))),
                driver.capabilities(), code_fingerprint())
        return self._context

    def _guarded_passes(self, trigger: Trigger) -> tuple[PassResult, int]:
        """Up to MAX_PASSES passes (apply, then verify...) under one hold of the host's
        lock (one etcd take and release per round, not per pass); and how many ran."""
        passes = 0
        try:
            with self._locked() as skip:
                if skip:
                    return PassResult(in_sync=False, skipped=skip), 0
                result = PassResult(in_sync=False)
                while passes < MAX_PASSES and not (result.in_sync or result.failed):
                    passes += 1
                    result = self._recorded_pass(trigger, first=passes == 1)
            return result, passes
        except StopRequested:
            raise
        except Exception as exc:  # noqa: BLE001 (each kind said and counted in _failed)
            return self._failed(exc), max(passes, 1)

    def _recorded_pass(self, trigger: Trigger, *, first: bool) -> PassResult:
        if self.fleet is None or self.driver is None:
            return self._pass(trigger, first=first)
        began = time.time()  # under the lock: passes on a host never overlap
        try:
            return self._pass(trigger, first=first)
        finally:
            if self.driver is not None:
                self.fleet.passed(self.driver, began, time.time())

    def _failed(self, exc: Exception) -> PassResult:
        """The result of a round a failure ended, the failure said and counted."""
        if isinstance(exc, UnsafeLockDir):  # not the host's fault: said as it is, retried
            self.metrics.errors.inc(host=self.uri, type="lock")
            self.journal.error("lock-refused", str(exc))
            return PassResult(in_sync=False, failed=True)
        if isinstance(exc, EtcdError):  # no lock without etcd: no action; retried later
            self.metrics.errors.inc(host=self.uri, type="lock")
            self.journal.error("lock-unavailable", f"no lock on {self.uri}, nothing done: "
                               f"{exc}")
            return PassResult(in_sync=False, failed=True, error=f"no lock: {exc}")
        if isinstance(exc, CallTimeout):
            # The host stopped answering: its connection is given up (closing it would
            # wait too); the next pass connects again.
            self._count_error("driver", exc)
            self._abandon_driver()
            return PassResult(in_sync=False, failed=True, retry_after=exc.retry_after)
        if isinstance(exc, TransientError):
            self._count_error("driver", exc)
            return PassResult(in_sync=False, failed=True, retry_after=exc.retry_after)
        if isinstance(exc, DriverError):
            self._count_error("driver", exc)
            return PassResult(in_sync=False, failed=True)
        # A bug: report it, keep the host watched.
        self.metrics.errors.inc(host=self.uri, type="internal")
        self.journal.error("internal-error", f"{type(exc).__name__}: {exc}",
                           error=type(exc).__name__)
        return PassResult(in_sync=False, failed=True)

    def _abandon_driver(self) -> None:
        driver, self.driver = self.driver, None
        self._unsubscribe = None  # went with the connection: no call to deregister
        self._owns_driver = True  # the next one is this watcher's own
        if driver is not None:
            with contextlib.suppress(VirtctlError):
                driver.close()  # a connection that stopped answering is only dropped

    def _count_error(self, kind: str, exc: VirtctlError) -> None:
        self.metrics.errors.inc(host=self.uri, type=kind)
        self.journal.error("driver-error", str(exc), **exc.to_dict())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[str]:
        """Hold the host's lock for one pass (and its etcd lock with --coordination,
        taken once connected: it is keyed by the host's identity); stop instead if asked
        while waiting. Yields why a fleet member must leave the host alone ("": it
        need not; then no lock is taken)."""
        with contextlib.ExitStack() as stack:
            if self.lock_root is not None:
                stack.enter_context(host_lock(
                    self.uri, self.lock_root, command="virtctl watch",
                    on_wait=lambda line: self.journal.info("lock-wait", line)))
                if self.inbox.stopping:
                    raise StopRequested()
            if self.fleet is not None:
                skip = self.fleet.skip(self.uri, self._connected())
                if skip:
                    yield skip
                    return
            if self.host_locks is not None:
                try:
                    self._held = stack.enter_context(self.host_locks.hold(
                        self._connected(), command="virtctl watch",
                        on_wait=lambda line: self.journal.info("lock-wait", line),
                        cancelled=lambda: self.inbox.stopping))
                except LockWaitCancelled:
                    raise StopRequested() from None
                stack.callback(setattr, self, "_held", None)
            yield ""

    def _connected(self) -> Driver:
        if self.driver is None:
            try:
                driver = drivers.connect(self.uri, call_timeout=self.call_timeout)
            except SpecError as exc:  # a URI no driver takes (sim:// with a host...)
                raise DriverError(exc.message, code=exc.code, domain=exc.domain) from None
            try:
                self._unsubscribe = driver.subscribe(self.inbox.driver_event)
            except VirtctlError:
                driver.close()
                raise
            # A new connection: capabilities read again, no pass skipped on the old one.
            self.driver, self._caps, self._synced = driver, None, None
            self._context = ""
            self.journal.info("connected", f"connected to {driver.uri}", uri=driver.uri)
        return self.driver

    # -- one pass: read, snapshot, settle, plan, apply --------------------------------

    def _pass(self, trigger: Trigger, *, first: bool) -> PassResult:
        self._empty_seen, self._empty_key = None, ""
        scan = self.specs.read()
        driver = self._connected()
        from ..reconciler.checkpoint.hooks import guarded
        from ..reconciler.checkpoint.recover import recover
        from ..reconciler.apply.clock import Clock

        # A change a killed run left between checkpoint and health verdict: finished or
        # rolled back before anything else (docs/checkpoints.md).
        for note in recover(driver, Clock()):
            self.journal.info("checkpoint-recovered", note)
        live = driver.snapshot()
        caps = self._capabilities(driver)
        # With what the host's files say (pool directories, backing files), as api.plan.
        storage = (probed(desired_of(scan.parsed), driver, view(driver.storage(), live))
                   if self.policy.prune or _declares_storage(scan) else None)
        settled = self._settle(scan, live, caps, storage)
        # Asked per pass: a `git pull` beside a running watcher moves the commit.
        policy = replace(self.policy, commit=self.specs.commit_id())
        self._commit, self._restart_pending = policy.commit or "", 0
        planned = protect(make_plan(settled.desired, live, policy=policy, caps=caps,
                                    live_ops=driver.live_ops(), storage=storage),
                          live, settled, storage)
        try:  # checkpoints and health gates around disruptive changes
            planned = guarded(planned, settled.desired, driver, live, policy)
        except SpecError as exc:
            self.journal.error("checkpoint-refused", str(exc))
            return PassResult(in_sync=False, failed=True)
        if first:
            drifted = len(planned.keys())
            self.metrics.drifted.set(drifted, host=self.uri)
            self.metrics.drifted_total.inc(drifted, host=self.uri)
        held = self._report_held(planned)
        if planned.empty and held:  # not in sync, and not made again: a failure to fix
            return PassResult(in_sync=False, failed=True, error=held)
        if planned.empty:
            self._empty_seen = (_share_key(scan), live.fingerprint) if live.fingerprint \
                else None
            if live.fingerprint and not settled.broken and _keyable(scan, self.policy):
                self._empty_key = run_key(self.uri, scan, live.fingerprint,
                                          self._run_context(driver))
            return PassResult(in_sync=True)
        refusal = prune_refusal(planned, settled.desired, policy,
                                declared_elsewhere=bool(settled.broken))
        if refusal is not None:  # a wrong or emptied spec directory must not wipe the host
            self.journal.error("prune-refused", refusal)
            return PassResult(in_sync=False, failed=True)
        touched = [str(key) for key in planned.keys()]  # noqa: SIM118 (a method, not a dict)
        self.journal.info("plan", f"{len(planned.actions)} action(s) to apply",
                          trigger=str(trigger), objects=touched)
        report = self._apply(planned, driver)
        return PassResult(in_sync=False, failed=bool(report.failed or report.skipped or held),
                          error=held)

    def _report_held(self, planned: Plan) -> str:
        """Log the changes held back after a failed health gate (when they change), and
        say them in short ("" when none): a watcher never makes such a change again on
        its own, so that it does not roll the guest back on every pass."""
        if planned.held != self._held_changes:
            self._held_changes = planned.held
            for key, why in planned.held:
                self.journal.error("change-held", f"{key}: {why}", object=str(key))
        return "; ".join(f"{key}: change held back after a failed health gate"
                         for key, _ in planned.held)

    def _capabilities(self, driver: Driver) -> HostCapabilities:
        if self._caps is None:
            self._caps = parse_capabilities(driver.capabilities())
        return self._caps

    def _settle(self, scan: Scan, live: Live, caps: HostCapabilities,
                storage: StorageView | None) -> Settled:
        def host_check(desired: Desired) -> list[SpecError]:
            errors = check_host(desired, live, caps, adopt=self.policy.adopt,
                                prune=self.policy.prune, prune_sets=self.policy.pruned_sets)
            if storage is not None:
                errors += check_storage(desired, storage, adopt=self.policy.adopt)
            # Local content files, hashed once per change of the file (contentcheck.py).
            return errors + check_content(desired.volumes.values())

        settled = settle(scan, self.specs.last_good, host_check=host_check)
        self._report_specs(settled, scan)
        self.specs.commit(settled)
        valid = len(set(settled.chosen) - set(settled.broken))
        self.metrics.spec_files.set(valid, host=self.uri, state="valid")
        self.metrics.spec_files.set(len(settled.broken), host=self.uri, state="invalid")
        return settled

    def _report_specs(self, settled: Settled, scan: Scan) -> None:
        """Log a file's errors on this host when they change, and when the file becomes
        valid again. Errors it has whatever the host (`scan.errors`: it does not parse,
        clashes...) are the Catalog's to report, once for all hosts."""
        own = {name: errors[len(scan.errors.get(name, ())):]
               for name, errors in settled.broken.items()}
        for name, errors in sorted(own.items()):
            messages = tuple(str(e) for e in errors)
            if not messages or self._reported.get(name) == messages:
                continue
            self._reported[name] = messages
            self.metrics.errors.inc(host=self.uri, type="spec")
            self.journal.error("spec-invalid", spec_invalid(name, self.specs.last_good),
                               file=name, errors=list(messages))
        for name in sorted(set(self._reported) - {n for n, e in own.items() if e}):
            del self._reported[name]
            if name not in settled.broken:
                self.journal.info("spec-valid", f"{name}: valid again", file=name)

    def _apply(self, planned: Plan, driver: Driver) -> Report:
        inbox = self.inbox

        def before(done: int, total: int, action: Action) -> None:
            if inbox.stopping:
                raise StopRequested()
            if done < total:
                inbox.expect(action)

        def sleep(seconds: float) -> None:
            if _wait_stop(inbox, seconds):
                raise StopRequested()

        held = self._held
        report = apply_plan(planned, driver, progress=before,
                            clock=Clock(now=time.monotonic, sleep=sleep),
                            guard=held.check if held is not None else None)
        self._restart_pending = report.pending
        if report.lost_lock:
            self.metrics.errors.inc(host=self.uri, type="lock")
            self.journal.error("lock-lost", f"{report.lost_lock}; the rest was not run")
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
        self.metrics.actions.inc(host=self.uri, action=action.verb, object=str(action.kind),
                                 result=str(outcome))
        fields: dict[str, object] = {"action": action.verb, "object": str(action.key),
                                     "result": str(outcome)}
        if action.reason:
            fields["reason"] = action.reason
        if error is not None:
            self.metrics.errors.inc(host=self.uri, type="driver")
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


def spec_invalid(name: str, last_good: Mapping[str, Specs]) -> str:
    kept = "keeping its last good specs" if name in last_good else "nothing of it is applied"
    return f"{name}: invalid; {kept}; its objects are not pruned"


def _wait_stop(inbox: Inbox, seconds: float) -> bool:
    """Sleep up to `seconds`, waking early when a stop is asked for."""
    deadline = time.monotonic() + seconds
    while not inbox.stopping and time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return inbox.stopping


def _share_key(scan: Scan) -> object:
    """What of a reading decides a host's pass: its specs (by digest) in each file, which
    files there are, which are broken and why, which paths could not be read."""
    return (tuple(scan.parsed),
            tuple((name, tuple(s.digest for s in specs))
                  for name, specs in scan.parsed.items() if specs),
            tuple((name, tuple(map(str, errors))) for name, errors in scan.errors.items()),
            scan.unreadable)


def run_key(uri: str, scan: Scan, fingerprint: str, context: str) -> str:
    """What a pass on `uri` plans is a pure function of: the host's specs (by digest, in
    each file), the snapshot (its fingerprint covers every domain and network), and the
    context (`Watcher._run_context`). Only for a `_keyable` reading with nothing broken.
    Equal in every member with the same flags and spec paths: nothing of one process
    (no order of dicts or sets, no Python hash) goes in."""
    share = [[name, [spec.digest for spec in specs]]
             for name, specs in sorted(scan.parsed.items()) if specs]
    text = json.dumps(["virtctl-run-1", uri, context, fingerprint, share],
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _keyable(scan: Scan, policy: Policy) -> bool:
    """May a pass over this reading be known by its run key? Not with storage in play
    (pools and volumes are not in the snapshot's fingerprint) nor with a spec file that
    is broken or unreadable (each member settles it from its own last good specs)."""
    return not (policy.prune or scan.errors or scan.unreadable or _declares_storage(scan))


def _declares_storage(scan: Scan) -> bool:
    return any(isinstance(spec, PoolSpec | VolumeSpec)
               for specs in scan.parsed.values() for spec in specs)


def protect(planned: Plan, live: Live, settled: Settled,
            storage: StorageView | None = None) -> Plan:
    """Drop prune actions on objects owned by broken files (or paths we cannot read):
    domains and networks by their owner mark, pools and volumes by their record."""
    broken = [Path(f).resolve() for f in settled.broken]
    if not broken or not planned.deletes:
        return planned
    kept: set[ObjectKey] = set()
    for key in planned.deletes:
        source = _source_of(key, live, storage)
        if source:
            owner = Path(source).resolve()
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


def _source_of(key: ObjectKey, live: Live, storage: StorageView | None) -> str:
    """The spec file that last applied an object, as its mark or record says ("")."""
    if key.kind in (Kind.POOL, Kind.VOLUME):
        if storage is None:
            return ""
        if key.kind is Kind.POOL:
            found = storage.records.get(key.name)
            return found.pool.source if found is not None and found.pool is not None else ""
        volume = storage.storage.volumes.get(key.name)
        record = storage.volume_record(volume) if volume is not None else None
        return record.source if record is not None else ""
    found = live.get(key)
    return found.owner.source if found is not None and found.owner is not None else ""
