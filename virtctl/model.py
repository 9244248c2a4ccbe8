"""The typed vocabulary shared by every phase: desired specs and live objects.

Specs (what the user declared) and live objects (what a driver reports) are frozen
dataclasses. Definitions stay libvirt XML text, the document of record, so nothing a
user wrote is lost between loading and defining. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from .errors import Source


class Kind(StrEnum):
    DOMAIN = "domain"
    NETWORK = "network"
    POOL = "pool"  # a storage pool
    VOLUME = "volume"  # a storage volume, named "POOL/NAME" in an ObjectKey


class DomainState(StrEnum):
    """Power states; the first three are the ones a spec may ask for."""

    RUNNING = "running"
    SHUTOFF = "shutoff"
    PAUSED = "paused"
    # Only ever reported by a driver:
    BLOCKED = "blocked"
    SHUTDOWN = "shutdown"  # shutting down
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"
    NOSTATE = "nostate"

    @property
    def active(self) -> bool:
        return self not in (DomainState.SHUTOFF, DomainState.CRASHED, DomainState.NOSTATE)


DESIRED_DOMAIN_STATES = (DomainState.RUNNING, DomainState.SHUTOFF, DomainState.PAUSED)


class UpdatePolicy(StrEnum):
    """What virtctl may do to a running object when its definition changes (per spec)."""

    NEXT_BOOT = "next-boot"  # update the definition only; the change waits for a restart
    RESTART = "restart"  # stop (the ladder) and start again to apply restart-class changes
    RECREATE = "recreate"  # also undefine and define again when the identity changes

    @property
    def allows_restart(self) -> bool:
        return self is not UpdatePolicy.NEXT_BOOT


class ChangeClass(StrEnum):
    """How a change reaches the running object; ordered from mildest to most disruptive."""

    LIVE = "live"  # applied to the running object now
    NEXT_BOOT = "next-boot"  # the definition changes; the running object keeps the old one
    RESTART = "restart"  # only a stop and start applies it
    RECREATE = "recreate"  # the identity changes: undefine and define again

    @property
    def rank(self) -> int:
        return _CLASS_RANK[self]


_CLASS_RANK = {c: i for i, c in enumerate(ChangeClass)}


class LiveOp(StrEnum):
    """What a host can change on a running object without restarting it; a driver says
    which it supports (`Reader.live_ops`), and the planner classes a change `live` only
    when its operation is among them (reconciler/liverules.py)."""

    ATTACH = "attach"  # hot-plug a device
    DETACH = "detach"  # hot-unplug a device (the guest must release it)
    UPDATE = "update"  # change a device in place: media, link state, bandwidth, password
    VCPUS = "vcpus"  # set the running vcpus, up to the defined maximum
    NETWORK = "network"  # virNetworkUpdate: DHCP hosts and ranges, DNS, port groups...


class NetworkSection(StrEnum):
    """The parts of a running network libvirt can update (virNetworkUpdateSection)."""

    DHCP_HOST = "ip-dhcp-host"
    DHCP_RANGE = "ip-dhcp-range"
    DNS_HOST = "dns-host"
    DNS_TXT = "dns-txt"
    DNS_SRV = "dns-srv"
    PORTGROUP = "portgroup"
    FORWARD_INTERFACE = "forward-interface"


class NetworkCommand(StrEnum):
    """virNetworkUpdateCommand: add (last), delete (the matching entry), modify."""

    ADD = "add"
    DELETE = "delete"
    MODIFY = "modify"


#: An object's labels (`labels: {role: web}`): (key, value) pairs sorted by key.
Labels = tuple[tuple[str, str], ...]
#: The label every DomainSet instance (and its overlay volume) carries: its set's name
#: (selectors, plans naming the set, inventory groups, stable placement).
SET_LABEL = "domainset"


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A domain as declared: its definition and its desired runtime state."""

    name: str
    xml: str  # declared definition, virtctl's runtime metadata removed
    source: Source
    state: DomainState = DomainState.RUNNING
    autostart: bool = False
    uuid: str | None = None  # declared uuid, canonical dashed lower-case
    networks: tuple[str, ...] = ()  # networks used by <interface type='network'>
    macs: tuple[str, ...] = ()  # declared MACs, lower-case
    update_policy: UpdatePolicy | None = None  # None: follow --allow-restart
    shutdown_timeout: float | None = None  # seconds; None: follow --shutdown-timeout
    connect: str | None = None  # host URI or Hosts alias; None: the command line's
    labels: Labels = ()  # `labels:`, sorted (key, value) pairs; kept in the owner mark
    # Checkpoint and health rules as sorted (key, value) text pairs: ("checkpoint", "yes"),
    # ("health-agent", "yes"), ...; typed by virtctl.checkpoints.safety_of.
    safety: tuple[tuple[str, str], ...] = ()
    # (what, line) for errors to point at the key or element they are about: each
    # network reference ("network:NAME") and the fields host checks name ("vcpu",
    # "os/type/@arch", "devices/tpm"...); only labels, like `source` (not in the digest).
    lines: tuple[tuple[str, int], ...] = field(default=(), compare=False)
    digest: str = field(init=False, repr=False, compare=False)  # see spec_digest
    # The trees parsed from the XML above, and what checks derive from them, this run
    # (reconciler/trees.py): never compared, saved or shown.
    parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", spec_digest(self))

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.DOMAIN, self.name)

    def line_of(self, what: str) -> int | None:
        """The line of `what` ("network:NAME", or a field path), else the spec's own."""
        return next((line for name, line in self.lines if name == what), self.source.line)


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """A virtual network as declared."""

    name: str
    xml: str
    source: Source
    active: bool = True
    autostart: bool = False
    uuid: str | None = None
    bridge: str | None = None
    update_policy: UpdatePolicy | None = None
    connect: str | None = None  # host URI or Hosts alias; None: the command line's
    labels: Labels = ()
    digest: str = field(init=False, repr=False, compare=False)  # see spec_digest
    # The trees parsed from the XML above, and what checks derive from them, this run
    # (reconciler/trees.py): never compared, saved or shown.
    parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", spec_digest(self))

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.NETWORK, self.name)


