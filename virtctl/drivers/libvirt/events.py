"""libvirt's event loop, lifecycle events as virtctl Events, and reconnecting.

Used only by the libvirt driver. libvirt delivers events (and notices a dropped
connection) only while some thread runs its event loop, and remote connections only
hook into a loop registered *before* they were opened; so `ensure_event_loop` registers
libvirt's default loop once per process and runs it in a daemon thread. The driver
calls it on its first subscription, and then opens its connection again if it was
opened before the loop ran (`event_loop_running`). Once registered, libvirt's loop
must run for the rest of the process.

`EventRelay` fans one connection's domain and network lifecycle callbacks out to
subscribers as `base.Event`s. While anyone is subscribed it also watches the connection:
when libvirt reports it closed, subscribers get CONNECTION_LOST, a background thread
re-opens it with exponential backoff, the callbacks are registered on the new
connection, and subscribers get RECONNECTED. It reports; it decides nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ...errors import DriverError
from ...model import Kind
from ..base import Event, EventCallback, EventType

log = logging.getLogger(__name__)

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None

# libvirt lifecycle event names (VIR_DOMAIN_EVENT_<NAME>) -> ours.
_DOMAIN_EVENTS = {
    "DEFINED": EventType.DEFINED,
    "UNDEFINED": EventType.UNDEFINED,
    "STARTED": EventType.STARTED,
    "SUSPENDED": EventType.SUSPENDED,
    "RESUMED": EventType.RESUMED,
    "STOPPED": EventType.STOPPED,
    "SHUTDOWN": EventType.CHANGED,  # the guest is shutting down; STOPPED follows
    "PMSUSPENDED": EventType.SUSPENDED,
    "CRASHED": EventType.STOPPED,
}
_NETWORK_EVENTS = {
    "DEFINED": EventType.DEFINED,
    "UNDEFINED": EventType.UNDEFINED,
    "STARTED": EventType.STARTED,
    "STOPPED": EventType.STOPPED,
}
_CLOSE_REASONS = {0: "error", 1: "eof", 2: "keepalive", 3: "client"}


def ensure_event_loop(lv: ModuleType) -> None:
    """Register libvirt's default event loop and start its thread, once per process."""
    global _loop_thread  # noqa: PLW0603 (libvirt's event loop is one per process)
    with _loop_lock:
        if _loop_thread is not None:
            return
        lv.virEventRegisterDefaultImpl()
        thread = threading.Thread(
            target=_run_loop, args=(lv,), name="libvirt-event-loop", daemon=True
        )
        thread.start()
        _loop_thread = thread


def event_loop_running() -> bool:
    """Whether `ensure_event_loop` has run: connections opened from now on hook in."""
    return _loop_thread is not None


def _run_loop(lv: ModuleType) -> None:
    while True:
        try:
            lv.virEventRunDefaultImpl()
        except lv.libvirtError:
            log.exception("libvirt event loop iteration failed")


@functools.cache
def _detail_names(lv: ModuleType, prefix: str) -> dict[int, str]:
    """Detail values -> names (`stopped` + `DESTROYED` -> "destroyed") for one event."""
    table: dict[int, str] = {}
    for attr in dir(lv):
        if attr.startswith(prefix) and not attr.endswith("_LAST"):
            table.setdefault(getattr(lv, attr), attr[len(prefix) :].lower().replace("_", "-"))
    return table


def _translate(
    lv: ModuleType,
    family: str,
    events: dict[str, EventType],
    kind: Kind,
    name: str,
    event: int,
    detail: int,
) -> Event:
    event_name = next(
        (key for key in events if getattr(lv, f"VIR_{family}_EVENT_{key}", None) == event),
        None,
    )
    if event_name is None:
        return Event(EventType.CHANGED, kind, name, detail=f"event-{event}")
    event_type = events[event_name]
    text = _detail_names(lv, f"VIR_{family}_EVENT_{event_name}_").get(detail, "")
    if event_type.upper() != event_name:
        # Folded into a broader type (SHUTDOWN -> changed): keep libvirt's event name.
        text = f"{event_name.lower()}-{text}" if text else event_name.lower()
    return Event(event_type, kind, name, detail=text or event_name.lower())


def domain_event(lv: ModuleType, name: str, event: int, detail: int) -> Event:
    """A libvirt domain lifecycle callback's arguments as an Event."""
    return _translate(lv, "DOMAIN", _DOMAIN_EVENTS, Kind.DOMAIN, name, event, detail)


