"""The one small interface every hypervisor driver implements.

A driver translates between virtctl's model and one hypervisor API; it decides nothing
(no diffing, no ordering, no policy). Reading is split from writing so planning code can
be handed a `Reader` that cannot mutate a host. Drivers raise only `DriverError` (and
`TransientError`) from virtctl.errors, keeping the hypervisor's own code and message.

Operations take the object's kind and name; `define` takes full libvirt XML, which
creates the object or, when one with that name and uuid exists, replaces its persistent
definition in place (libvirt's define semantics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from ..model import Kind, Live


class EventType(StrEnum):
    DEFINED = "defined"
    UNDEFINED = "undefined"
    STARTED = "started"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    CHANGED = "changed"
    CONNECTION_LOST = "connection-lost"
    RECONNECTED = "reconnected"


@dataclass(frozen=True, slots=True)
class Event:
    """Something happened to an object on the host (or to the connection itself)."""

    type: EventType
    kind: Kind | None = None
    name: str | None = None
    detail: str = ""


EventCallback = Callable[[Event], None]


@runtime_checkable
class Reader(Protocol):
    uri: str

    def snapshot(self) -> Live:
        """Every domain and network on the connection, persistent and transient."""
        ...

    def capabilities(self) -> str:
        """The host's capabilities XML (libvirt's format)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Driver(Reader, Protocol):
    def define(self, kind: Kind, xml: str) -> None: ...

    def undefine(self, kind: Kind, name: str) -> None: ...

    def start(self, kind: Kind, name: str) -> None: ...

    def shutdown(self, kind: Kind, name: str) -> None:
        """Ask a guest to shut down (ACPI); returns without waiting. Networks stop at once."""
        ...

    def destroy(self, kind: Kind, name: str) -> None:
        """Stop at once (power off a guest, tear down a network)."""
        ...

    def suspend(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def set_autostart(self, kind: Kind, name: str, enabled: bool) -> None: ...

    def set_memory(self, name: str, kib: int) -> None:
        """Set a domain's current memory (balloon) now and in its persistent definition;
        refused above its maximum memory."""
        ...

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback` for each lifecycle event until the returned function is called."""
        ...