class DeletePolicy(StrEnum):
    """What `delete` and `--prune` do with a managed volume's data."""

    RETAIN = "retain"  # the default: stop managing it, keep the volume and its data
    DELETE = "delete"  # delete the volume and its data


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A storage pool as declared: libvirt pool XML and its desired runtime state."""

    name: str
    xml: str
    source: Source
    active: bool = True
    autostart: bool = False
    build: bool = True  # make the pool's storage (a dir pool's directory) when creating it
    uuid: str | None = None
    update_policy: UpdatePolicy | None = None
    connect: str | None = None
    labels: Labels = ()
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", spec_digest(self))

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.POOL, self.name)


@dataclass(frozen=True, slots=True)
class VolumeContent:
    """Where a volume's initial content comes from: a local file, an http(s) URL, or
    bytes virtctl made (a cloud-init seed). `checksum` ('sha256:HEX') is verified
    before anything is written; for `data` it is the data's own."""

    file: str | None = None
    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    checksum: str | None = None

    def __post_init__(self) -> None:
        if self.data is not None and self.checksum is None:  # so spec digests cover it
            object.__setattr__(self, "checksum",
                               "sha256:" + hashlib.sha256(self.data).hexdigest())


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """A volume as declared: libvirt volume XML (name, capacity, target format, backing
    store), its pool, where its content comes from, and what deleting it may do."""

    pool: str
    name: str
    xml: str
    source: Source
    content: VolumeContent | None = None
    delete_policy: DeletePolicy = DeletePolicy.RETAIN
    connect: str | None = None
    labels: Labels = ()
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", spec_digest(self))

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.VOLUME, f"{self.pool}/{self.name}")


Spec = DomainSpec | NetworkSpec


_LABELS = frozenset({"source", "lines"})  # say where a spec came from, not what


def spec_digest(spec: DomainSpec | NetworkSpec | PoolSpec | VolumeSpec) -> str:
    """A hash of every field that decides a spec's plan: all but `source`, which only
    labels where it came from. Computed once, when the spec is made (`replace` makes a
    new spec, so it can never go stale), because every no-op run needs it."""
    text = "\0".join([type(spec).__name__, *(
        str(getattr(spec, f.name)) for f in fields(spec)
        if f.init and f.name not in _LABELS
        and not (f.name == "labels" and not spec.labels))])  # digests from before labels
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class HostAlias:
    """A name for a host connection, from a `kind: Hosts` document."""

    name: str
    uri: str
    source: Source


@dataclass(frozen=True, slots=True)
class Desired:
    """Everything the loaded specs declare, keyed by name."""

    domains: Mapping[str, DomainSpec] = field(default_factory=dict)
    networks: Mapping[str, NetworkSpec] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # e.g. xm keys with no libvirt equivalent
    hosts: Mapping[str, HostAlias] = field(default_factory=dict)  # from 'kind: Hosts'
    pools: Mapping[str, PoolSpec] = field(default_factory=dict)
    volumes: Mapping[str, VolumeSpec] = field(default_factory=dict)  # by "POOL/NAME"

    def __iter__(self) -> Iterator[Spec]:
        yield from self.networks.values()
        yield from self.domains.values()

    def __len__(self) -> int:
        return len(self.domains) + len(self.networks)