def network_event(lv: ModuleType, name: str, event: int, detail: int) -> Event:
    return _translate(lv, "NETWORK", _NETWORK_EVENTS, Kind.NETWORK, name, event, detail)


class EventRelay:
    """Delivers one driver's lifecycle events to its subscribers, across reconnects."""

    def __init__(
        self,
        lv: ModuleType,
        *,
        current: Callable[[], Any],
        reopen: Callable[[], Any],
        replace: Callable[[Any], None],
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
    ) -> None:
        self._lv = lv
        self._current = current  # the driver's connection now
        self._reopen = reopen  # opens a fresh connection or raises DriverError
        self._replace = replace  # installs a fresh connection in the driver
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._lock = threading.RLock()
        self._subscribers: dict[int, EventCallback] = {}
        self._next_token = 0
        self._attached: tuple[Any, list[int], list[int]] | None = None
        self._stopped = threading.Event()
        self._reconnecting = False

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._subscribers[token] = callback
            if self._attached is None:
                self._attach(self._current())
        return functools.partial(self._unsubscribe, token)

    def _unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)
            if not self._subscribers:
                self._detach()

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._subscribers.clear()
            self._detach()

    def abandon(self) -> None:
        """Stop without a call on the connection (one that stopped answering: a
        deregistration would wait for it too). Its callbacks go with it."""
        self._stopped.set()
        with self._lock:
            self._subscribers.clear()
            self._attached = None

    def _attach(self, conn: Any) -> None:
        lv = self._lv
        domain_ids = [
            conn.domainEventRegisterAny(
                None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_domain, None
            )
        ]
        network_ids = [
            conn.networkEventRegisterAny(
                None, lv.VIR_NETWORK_EVENT_ID_LIFECYCLE, self._on_network, None
            )
        ]
        conn.registerCloseCallback(self._on_close, None)
        # Remote connections notice a silently dead peer only through keepalives; local
        # drivers (test://, qemu:/// in-process) have none and refuse.
        with contextlib.suppress(lv.libvirtError):
            conn.setKeepAlive(5, 3)
        self._attached = (conn, domain_ids, network_ids)

    def _detach(self) -> None:
        if self._attached is None:
            return
        conn, domain_ids, network_ids = self._attached
        self._attached = None
        # The connection may already be dead; deregistering is then moot.
        for deregister, ids in (
            (conn.domainEventDeregisterAny, domain_ids),
            (conn.networkEventDeregisterAny, network_ids),
        ):
            for callback_id in ids:
                self._quietly(deregister, callback_id)
        self._quietly(conn.unregisterCloseCallback)

    def _quietly(self, call: Callable[..., object], *args: object) -> None:
        try:
            call(*args)
        except self._lv.libvirtError:
            log.debug("ignored libvirt error while detaching", exc_info=True)

    def _emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers.values())
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop the event loop thread
                log.exception("event subscriber failed on %s", event)

    def _on_domain(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self._emit(domain_event(self._lv, dom.name(), event, detail))

    def _on_network(self, _conn: Any, net: Any, event: int, detail: int, _opaque: Any) -> None:
        self._emit(network_event(self._lv, net.name(), event, detail))

    def _on_close(self, conn: Any, reason: int, _opaque: Any) -> None:
        # Runs on the event loop thread: never block here, reconnect elsewhere.
        with self._lock:
            if self._attached is None or self._attached[0] is not conn or self._reconnecting:
                return
            self._reconnecting = True
        self._emit(Event(EventType.CONNECTION_LOST, detail=_CLOSE_REASONS.get(reason, "error")))
        threading.Thread(target=self._reconnect, name="libvirt-reconnect", daemon=True).start()

    def _reconnect(self) -> None:
        delay = self._initial_delay
        while not self._stopped.wait(delay):
            try:
                conn = self._reopen()
            except DriverError as exc:
                log.info("reconnect failed (retrying in %.1fs): %s", delay, exc)
                delay = min(delay * 2, self._max_delay)
                continue
            self._install(conn)
            return

    def _install(self, conn: Any) -> None:
        with self._lock:
            self._detach()
            self._replace(conn)
            self._reconnecting = False
            if self._subscribers and not self._stopped.is_set():
                self._attach(conn)
        self._emit(Event(EventType.RECONNECTED))
