"""Host locks behind one Protocol: the local lock directory (hostlock.py, the default,
keyed by URI) and etcd leases (with --coordination, keyed by the host's identity).

    locks = EtcdLocks(coordination.client(), ttl=15)
    with locks.hold(driver, command="virtctl apply", timeout=None, on_wait=print) as held:
        ...                      # before each action: held.check() (raises LockLost)

An etcd lock is the key `/virtctl/locks/HOSTID` (hostid.py), created in a transaction
only if absent (create_revision == 0), under a lease of this run's that a LeaseKeeper
renews every TTL/3. The value names the holder (pid, machine, command, since, URI) for
waiters. It ends when the run revokes the lease, or TTL seconds after the holder stopped
renewing it (killed, partitioned): etcd then deletes the key, and the waiters, watching
that key, try again. docs/fleet.md has the guarantees and the window that remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Protocol

from ..errors import ErrorCode, ErrorDomain, VirtctlError
from .hostlock import COMMAND_LIMIT, NOTICE_INTERVAL, LockTimeout, host_lock
from ..printable import printable
from .config import DEFAULT_TTL
from .etcd import EtcdClient, EtcdError, KeyValue, LeaseKeeper, compare, delete_op
from .hostid import HostId, host_identity

PREFIX = "/virtctl/"
# A lock is checked before each action: it must stay held at least this long after the
# check (the lease is known alive to a time measured from its last renewal's send).
CHECK_MARGIN = 1.0


class LockLost(VirtctlError):
    """This run no longer holds the host's lock: nothing more may run on the host."""

    default_code = ErrorCode.CONNECTION
    default_domain = ErrorDomain.COORDINATION


class LockWaitCancelled(VirtctlError):
    """A wait for a host's lock given up because the caller asked to stop."""

    default_code = ErrorCode.OPERATION_INVALID
    default_domain = ErrorDomain.COORDINATION


class Held(Protocol):
    def check(self) -> None:
        """Raise LockLost unless the lock is still certainly held."""


class HostLocks(Protocol):
    def hold(self, driver: _Host, *, command: str = "virtctl", timeout: float | None = None,
             on_wait: Callable[[str], None] | None = None,
             interval: float = NOTICE_INTERVAL,
             cancelled: Callable[[], bool] | None = None) -> ContextManager[Held]:
        """Hold `driver`'s host for the block (waiting: `on_wait` hears who holds it,
        at once and every `interval` s; LockTimeout after `timeout` s; while waiting,
        `cancelled()` true gives up with LockWaitCancelled)."""


class _Host(Protocol):
    uri: str

    def capabilities(self) -> str: ...


def lock_key(host: HostId) -> str:
    return f"{PREFIX}locks/{host.key}"


class _Always:
    def check(self) -> None:
        return None  # an flock is held until this process lets go or dies


@dataclass(frozen=True, slots=True)
class LocalLocks:
    """The lock directory (hostlock.py), keyed by URI as always: one machine only."""

    state_root: Path

    @contextlib.contextmanager
    def hold(self, driver: _Host, *, command: str = "virtctl", timeout: float | None = None,
             on_wait: Callable[[str], None] | None = None,
             interval: float = NOTICE_INTERVAL,
             cancelled: Callable[[], bool] | None = None) -> Iterator[Held]:
        with host_lock(driver.uri, self.state_root, timeout=timeout, on_wait=on_wait,
                       command=command, interval=interval):
            yield _Always()


class EtcdHeld:
    """An etcd lock held: `check()` before each action."""

    def __init__(self, uri: str, keeper: LeaseKeeper) -> None:
        self.uri = uri
        self.keeper = keeper

    def check(self) -> None:
        try:
            self.keeper.check(CHECK_MARGIN)
        except EtcdError as exc:
            raise LockLost(f"lost the lock on {self.uri}: {exc.message}") from None


