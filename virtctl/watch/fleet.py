"""`virtctl watch` over every host the specs target: `run_watch(paths, ...) -> exit status`.

Called by the CLI (watch/command.py) and by tests in-process. The pieces:

- `Catalog`: the watched spec files, read, their DomainSets placed with their hosts'
  facts as apply places them (placing.py), and routed to their hosts (routing.py) under
  one lock, shared by every host's watcher; it reports files that are broken whatever
  the host (they do not parse, name an unknown host, clash, cannot be placed), once.
- `HostSpecs`: one host's view of the Catalog, with that host's last good specs.
- `Fleet`: one `Watcher` (loop.py) per host, each on its own thread with its own inbox
  and connection. When the hosts the specs target change, and every `--interval`, it
  starts a watcher for each new one and stops those no spec targets any more
  (unless a `kind: Hosts` document names them, so `--prune` can still empty them).
  It reads no spec itself on a change: the hosts' watchers do, and the Catalog tells it
  when a reading changes the set of hosts.

A host that cannot be reached fails only itself: its watcher logs, backs off and tries
again while the others go on. SIGTERM and SIGINT stop every watcher after the action in
flight (exit 0); a second signal kills at once. With one host, logs and metrics are as
they have always been; once there are several, host-scoped records carry `host`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

from .. import drivers
from ..coord.backend import HostLocks
from ..drivers.base import Driver
from ..fileio import state_root
from ..errors import VirtctlError
from ..model import Spec
from ..reconciler.load.loadset import FactsReader
from ..reconciler.placefacts import read_placement_facts
from ..reconciler.plan.plan import Policy
from ..uri import default_uri, parse_uri
from .logs import Log, LogFormat
from .loop import Watcher, StopRequested, spec_invalid
from .metrics import MetricsServer, WatchMetrics
from .commit import CommitCache
from .fleetmember import FleetMember, FleetOptions
from .placing import Decided, Placer
from .routing import Routed, route, settle_hosts
from .sources import Debouncer, Expectations, Inbox, SpecWatch
from .specs import Aliases, Scan, Settled, Specs, SpecSet, remember

EXIT_OK, EXIT_ERROR = 0, 1
# CPython runs signal handlers on the main thread only, and a signal delivered to another
# thread (libvirt's event loop, a watcher) does not interrupt the main thread's wait: so
# the main thread never blocks longer than this.
SIGNAL_CHECK = 0.25


@dataclass(frozen=True, slots=True)
class View:
    """One reading of the catalog, routed: immutable, shared by every host's watcher."""

    routed: Routed
    generation: int  # counts readings that found something new (for the commit cache)
    targets: tuple[str, ...]
    shares: Mapping[str, Mapping[str, Specs]]  # host -> file -> its specs for that host
    empty: Mapping[str, Specs]  # every valid file -> (), what a host not named gets
    read_at: float

    def scan_for(self, uri: str) -> Scan:
        """As Routed.scan_for(uri), without walking every spec: O(files) dict copies."""
        return Scan(parsed={**self.empty, **self.shares.get(uri, {})},
                    errors=self.routed.broken, unreadable=self.routed.unreadable)


def _view(routed: Routed, generation: int, default: str) -> View:
    valid = {name: specs for name, specs in routed.chosen.items() if name not in routed.broken}
    return View(routed, generation, routed.targets(default), _shares(valid),
                dict.fromkeys(valid, ()), time.monotonic())


def _shares(specs: Mapping[str, Specs]) -> dict[str, dict[str, Specs]]:
    """share(specs, uri) for every uri at once, leaving out the files' empty shares."""
    out: dict[str, dict[str, list[Spec]]] = {}
    for name, found in specs.items():
        for spec in found:
            out.setdefault(spec.connect or "", {}).setdefault(name, []).append(spec)
    return {uri: {name: tuple(s) for name, s in files.items()} for uri, files in out.items()}