@dataclass(frozen=True, slots=True)
class LastApplied:
    """What virtctl last applied to an object: the declared definition (runtime metadata
    removed, identity not filled in), kept encoded as stored so reading a snapshot costs
    nothing (`metadata.declared_xml` decodes it), and the declared runtime state."""

    encoded: str  # zlib-compressed declared XML, base64
    state: str = ""  # domains: running | shutoff | paused
    autostart: bool | None = None
    active: bool | None = None  # networks


@dataclass(frozen=True, slots=True)
class Ownership:
    """virtctl's record inside a live object's metadata: present means managed."""

    spec_hash: str = ""
    source: str = ""
    commit: str = ""
    last_applied: LastApplied | None = None  # None when the mark predates the record
    # The apply set that applied it (--set, else named after the spec paths); --prune
    # deletes only objects of its own set. "" for marks older than sets.
    apply_set: str = ""
    labels: Labels = ()  # the spec's labels when it was applied (selectors match them)


@dataclass(frozen=True, slots=True)
class LiveDomain:
    name: str
    uuid: str
    xml: str  # persistent (inactive) definition; the running one for transient domains
    state: DomainState
    autostart: bool = False
    persistent: bool = True
    id: int | None = None
    owner: Ownership | None = None
    running_xml: str | None = None  # definition the running guest uses, when active
    # The trees parsed from the XML above, and what checks derive from them, this run
    # (reconciler/trees.py): never compared, saved or shown.
    parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    @property
    def managed(self) -> bool:
        return self.owner is not None

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.DOMAIN, self.name)


@dataclass(frozen=True, slots=True)
class LiveNetwork:
    name: str
    uuid: str
    xml: str
    active: bool
    autostart: bool = False
    persistent: bool = True
    owner: Ownership | None = None
    # The definition an active network runs, where the host keeps it apart from the
    # persistent one (libvirt's network driver, the sim; not libvirt's test driver).
    running_xml: str | None = None
    # The trees parsed from the XML above, and what checks derive from them, this run
    # (reconciler/trees.py): never compared, saved or shown.
    parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                   compare=False)

    @property
    def managed(self) -> bool:
        return self.owner is not None

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.NETWORK, self.name)


# libvirt keeps no metadata on storage pools or volumes: virtctl keeps its records for a
# pool and its volumes in one small volume of that pool, named so (docs/storage.md).
STATE_VOLUME = "virtctl-state.json"


@dataclass(frozen=True, slots=True)
class LivePool:
    """A storage pool as a driver reports it. `record` is the text of the pool's
    STATE_VOLUME (virtctl's records of the pool and its volumes), when the pool is active
    and has one; drivers read it and never interpret it."""

    name: str
    uuid: str
    xml: str
    active: bool
    autostart: bool = False
    persistent: bool = True
    record: str | None = None

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.POOL, self.name)


@dataclass(frozen=True, slots=True)
class LiveVolume:
    """A volume of an active pool (STATE_VOLUME excluded): its XML (libvirt's, with
    capacity, allocation, target format and backing store) and sizes in bytes."""

    pool: str
    name: str
    xml: str
    capacity: int
    allocation: int

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(Kind.VOLUME, f"{self.pool}/{self.name}")


@dataclass(frozen=True, slots=True)
class Storage:
    """A host's storage as `Reader.storage()` reads it: pools by name, the volumes of
    its active pools by "POOL/NAME"."""

    pools: Mapping[str, LivePool] = field(default_factory=dict)
    volumes: Mapping[str, LiveVolume] = field(default_factory=dict)


LiveObject = LiveDomain | LiveNetwork


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A host's size (`Reader.node_info`): what DomainSet placement weighs."""

    memory_kib: int  # physical memory
    free_kib: int  # free now (libvirt: the node's free memory; the sim: its memory less
    # what its running guests take)
    cpus: int


@dataclass(frozen=True, slots=True)
class Live:
    """A snapshot of one hypervisor connection, keyed by name.

    `fingerprint`, when a driver gives one, is a hash of everything the snapshot was
    read from: every object's definitions, state, autostart and persistence (not the
    ids a start changes). Equal fingerprints mean equal snapshots, so a no-op run can
    recognise a host it found in sync before without building or comparing objects
    (see api and reconciler/memo.py); drivers may build the mappings lazily for that
    reason. Empty means the driver gives none."""

    domains: Mapping[str, LiveDomain] = field(default_factory=dict)
    networks: Mapping[str, LiveNetwork] = field(default_factory=dict)
    fingerprint: str = ""

    def get(self, key: ObjectKey) -> LiveObject | None:
        table: Mapping[str, LiveObject] = (
            self.domains if key.kind is Kind.DOMAIN else self.networks
        )
        return table.get(key.name)
