"""The typed actions a plan is made of: one per driver call.

Each action names its object (kind and name) and the objects it `needs`: when an
earlier action on one of those failed, the applier skips it. `reason` is for display
only; nothing decides on it. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from ..model import Kind, ObjectKey
from .diff import FieldChange


class Phase(IntEnum):
    """The one ordering table: teardown in reverse dependency order, then build-up."""

    DOMAIN_STOP = 0
    DOMAIN_UNDEFINE = 1
    NETWORK_STOP = 2
    NETWORK_UNDEFINE = 3
    NETWORK_DEFINE = 4
    NETWORK_AUTOSTART = 5
    NETWORK_START = 6
    DOMAIN_DEFINE = 7
    DOMAIN_LIVE = 8  # live changes to a running guest (current memory)
    DOMAIN_AUTOSTART = 9
    DOMAIN_START = 10
    DOMAIN_PAUSE = 11


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseAction:
    kind: Kind
    name: str
    needs: tuple[ObjectKey, ...] = ()
    reason: str = ""

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.name)

    @property
    def verb(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Define(BaseAction):
    xml: str
    new: bool
    changes: tuple[FieldChange, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Undefine(BaseAction):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Start(BaseAction):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown(BaseAction):
    """Graceful stop; after `timeout` seconds, destroy if `force`, else fail."""

    timeout: float = 60.0
    force: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Destroy(BaseAction):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspend(BaseAction):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(BaseAction):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SetAutostart(BaseAction):
    enabled: bool = field(default=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMemory(BaseAction):
    """Set a running guest's current memory now (and in its definition)."""

    kib: int

    @property
    def verb(self) -> str:
        return "set-memory"


Action = (Define | Undefine | Start | Shutdown | Destroy | Suspend | Resume | SetAutostart
          | SetMemory)


def phase_of(action: Action) -> Phase:
    domain = action.kind is Kind.DOMAIN
    match action:
        case Shutdown() | Destroy():
            return Phase.DOMAIN_STOP if domain else Phase.NETWORK_STOP
        case Undefine():
            return Phase.DOMAIN_UNDEFINE if domain else Phase.NETWORK_UNDEFINE
        case Define():
            return Phase.DOMAIN_DEFINE if domain else Phase.NETWORK_DEFINE
        case SetAutostart():
            return Phase.DOMAIN_AUTOSTART if domain else Phase.NETWORK_AUTOSTART
        case Start():
            return Phase.DOMAIN_START if domain else Phase.NETWORK_START
        case SetMemory():
            return Phase.DOMAIN_LIVE
        case Suspend() | Resume():
            return Phase.DOMAIN_PAUSE
    raise AssertionError(f"unknown action {action!r}")