class Catalog:
    """The watched spec files, routed to their hosts; safe to share between threads.

    Read and routed once per change, not once per host pass: `changed()` (the file
    watcher) marks the reading stale, the next host pass re-reads it (unchanged files
    cost a compare, only changed ones are parsed) and routes it, and every other host
    settles its share of that same immutable `View`. `resync()` (the fleet's periodic
    resync) re-reads even without an event, so an edit made while the watcher was down
    or whose event was missed is still found; if it finds one, every host is woken."""

    def __init__(self, paths: Sequence[str], *, default: str, journal: Log,
                 metrics: WatchMetrics, interval: float = float("inf"),
                 facts: FactsReader | None = None) -> None:
        self.paths = tuple(paths)
        # DomainSets placed with their hosts' facts, read once per reading (not per host
        # pass): the same reader as apply's (api.load), so both place alike.
        self._placer = Placer(facts or read_placement_facts)
        self._decided: Decided = ()
        self.default = default
        self.interval = interval  # a View older than this is re-read on its next use
        self._files = SpecSet(paths)
        self._commits = CommitCache(paths)
        self._hosts: dict[str, Aliases] = {}  # each file's last good 'kind: Hosts' entries
        self._journal = journal
        self._metrics = metrics
        self._reported: dict[str, tuple[str, ...]] = {}
        self._on_targets: Callable[[], None] | None = None
        self._on_edits: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._view: View | None = None
        self._generation = 0
        self._stale = 0  # bumped by changed(); a reading clears what it saw
        self._mark = threading.Lock()  # guards _stale (changed() must not wait for a read)
        self._last_good_shares: tuple[int, dict[str, dict[str, Specs]]] = (-1, {})
        self.readings = 0  # SpecSet.read + route runs, for tests and the bench

    def listen(self, on_targets: Callable[[], None],
               on_edits: Callable[[], None] | None = None) -> None:
        """Call `on_targets()` whenever a reading changes the set of hosts to watch, and
        `on_edits()` when a resync finds edits no event announced."""
        self._on_targets = on_targets
        self._on_edits = on_edits

    def changed(self) -> None:
        """The spec files changed (an event): the next use re-reads them."""
        with self._mark:
            self._stale += 1

    def refresh(self, *, report: bool = True) -> Routed:
        return self.view(report=report).routed

    def resync(self) -> Routed:
        """Re-read now, event or not; wake every host if anything changed."""
        return self.view(report=False, force=True).routed

    def view(self, *, report: bool = True, force: bool = False) -> View:
        """The current View, re-read and routed first if the files changed since."""
        notify: list[Callable[[], None] | None] = []
        with self._lock:
            view = self._view
            with self._mark:
                stale = self._stale
            if (view is None or force or stale
                    or time.monotonic() - view.read_at >= self.interval):
                with self._mark:
                    self._stale -= stale  # events from here on leave it stale
                view, notify = self._read(view, edits=force)
            if report:
                self._report(view.routed)
        for callback in notify:
            if callback is not None:
                callback()
        return view

    def _read(self, before: View | None, *, edits: bool
              ) -> tuple[View, list[Callable[[], None] | None]]:
        scan = self._files.read()
        # Placed before routing (instances' hosts decide their routes), with the hosts'
        # facts of now: a set's host added, an instance created, a host readable again.
        hosts, _ = settle_hosts(scan, self._hosts)
        scan, decided = self._placer.place(
            scan, {a.name: a for name in sorted(hosts) for a in hosts[name]})
        placed_again, self._decided = decided != self._decided, decided
        if before is not None and not self._files.changed and not placed_again:
            view = replace(before, read_at=time.monotonic())  # nothing new: same routing
            self._view = view
            return view, []
        self.readings += 1
        routed = route(scan, self._files.last_good, self._hosts, default=self.default)
        self._files.commit(Settled(routed.chosen, routed.broken))
        self._hosts = dict(routed.good_hosts)
        self._generation += 1
        view = self._view = _view(routed, self._generation, self.default)
        notify: list[Callable[[], None] | None] = []
        if before is not None and before.targets != view.targets:
            notify.append(self._on_targets)
        if edits and before is not None:
            notify.append(self._on_edits)
        return view, notify

    def commit(self) -> str:
        """The spec paths' git commit (commit.py: git runs only when it can have moved)."""
        with self._lock:
            generation = self._view.generation if self._view is not None else 0
            return self._commits.get(generation)

    def git_state(self) -> object:
        """Changes when the spec paths' git commit may have moved without any spec file
        changing (a `git commit`, a fetch and reset): the fleet then wakes every host, so
        each records the new commit in its status."""
        with self._lock:
            return self._commits.git_state()

    def last_good_for(self, uri: str) -> dict[str, Specs]:
        """share(last_good, uri), from an index built once per reading (not per host)."""
        with self._lock:
            generation, shares = self._last_good_shares
            if generation != self._generation:
                shares = _shares(self._files.last_good)
                self._last_good_shares = (self._generation, shares)
            return {**dict.fromkeys(self._files.last_good, ()), **shares.get(uri, {})}

    def _report(self, routed: Routed) -> None:
        """Log a file's errors when they change, and when it becomes valid again."""
        for name, errors in sorted(routed.broken.items()):
            messages = tuple(str(e) for e in errors)
            if self._reported.get(name) == messages:
                continue
            self._reported[name] = messages
            self._metrics.errors.inc(type="spec")
            self._journal.error("spec-invalid", spec_invalid(name, self._files.last_good),
                                file=name, errors=list(messages))
        for name in sorted(set(self._reported) - set(routed.broken)):
            del self._reported[name]
            self._journal.info("spec-valid", f"{name}: valid again", file=name)


