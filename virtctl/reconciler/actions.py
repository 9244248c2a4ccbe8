"""The typed actions a plan is made of: one per driver call.

Each action names its object (kind and name) and the objects it `needs`: when an
earlier action on one of those failed, the applier skips it. `reason` is for display
only; nothing decides on it. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from ..model import Kind, NetworkCommand, NetworkSection, ObjectKey
from .diff import FieldChange


class Phase(IntEnum):
    """The one ordering table: teardown in reverse dependency order, then build-up."""

    DOMAIN_STOP = 0
    DOMAIN_UNDEFINE = 1
    NETWORK_STOP = 2
    NETWORK_UNDEFINE = 3
    NETWORK_DEFINE = 4
    NETWORK_LIVE = 5  # live changes to an active network (virNetworkUpdate)
    NETWORK_AUTOSTART = 6
    NETWORK_START = 7
    DOMAIN_DEFINE = 8
    DOMAIN_LIVE = 9  # live changes to a running guest: devices, vcpus, current memory
    DOMAIN_AUTOSTART = 10
    DOMAIN_START = 11
    DOMAIN_PAUSE = 12


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


# Live changes: the definition is already updated (Define comes first), so each of these
# changes the running object only. `device` is the device's identity path
# ('devices/disk[vdb]'); `reason` names the operation ('attach disk vdb').


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachDevice(BaseAction):
    device: str
    xml: str

    @property
    def verb(self) -> str:
        return "attach-device"


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachDevice(BaseAction):
    """Ask the guest to release a device; wait up to `timeout` seconds for it to go."""

    device: str
    xml: str
    timeout: float = 30.0

    @property
    def verb(self) -> str:
        return "detach-device"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateDevice(BaseAction):
    device: str
    xml: str

    @property
    def verb(self) -> str:
        return "update-device"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVcpus(BaseAction):
    count: int

    @property
    def verb(self) -> str:
        return "set-vcpus"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateNetwork(BaseAction):
    """One virNetworkUpdate on an active network; `entry` is the entry's path
    ('ip[192.168.100.1]/dhcp/host[52:54:00:..]')."""

    command: NetworkCommand
    section: NetworkSection
    xml: str
    entry: str
    parent_index: int = -1

    @property
    def verb(self) -> str:
        return "update-network"


LiveAction = AttachDevice | DetachDevice | UpdateDevice | SetVcpus | UpdateNetwork
Action = (Define | Undefine | Start | Shutdown | Destroy | Suspend | Resume | SetAutostart
          | SetMemory | AttachDevice | DetachDevice | UpdateDevice | SetVcpus | UpdateNetwork)


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
        case SetMemory() | AttachDevice() | DetachDevice() | UpdateDevice() | SetVcpus():
            return Phase.DOMAIN_LIVE
        case UpdateNetwork():
            return Phase.NETWORK_LIVE
        case Suspend() | Resume():
            return Phase.DOMAIN_PAUSE
    raise AssertionError(f"unknown action {action!r}")
