"""A deadline on every libvirt call: a daemon that stops answering must not hang virtctl.

Used by the libvirt driver only. libvirt-python's calls block in C (with the GIL
released) until the daemon answers; a SIGSTOPped or wedged libvirtd never does, and
nothing in libvirt bounds a call on a local socket. So each driver operation runs on a
worker thread while the caller waits at most `timeout` seconds (`Deadline.run`). When
the time is up the caller gets `CallTimeout`, the worker is abandoned (a daemon thread:
it never keeps the process alive) and so is the connection: the deadline is spent
(`spent`), every later operation through it fails at once without touching libvirt,
and closing it is skipped, since a close is one more call that would not return.
Whatever an abandoned call returns later is handed to `late` (a connection that opened
after all is closed again).

Decision: one worker thread per operation, not per libvirt call. A driver operation is
one call plus its lookup (define, start, attach a device...), so per operation is per
call where it matters; a snapshot's hundreds of reads share one deadline (a read of
200 domains takes tens of milliseconds) instead of paying a thread hand-off each.
Stream transfers, which take as long as their data, get the deadline per step: each
chunk sent must go within it (`run_watched`, one thread for the whole transfer). A thread
per operation costs about 0.1 ms; the driver's reads already take longer.

Remote connections also get libvirt's keepalive (`keepalive`): it notices a dead peer
on its own and closes the connection, so the call in flight fails rather than waits.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from ...errors import CallTimeout, ErrorCode, ErrorDomain, SpecError
from ...uri import parse_uri

DEFAULT_CALL_TIMEOUT = 60.0
ENV = "VIRTCTL_CALL_TIMEOUT"
# Keepalive on remote connections: a probe every INTERVAL s; after COUNT unanswered
# ones libvirt closes the connection (a dead peer found in about 20 s).
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3

P = ParamSpec("P")
R = TypeVar("R")


def call_timeout(given: float | None = None, env: Mapping[str, str] | None = None) -> float:
    """The per-call timeout: `given` (--call-timeout), else $VIRTCTL_CALL_TIMEOUT, else
    DEFAULT_CALL_TIMEOUT. A value that is not a finite number of seconds above 0 is
    refused, naming where it came from."""
    if given is not None:
        text, origin = str(given), "--call-timeout"
    else:
        env = os.environ if env is None else env
        text, origin = env.get(ENV, "").strip(), f"${ENV}"
        if not text:
            return DEFAULT_CALL_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > threading.TIMEOUT_MAX:
        raise SpecError(f"{origin}: {text!r} is not a number of seconds above 0",
                        code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CLI)
    return value


class _Outcome:
    __slots__ = ("value", "error", "abandoned")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


_inside = threading.local()  # the Deadline whose worker this thread is, if any


class Deadline:
    """Runs one connection's operations, each within `timeout` seconds."""

    def __init__(self, uri: str, timeout: float) -> None:
        self.uri = uri
        self.timeout = timeout
        self.spent: str | None = None  # the operation that timed out, once one did
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise CallTimeout (not attempted) once the connection was abandoned."""
        if self.spent is not None:
            raise CallTimeout(
                f"{self.uri} stopped answering earlier ({self.spent} got no answer within "
                f"{self.timeout:g} s); not attempted", attempted=False)

    def run(self, what: str, call: Callable[[], R],
            late: Callable[[Any], None] | None = None) -> R:
        """`call()` on a worker thread; CallTimeout when it takes over `timeout` s.
        Called from a worker of this Deadline (an operation inside an operation), it
        runs right there, under the outer operation's deadline."""
        if getattr(_inside, "deadline", None) is self:
            return call()
        return self._run(what, call, late, ticks=None)

    def run_watched(self, what: str, call: Callable[[Callable[[], None]], R]) -> R:
        """`call(tick)` on one worker thread, given `timeout` s from its start and from
        each `tick()`: a transfer that goes on as long as its data, while no step of
        it (a chunk sent) waits longer than one call may. One thread for the whole, not
        one per chunk: a thread per 256 KiB would cost as much as sending it."""
        ticks = [time.monotonic()]
        return self._run(what, lambda: call(lambda: ticks.__setitem__(0, time.monotonic())),
                         None, ticks=ticks)

    def _run(self, what: str, call: Callable[[], R], late: Callable[[Any], None] | None,
             *, ticks: list[float] | None) -> R:
        self.check()
        outcome = _Outcome()
        finished = threading.Event()

        def work() -> None:
            _inside.deadline = self
            try:
                outcome.value = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome.error = exc
            with self._lock:
                finished.set()
                abandoned = outcome.abandoned
            if abandoned and late is not None and outcome.error is None:
                late(outcome.value)

        threading.Thread(target=work, name=f"virtctl-call {what}", daemon=True).start()
        wait = self.timeout
        while not finished.wait(wait):
            if ticks is not None:  # watched: the time since the last step counts
                wait = ticks[0] + self.timeout - time.monotonic()
                if wait > 0:
                    continue
            with self._lock:
                if not finished.is_set():
                    outcome.abandoned = True
                    self.spent = self.spent or what
            if not outcome.abandoned:
                break  # it finished just as the time ran out
            raise CallTimeout(
                f"{self.uri} did not answer within {self.timeout:g} s ({what}): "
                "the call may or may not have taken effect; virtctl stopped using "
                "this connection (--call-timeout, $VIRTCTL_CALL_TIMEOUT)")
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]


class _Bounded(Protocol):
    _deadline: Deadline


def bounded(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A driver method run under its driver's Deadline (`self._deadline`)."""
    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            self: _Bounded = args[0]  # type: ignore[assignment]
            return self._deadline.run(_describe(what, args[1:]),
                                      lambda: method(*args, **kwargs))
        return run
    return wrap


def bound_methods(cls: type, *, unbounded: tuple[str, ...]) -> None:
    """Bound every public method of `cls` (its mixins' too) but `unbounded`: a method
    added later is bounded without anyone remembering to. Each is named for messages
    by its name ("attach device")."""
    for name in dir(cls):
        method = getattr(cls, name)
        if name.startswith("_") or name in unbounded or not inspect.isfunction(method):
            continue
        if getattr(method, "__bounded__", False):
            continue
        wrapped = bounded(name.replace("_", " "))(method)
        wrapped.__bounded__ = True  # type: ignore[attr-defined]
        setattr(cls, name, wrapped)


def _describe(what: str, args: tuple[object, ...]) -> str:
    """"start domain web": the operation and the short names among its arguments."""
    names = [str(a) for a in args if isinstance(a, str) and len(a) <= 100 and "<" not in a]
    return " ".join([what, *names[:2]])


def remote(uri: str) -> bool:
    """Whether `uri` reaches its daemon over a network (a host, or a transport other
    than the local unix socket): where libvirt's keepalive is worth its event loop."""
    try:
        return not parse_uri(uri).is_local
    except SpecError:
        return False


def keepalive(lv: Any, conn: Any) -> bool:
    """libvirt's keepalive on `conn` (the event loop must be running); False where the
    driver has none (in-process drivers refuse)."""
    try:
        return conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT) == 0  # type: ignore[no-any-return]
    except lv.libvirtError:
        return False