class HostSpecs:
    """One host's share of the Catalog, and that host's last good specs per file."""

    def __init__(self, catalog: Catalog, uri: str) -> None:
        self.catalog = catalog
        self.uri = uri
        self.paths = catalog.paths
        # A host that joins late starts from what its share was when last good.
        self.last_good: dict[str, Specs] = catalog.last_good_for(uri)

    def read(self) -> Scan:
        view = self.catalog.view()
        if self.uri not in view.targets:
            # No spec targets this host any more and no Hosts document names it: stop
            # before planning, so nothing on it is pruned; the fleet retires the watcher.
            raise StopRequested()
        return view.scan_for(self.uri)

    def commit_id(self) -> str:
        return self.catalog.commit()

    def commit(self, settled: Settled) -> None:
        self.last_good = remember(self.last_good, settled)


@dataclass(slots=True)
class _Running:
    watcher: Watcher
    thread: threading.Thread


class Fleet:
    """A Watcher per host, on its own thread; the caller's thread runs `run()`."""

    def __init__(
        self, catalog: Catalog, *, journal: Log, metrics: WatchMetrics, policy: Policy,
        interval: float, debounce: float, lock_root: Path | None,
        call_timeout: float | None = None, host_locks: HostLocks | None = None,
        member: FleetMember | None = None,
    ) -> None:
        self.catalog = catalog
        self.member = member  # --fleet: only the hosts this member owns (fleetmember.py)
        self._owned_once = False  # a host gained after the first sync is a takeover
        self.journal = journal
        self.metrics = metrics
        self.policy = policy
        self.interval = interval
        self.debounce = debounce
        self.lock_root = lock_root
        self.call_timeout = call_timeout  # per libvirt call of each host's connection
        self.host_locks = host_locks  # etcd locks (--coordination)
        self.inbox = self._new_inbox()  # host-set changes and stops, for the fleet itself
        catalog.listen(self.inbox.spec_changed, on_edits=self._wake_hosts)
        self._running: dict[str, _Running] = {}
        self._retired: list[_Running] = []
        self._seen: set[str] = set()
        self._specs_changed = False  # spec_changed() since the hosts were last woken
        self._lock = threading.RLock()  # re-entered by a signal handler's stop()

    @property
    def many(self) -> bool:
        """Has the watch ever covered more than one host? (Then records name theirs.)"""
        return len(self._seen) > 1

    @property
    def stopping(self) -> bool:
        return self.inbox.stopping

    def hosts(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def _new_inbox(self) -> Inbox:
        return Inbox(debounce=Debouncer(delay=self.debounce), expectations=Expectations())

    def spec_changed(self) -> None:
        """Mark the catalog stale; once the files are quiet (our own debounce), `run`
        re-reads and routes it and wakes every host's watcher. One wake of every host per
        burst of edits, not per file event: a change to a thousand files is thousands of
        events, and a thousand hosts each woken for each was O(hosts x files)."""
        self.catalog.changed()
        self._specs_changed = True  # before the poke: run() sees it when woken
        self.inbox.spec_changed()

    def _wake_hosts(self) -> None:
        for running in self._all():
            running.watcher.inbox.spec_changed()

    def stop(self) -> None:
        self.inbox.stop()
        for running in self._all():
            running.watcher.inbox.stop()

    def _all(self) -> list[_Running]:
        with self._lock:
            return [*self._running.values(), *self._retired]

    def add(self, uri: str, *, driver: Driver | None = None) -> None:
        """Start watching `uri` (with `driver` if already connected)."""
        self._seen.add(uri)
        if self.many:
            self.metrics.show_hosts = True

        def context() -> dict[str, object]:
            return {"host": uri} if self.many else {}

        inbox = self._new_inbox()
        watcher = Watcher(uri, HostSpecs(self.catalog, uri), inbox,
                          journal=self.journal.bound(context), metrics=self.metrics,
                          policy=self.policy, interval=self.interval, driver=driver,
                          lock_root=self.lock_root, call_timeout=self.call_timeout,
                          host_locks=self.host_locks, fleet=self.member)
        with self._lock:
            # A host given back soon after it was retired (a fleet member's ownership
            # moving away and back): its old watcher finishes first. Two watchers of one
            # host in one process would share its etcd lock (backend.py) and overlap.
            before = [r.thread for r in self._retired
                      if r.watcher.uri == uri and r.thread.is_alive()]
        thread = threading.Thread(target=self._watch, args=(watcher, before), daemon=True,
                                  name=f"virtctl-watch {uri}")
        with self._lock:
            self._running[uri] = _Running(watcher, thread)
        if self.inbox.stopping:
            inbox.stop()
        thread.start()

    def _watch(self, watcher: Watcher, before: Sequence[threading.Thread] = ()) -> None:
        try:
            for older in before:
                older.join()
            with contextlib.suppress(StopRequested):
                watcher.run()
        except Exception as exc:  # noqa: BLE001 (a bug: this host stops, the others go on)
            watcher.journal.error("internal-error", f"{type(exc).__name__}: {exc}",
                                  error=type(exc).__name__)
        finally:
            watcher.close()

    def sync(self) -> None:
        """Watch every host the specs target now; stop watching the others. A watcher
        that ended on its own (its host dropped, or a bug) is restarted if still needed."""
        targets = set(self.catalog.refresh(report=False).targets(self.catalog.default))
        if self.member is not None:
            targets = self._owned(targets)
        with self._lock:
            ended = {uri for uri, r in self._running.items() if not r.thread.is_alive()}
            for uri in ended:
                del self._running[uri]
            self._retired = [r for r in self._retired if r.thread.is_alive()]
        current = set(self.hosts())
        for uri in sorted(targets - current):
            self.add(uri)
            self.journal.info("host-added", f"watching {uri}", host=uri)
        for uri in sorted(current - targets):
            self._retire(uri)
        for uri in sorted((current | ended) - targets):
            self.journal.info("host-removed", f"no spec targets {uri} any more; not "
                              "watching it", host=uri)

    def _owned(self, targets: set[str]) -> set[str]:
        """The targets this fleet member owns now (rendezvous, or its agent's host)."""
        assert self.member is not None
        owned = {uri for uri in targets if self.member.owns(uri)}
        metrics = self.member.membership.metrics
        gained = owned - set(self.hosts())
        if gained:  # their first rounds ask for their records: one range for all
            self.member.prefetch()
        if self._owned_once and gained:
            metrics.takeovers.inc(len(gained), member=self.member.member)
        self._owned_once = True
        metrics.owned.set(len(owned), member=self.member.member)
        return owned

    def _retire(self, uri: str) -> None:
        with self._lock:
            running = self._running.pop(uri)
            self._retired.append(running)
        running.watcher.inbox.stop()  # it finishes the action in flight, then closes

    def run(self) -> None:
        """Follow changes of the hosts to watch (and resync) until stopped; then wait for
        every watcher."""
        next_resync = time.monotonic() + self.interval
        git_state = self.catalog.git_state()
        try:
            while not self.inbox.stopping:
                wake = self.inbox.wait(until=min(next_resync, time.monotonic() + SIGNAL_CHECK))
                if self.inbox.stopping:
                    break
                if (now := self.catalog.git_state()) != git_state:
                    git_state = now
                    self._wake_hosts()  # no file changed, but the commit the hosts record did
                if time.monotonic() >= next_resync:
                    next_resync = time.monotonic() + self.interval
                    # Edits no event announced (made while down, or missed): found here,
                    # and the hosts are woken if there are any.
                    self.catalog.resync()
                elif not wake.triggers:
                    continue
                self.sync()  # reads and routes the catalog once, for every host below
                if self._specs_changed:
                    self._specs_changed = False
                    self._wake_hosts()
        finally:
            self.stop()
            for running in self._all():
                while running.thread.is_alive():
                    running.thread.join(SIGNAL_CHECK)


# -- entry point -----------------------------------------------------------------------


class _Stoppable(Protocol):
    @property
    def stopping(self) -> bool: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def _signals(target: _Stoppable) -> Iterator[None]:
    """SIGTERM/SIGINT ask every watcher to stop; a second one restores the default (kills)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if target.stopping:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        target.stop()

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
    call_timeout: float | None = None,
    host_locks: HostLocks | None = None,
    fleet_options: FleetOptions | None = None,
) -> int:
    """Watch `paths` and keep every host they target as they declare until stopped; specs
    without `connect:` target `uri` (else the default connection).

    Returns 0 after a clean stop (SIGTERM, SIGINT, or `stop` set), 1 if it cannot
    start (a missing path, a bad `uri`, the metrics port taken, or, when the specs target
    a single host, no connection to it)."""
    journal = Log(stream or sys.stderr, fmt=LogFormat(log_format))
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        journal.error("startup-failed", f"no such file or directory: {', '.join(missing)}")
        return EXIT_ERROR
    metrics = WatchMetrics()
    default = default_uri(uri, os.environ)
    catalog = Catalog(paths, default=default, journal=journal, metrics=metrics,
                      interval=interval, facts=lambda asked: read_placement_facts(
                          asked, call_timeout=call_timeout))
    fleet = Fleet(catalog, journal=journal, metrics=metrics, policy=policy, interval=interval,
                  debounce=debounce, lock_root=state_root(os.environ),
                  call_timeout=call_timeout, host_locks=host_locks)
    with contextlib.ExitStack() as stack:
        try:
            parse_uri(default)
            targets = catalog.refresh(report=False).targets(default)
            agent = fleet_options is not None and fleet_options.agent
            driver = stack.enter_context(_connected(default if agent else targets[0],
                                                    call_timeout)) \
                if len(targets) == 1 or agent else None
            if fleet_options is not None:
                fleet.member = _join(fleet_options, fleet, host_locks, driver if agent else None,
                                     uri=default, interval=interval, policy=policy,
                                     journal=journal, stack=stack)
                metrics.extra.extend(fleet.member.membership.metrics.all())
                targets = sorted(fleet._owned(set(targets)))
                if driver is not None and driver.uri not in targets and default not in targets:
                    driver = None  # not ours: each owned host's watcher connects itself
            server = _serve(metrics, metrics_address, metrics_port, journal)
        except (VirtctlError, OSError) as exc:
            journal.error("startup-failed", str(exc))
            return EXIT_ERROR
        if server is not None:
            stack.callback(server.close)
        stack.enter_context(_signals(fleet))
        if stop is not None:
            _relay_stop(stop, fleet, stack)
        watch = SpecWatch(paths, fleet.spec_changed)
        watch.start()
        stack.callback(watch.close)
        _log_started(journal, paths, driver.uri if driver else default, targets,
                     interval=interval, policy=policy)
        for target in targets:
            fleet.add(target, driver=driver if len(targets) == 1 else None)
        fleet.run()
    journal.info("stopped", "stopped cleanly")
    return EXIT_OK


def _join(options: FleetOptions, fleet: Fleet, host_locks: HostLocks | None,
          agent_driver: Driver | None, *, uri: str, interval: float, policy: Policy,
          journal: Log, stack: contextlib.ExitStack) -> FleetMember:
    """Register in the fleet (left when the watch ends, after every watcher stopped)."""
    from ..coord.backend import EtcdLocks
    from ..coord.hostid import host_identity
    from .membership import FleetError, Membership

    if not isinstance(host_locks, EtcdLocks):
        raise FleetError("--fleet needs --coordination URL (or $VIRTCTL_COORDINATION)")
    membership = Membership(
        host_locks.client, options.name, options.member, ttl=host_locks.ttl,
        interval=interval,
        agent_host=host_identity(agent_driver).key if agent_driver is not None else None,
        on_change=fleet.inbox.spec_changed, on_agents=fleet.spec_changed,
        log=lambda level, event, text: getattr(journal, level)(event, text),
        # Every host lock under the member's own lease (backend.py): 1 txn to take, 1 to
        # release, no renewal of its own; a dead member's locks end with its membership.
        on_registered=lambda keeper: setattr(host_locks, "keeper", keeper))
    membership.start()
    stack.callback(membership.stop)
    return FleetMember(membership, interval=interval, apply_set=policy.apply_set,
                       agent_uri=uri if options.agent else None)


def _log_started(journal: Log, paths: Sequence[str], uri: str, targets: Sequence[str], *,
                 interval: float, policy: Policy) -> None:
    where = uri if len(targets) == 1 else f"{len(targets)} hosts: {', '.join(targets)}"
    hosts: dict[str, object] = {"hosts": list(targets)} if len(targets) > 1 else {}
    journal.info("started", f"watching {', '.join(paths)} on {where}", paths=list(paths),
                 uri=uri, **hosts, interval=interval, prune=policy.prune, adopt=policy.adopt)


@contextlib.contextmanager
def _connected(uri: str, call_timeout: float | None) -> Iterator[Driver]:
    driver = drivers.connect(uri, call_timeout=call_timeout)
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


def _relay_stop(stop: threading.Event, target: _Stoppable, stack: contextlib.ExitStack) -> None:
    """Turn a caller's threading.Event into a stop of every watcher."""
    done = threading.Event()

    def relay() -> None:
        while not done.is_set():
            if stop.wait(0.1):
                target.stop()
                return

    thread = threading.Thread(target=relay, name="virtctl-watch-stop", daemon=True)
    thread.start()
    stack.callback(done.set)
