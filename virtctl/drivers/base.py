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
from typing import BinaryIO, Protocol, runtime_checkable

from ..checkpoints import SnapshotInfo
from ..model import (
    DomainState,
    Kind,
    Live,
    LiveOp,
    NetworkCommand,
    NetworkSection,
    NodeInfo,
    Storage,
)


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

    def node_info(self) -> NodeInfo:
        """The host's physical memory, free memory and cpus (libvirt's node info and
        free memory), for DomainSet placement."""
        ...

    def domain_capabilities(self, dom_type: str, arch: str | None,
                            machine: str | None) -> str | None:
        """libvirt's domain capabilities XML for guests of this type, arch and machine
        (the devices and backends the host offers them); None where the host has none."""
        ...

    def live_ops(self) -> frozenset[LiveOp]:
        """What this host changes on running objects without a restart (see LiveOp)."""
        ...

    def definition(self, kind: Kind, name: str, *, running: bool = False) -> str:
        """One object's XML: the definition a running object runs (`running`; refused
        when it is not running), else its persistent one. Cheaper than a snapshot when
        one object is wanted. A host that keeps one definition per network (libvirt's
        test driver) gives the running one either way."""
        ...

    def domain_state(self, name: str) -> DomainState | None:
        """One domain's power state; None when there is no such domain (a transient
        guest that stopped is gone). One call for one guest: the stop ladder polls
        this for each guest it waits on, where a snapshot would read the whole host."""
        ...

    def storage(self) -> Storage:
        """Every storage pool; for each active one, its volumes and the text of its
        STATE_VOLUME (virtctl's records), which is not listed among the volumes."""
        ...

    def pool_files(self, pool_xml: str) -> Storage | None:
        """What a dir pool defined by `pool_xml` will show once it runs, as `storage()`
        would then give it: the pool (its `record` the text of a STATE_VOLUME already
        in its directory) and, as its volumes, the other files in its target directory
        (format, capacity, backing store as the files say). For the checks and plans
        made while the pool is not running (undefined, or inactive). No volumes for a
        missing directory; None where virtctl cannot tell: a pool type other than dir,
        a remote host, an unreadable directory."""
        ...

    def file_exists(self, path: str) -> bool | None:
        """Whether `path` is a file on the host (a volume's backing store, checked
        before the first action); None where virtctl cannot tell (a remote host)."""
        ...

    # Checkpoints and the health gate (virtctl/reconciler/checkpoint/, docs/checkpoints.md).

    def snapshots(self, name: str) -> tuple[SnapshotInfo, ...]:
        """A guest's snapshots, oldest first (virtctl's and any other)."""
        ...

    def agent_ping(self, name: str) -> bool:
        """Whether the running guest's agent answers a ping now."""
        ...

    def tcp_open(self, name: str, port: int) -> bool:
        """Whether a TCP connection to `port` on the running guest succeeds now."""
        ...

    def cloud_init_done(self, name: str) -> bool:
        """Whether cloud-init has finished in the running guest (read via its agent)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Driver(Reader, Protocol):
    def create_snapshot(self, name: str, snapshot: str, description: str, *,
                        memory: bool = False) -> None:
        """Take an internal snapshot of the guest's definition and writable disks
        (`memory`: its running state too), named `snapshot`, with `description`."""
        ...

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        """Restore the definition and disks of `snapshot` (a guest running without a
        saved memory state is stopped first and left off)."""
        ...

    def delete_snapshot(self, name: str, snapshot: str, *, keep_data: bool = False) -> None:
        """Delete a snapshot; `keep_data`: forget its record only, its data stays in
        the disk images (libvirt's metadata-only delete)."""
        ...

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

    # Live changes. `live`: the running object (refused when it is not running);
    # `config`: the persistent definition. The planner redefines first and then changes
    # the running object with live=True, config=False.

    def attach_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        """Hot-plug one device (`<disk>`, `<interface>`...); refused where the bus
        cannot hot-plug or the device already exists."""
        ...

    def detach_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        """Ask for a device to be removed; matched by identity (disk target, MAC,
        alias). Asynchronous on a running guest: the guest must release the device, so
        it may still be there when this returns (callers poll `definition`)."""
        ...

    def update_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        """Change a device in place (CD-ROM/floppy media, interface link state and
        bandwidth, graphics password); the device is matched by identity."""
        ...

    def set_vcpus(self, name: str, count: int, *, live: bool = True,
                  config: bool = False) -> None:
        """Set the number of running vcpus; refused above the defined maximum."""
        ...

    def update_network(
        self, name: str, command: NetworkCommand, section: NetworkSection, xml: str,
        *, parent_index: int = -1, live: bool = True, config: bool = False,
    ) -> None:
        """libvirt's virNetworkUpdate: add, delete or modify one entry of `section`;
        `parent_index` picks the `<ip>` element for DHCP sections by position (-1: the
        one `<ip>` with DHCP; libvirt refuses -1 when several have DHCP and, when none
        has, takes the first IPv4 one)."""
        ...

    def set_running_note(self, name: str, xml: str | None) -> None:
        """Set (None: remove) virtctl's note in a running guest's metadata: the element
        `xml`, in namespace LIVE_NS (qualified or not: the driver puts it there),
        held by the running instance only and gone when it stops. Used to remember
        devices the guest has not released."""
        ...

    # Storage. Pools are defined, started (libvirt: created), stopped (destroy), undefined
    # and given autostart through define/start/destroy/undefine/set_autostart with
    # Kind.POOL; these are the rest. Volumes are named within their pool.

    def build_pool(self, name: str) -> None:
        """Make the pool's storage (a dir pool's directory, ...); libvirt's build."""
        ...

    def create_volume(self, pool: str, xml: str) -> None:
        """Create a volume from libvirt volume XML (name, capacity, target format, a
        backing store for a copy-on-write overlay); refused when the name exists."""
        ...

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete a volume and its data. Callers decide whether that is allowed."""
        ...

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        """Grow a volume to `capacity` bytes; refused when that would shrink it."""
        ...

    def resize_disk(self, name: str, target: str, capacity: int) -> None:
        """Grow the image behind disk `target` of running guest `name` to `capacity`
        bytes, with the guest told (libvirt's blockResize): the way to grow a volume a
        running guest uses. Refused when that would shrink it."""
        ...

    def upload_volume(self, pool: str, name: str, data: BinaryIO, size: int,
                      progress: Callable[[int], None] | None = None) -> None:
        """Write `size` bytes read from `data` over the start of a volume (libvirt's
        stream upload), calling `progress` with the bytes sent so far. What the volume
        held beyond them stays (a raw file grows when they are more): whoever replaces
        a text with a shorter one pads it (zero bytes end STATE_VOLUME's record)."""
        ...

    def download_volume(self, pool: str, name: str, *, limit: int) -> bytes:
        """A volume's content, refused when it holds more than `limit` bytes (used for
        STATE_VOLUME)."""
        ...

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback` for each lifecycle event until the returned function is called."""
        ...