class EtcdLocks:
    """Host locks in etcd (see the module docstring). Two URIs of one run that name
    the same host (same identity) share its lock: this process holds it once.

    By default each lock has a lease of its own (grant, create, revoke: 3 requests,
    plus a renewal every TTL/3). A long-running process holding many hosts (a fleet
    member) may pass its own started `keeper` instead: every lock is then created under
    that one lease and released by deleting the key if it is still under it (create,
    delete: 2 requests per lock); the keeper's owner stops it. One EtcdLocks per such
    keeper: a key under that lease counts as this instance's own."""

    def __init__(self, client: EtcdClient, *, ttl: int = DEFAULT_TTL,
                 keeper: LeaseKeeper | None = None) -> None:
        self.client = client
        self.ttl = ttl
        self.keeper = keeper
        self._mutex = threading.Lock()
        self._held: dict[str, tuple[LeaseKeeper, int]] = {}  # key -> keeper, users
        self._taking: dict[str, threading.Lock] = {}  # key -> one taker at a time

    @contextlib.contextmanager
    def hold(self, driver: _Host, *, command: str = "virtctl", timeout: float | None = None,
             on_wait: Callable[[str], None] | None = None,
             interval: float = NOTICE_INTERVAL,
             cancelled: Callable[[], bool] | None = None) -> Iterator[Held]:
        host = host_identity(driver)
        key = lock_key(host)
        with self._mutex:
            taking = self._taking.setdefault(key, threading.Lock())
        with taking:  # a second URI of this run for the same host shares the first's lock
            with self._mutex:
                shared = self._held.get(key)
                if shared is not None:
                    self._held[key] = (shared[0], shared[1] + 1)
            keeper = shared[0] if shared is not None else self._take(
                key, host, driver.uri, command=command, timeout=timeout, on_wait=on_wait,
                interval=interval, cancelled=cancelled)
            if shared is None:
                with self._mutex:
                    self._held[key] = (keeper, 1)
        try:
            yield EtcdHeld(driver.uri, keeper)
        finally:
            with self._mutex:
                kept, users = self._held[key]
                if users > 1:
                    self._held[key] = (kept, users - 1)
                else:
                    del self._held[key]
            if users <= 1:
                self._release(key, keeper)

    def _release(self, key: str, keeper: LeaseKeeper) -> None:
        if keeper is not self.keeper:
            keeper.stop(revoke=True)  # the key goes with the lease
            return
        # A shared lease: delete the key only while it is still ours (a lease that ended
        # took it already, and someone else may hold the host by now).
        with contextlib.suppress(EtcdError):
            self.client.txn([compare(key, "LEASE", keeper.lease.id)], [delete_op(key)])

    def _take(self, key: str, host: HostId, uri: str, *, command: str,
              timeout: float | None, on_wait: Callable[[str], None] | None,
              interval: float, cancelled: Callable[[], bool] | None) -> LeaseKeeper:
        if self.keeper is not None:
            keeper = self.keeper
        else:
            keeper = LeaseKeeper(self.client, self.client.lease_grant(self.ttl))
            keeper.start()
        try:
            value = json.dumps({"pid": os.getpid(), "machine": socket.gethostname(),
                                "command": command, "since": time.time(),
                                "uri": uri, "host": host.key})
            self._acquire(key, value, keeper, uri=uri, timeout=timeout, on_wait=on_wait,
                          interval=interval, cancelled=cancelled)
        except BaseException:
            if keeper is not self.keeper:
                keeper.stop(revoke=True)
            raise
        return keeper

    def _acquire(self, key: str, value: str, keeper: LeaseKeeper, *, uri: str,
                 timeout: float | None, on_wait: Callable[[str], None] | None,
                 interval: float, cancelled: Callable[[], bool] | None) -> None:
        began = time.monotonic()
        next_notice = began
        while True:
            keeper.check()
            created, holder, revision = self.client.create(key, value, lease=keeper.lease.id)
            if created or (holder is not None and holder.lease == keeper.lease.id):
                return  # ours (a create retried on another endpoint after it went through)
            if holder is None:
                continue  # released between the comparison and the read: again
            # Wait for the key's deletion (a release, or its holder's lease ending) on a
            # watch; the key is read again at each notice in case the stream went quiet.
            with self.client.watch(key, start_revision=revision + 1) as watch:
                while True:
                    now = time.monotonic()
                    if timeout is not None and now - began >= timeout:
                        raise LockTimeout(
                            f"gave up after waiting {timeout:g} s for the lock on {uri}, "
                            f"held by {describe(holder)}; try again later, or raise "
                            "--lock-timeout")
                    if now >= next_notice:
                        current = self.client.get(key)
                        if current is None:
                            break
                        holder = current
                        if on_wait is not None:
                            on_wait(f"waiting for the lock on {uri} held by "
                                    f"{describe(holder)}")
                        next_notice = now + interval
                    wake = next_notice - now
                    if timeout is not None:
                        wake = min(wake, began + timeout - now)
                    keeper.check()
                    if cancelled is not None and cancelled():
                        raise LockWaitCancelled(f"stopped waiting for the lock on {uri}")
                    events = watch.next_events(max(min(wake, keeper.lease.ttl / 3, 1.0),
                                                   0.05))
                    if any(event.type == "DELETE" for event in events):
                        break


def describe(holder: KeyValue) -> str:
    """"pid N on MACHINE (virtctl apply, since HH:MM:SS)", from the lock's value: only
    text another machine wrote, so escaped (printable) and cut as hostlock does."""
    try:
        doc = json.loads(holder.value)
        pid, machine = int(doc["pid"]), str(doc.get("machine", "?"))
        command, since = str(doc.get("command", "")), float(doc["since"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return "another virtctl run"
    try:
        clock = ", since " + time.strftime("%H:%M:%S", time.localtime(since))
    except (OverflowError, ValueError, OSError):
        clock = ""
    command = command[:COMMAND_LIMIT] + ("..." if len(command) > COMMAND_LIMIT else "")
    return printable(f"pid {pid} on {machine[:100]} ({command}{clock})",
                     keep_newlines=False)
