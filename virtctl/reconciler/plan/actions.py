"""The typed actions a plan is made of: one per driver call.

Each action names its object (kind and name) and the objects it `needs`: when an
earlier action on one of those failed, the applier skips it. `reason` is for display
only; nothing decides on it. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from ...model import Kind, NetworkCommand, NetworkSection, ObjectKey, VolumeContent
from .diff import FieldChange
from ..storage_record import ObjectRecord


class Phase(IntEnum):
    """The one ordering table: teardown in reverse dependency order, then build-up
    (pools, their volumes, networks, domains)."""

    DOMAIN_STOP = 0
    DOMAIN_UNDEFINE = 1
    NETWORK_STOP = 2
    NETWORK_UNDEFINE = 3
    VOLUME_DELETE = 4
    POOL_STOP = 5
    POOL_UNDEFINE = 6
    POOL_DEFINE = 7
    POOL_BUILD = 8
    POOL_AUTOSTART = 9
    POOL_START = 10
    VOLUME_CREATE = 11  # create (and upload), resize, and virtctl's records
    NETWORK_DEFINE = 12
    NETWORK_LIVE = 13  # live changes to an active network (virNetworkUpdate)
    NETWORK_AUTOSTART = 14
    NETWORK_START = 15
    DOMAIN_DEFINE = 16
    DOMAIN_LIVE = 17  # live changes to a running guest: devices, vcpus, current memory
    DOMAIN_AUTOSTART = 18
    DOMAIN_START = 19
    DOMAIN_PAUSE = 20


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
    timeout: float = 30.0  # seconds the guest's balloon may take to get there

    @property
    def verb(self) -> str:
        return "set-memory"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRunningNote(BaseAction):
    """Replace virtctl's note on a running guest (liverules.RunningNote; None removes
    it): live metadata only, the guest sees nothing, a restart drops it."""

    xml: str | None

    @property
    def verb(self) -> str:
        return "note-pending"


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


# Storage. Pools are defined, started, stopped, undefined and given autostart with the
# generic actions (kind POOL); these are the rest. A volume action's `name` is
# "POOL/NAME"; `record` is what virtctl's record of it becomes once the action is done
# (storage_record.py; None: forgotten), written to the pool's state volume right after.


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildPool(BaseAction):
    @property
    def verb(self) -> str:
        return "build"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordPool(BaseAction):
    """Write virtctl's record of a pool (it must be active) into its state volume; None
    forgets it, before the pool stops for good (its directory keeps the state volume,
    and a pool someone defines over it later must not look like virtctl's)."""

    record: ObjectRecord | None

    @property
    def verb(self) -> str:
        return "record"


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateVolume(BaseAction):
    """Create a volume from `xml`, then (when given) upload its content, verified
    against its checksum before anything is created."""

    xml: str
    content: VolumeContent | None = None
    record: ObjectRecord | None = None
    depth: int = 0  # backing volumes created in this plan under it: they go first
    # (running guest, CD-ROM target) to put the new volume in as its medium, live, once
    # it is made: a cloud-init seed replaced under a running guest (see DeleteVolume).
    insert: tuple[str, str] | None = None

    @property
    def verb(self) -> str:
        return "create-volume"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResizeVolume(BaseAction):
    """Grow a volume; one a running guest uses grows through that guest (`domain`,
    disk `target`: libvirt's blockResize), which then sees the new size at once."""

    capacity: int  # bytes; only ever more than the volume has
    record: ObjectRecord | None = None
    domain: str | None = None
    target: str | None = None

    @property
    def verb(self) -> str:
        return "resize-volume"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteVolume(BaseAction):
    """Delete a volume and its data (its spec's deletePolicy is delete).

    `eject` (running guest, CD-ROM target): the medium is taken out of that drive live
    first, so QEMU no longer holds the file when it is deleted (a deleted file it holds
    open stays what the guest reads, even after a reboot from inside)."""

    eject: tuple[str, str] | None = None

    @property
    def verb(self) -> str:
        return "delete-volume"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordVolume(BaseAction):
    """Update (or, with None, drop) virtctl's record of a volume without touching it."""

    record: ObjectRecord | None = None

    @property
    def verb(self) -> str:
        return "record"


StorageAction = BuildPool | RecordPool | CreateVolume | ResizeVolume | DeleteVolume | RecordVolume
LiveAction = AttachDevice | DetachDevice | UpdateDevice | SetVcpus | UpdateNetwork
Action = (Define | Undefine | Start | Shutdown | Destroy | Suspend | Resume | SetAutostart
          | SetMemory | SetRunningNote | AttachDevice | DetachDevice | UpdateDevice | SetVcpus
          | UpdateNetwork
          | BuildPool | RecordPool | CreateVolume | ResizeVolume | DeleteVolume | RecordVolume)


_BY_KIND = {
    # generic action -> (domain, network, pool) phase
    "stop": (Phase.DOMAIN_STOP, Phase.NETWORK_STOP, Phase.POOL_STOP),
    "undefine": (Phase.DOMAIN_UNDEFINE, Phase.NETWORK_UNDEFINE, Phase.POOL_UNDEFINE),
    "define": (Phase.DOMAIN_DEFINE, Phase.NETWORK_DEFINE, Phase.POOL_DEFINE),
    "autostart": (Phase.DOMAIN_AUTOSTART, Phase.NETWORK_AUTOSTART, Phase.POOL_AUTOSTART),
    "start": (Phase.DOMAIN_START, Phase.NETWORK_START, Phase.POOL_START),
}
_KIND_COLUMN = {Kind.DOMAIN: 0, Kind.NETWORK: 1, Kind.POOL: 2}


def phase_of(action: Action) -> Phase:
    match action:
        case Shutdown() | Destroy():
            step = "stop"
        case Undefine():
            step = "undefine"
        case Define():
            step = "define"
        case SetAutostart():
            step = "autostart"
        case Start():
            step = "start"
        case (SetMemory() | SetRunningNote() | AttachDevice() | DetachDevice() | UpdateDevice()
              | SetVcpus()):
            return Phase.DOMAIN_LIVE
        case UpdateNetwork():
            return Phase.NETWORK_LIVE
        case Suspend() | Resume():
            return Phase.DOMAIN_PAUSE
        case BuildPool():
            return Phase.POOL_BUILD
        case RecordPool(record=None):  # forgotten after its volumes, just before it stops
            return Phase.POOL_STOP
        case RecordPool():
            return Phase.POOL_START  # after the start it needs, by plan order
        case DeleteVolume() | RecordVolume(record=None):  # forgetting is part of teardown
            return Phase.VOLUME_DELETE
        case CreateVolume() | ResizeVolume() | RecordVolume():
            return Phase.VOLUME_CREATE
        case _:
            # Checkpoint actions (virtctl/reconciler/checkpoint/actions.py) carry their phase;
            # the post-pass that adds them places them itself.
            phase = getattr(action, "phase", None)
            if phase is not None:
                return phase
            raise AssertionError(f"unknown action {action!r}")
    return _BY_KIND[step][_KIND_COLUMN[action.kind]]
