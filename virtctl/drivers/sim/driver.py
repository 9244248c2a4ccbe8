"""`sim`: the embedded hypervisor, virtctl's default driver.

Not a mock: a small hypervisor with libvirt's semantics and no guests inside. State
lives on disk (simstore.py) so it survives across processes; defaults are filled on
define as libvirt fills them (simdefaults.py); what libvirt refuses, the sim refuses with
the same kind of structured error. Faults can be injected for tests through
`faults.json` in the state directory, or `SimDriver.inject_fault`:

    [{"op": "start", "kind": "domain", "name": "web", "action": "fail"},
     {"op": "shutdown", "kind": "domain", "name": "db", "action": "ignore"},
     {"op": "define", "kind": "network", "name": "lan", "action": "stall", "seconds": 2},
     {"op": "detach", "kind": "domain", "name": "web", "action": "ignore"}]

`fail` raises a DriverError, `stall` sleeps before doing the call, `ignore` makes a
graceful shutdown a no-op (a guest that ignores ACPI), a live detach leave the device
in place (a guest that never releases it; the call still succeeds, as QEMU's does) and
`set_memory` leave the running guest's current memory as it was (no balloon driver). Ops
are the method names but `attach`, `detach`, `update`, `set_vcpus`, `update_network`,
`set_running_note` for the live calls, `autostart` for set_autostart, `build`,
`create_volume`, `delete_volume`, `resize_volume`, `upload` for storage (kind `volume`,
name "POOL/NAME"); `upload` with `"after": BYTES` fails once that many bytes are written
(the volume keeps its old content).

Live changes (simlivecalls.py over simlive.py and simnetlive.py) act on a domain's
`running_xml` (while it runs) and/or its persistent `xml`, and likewise on a network's
`running_xml` (while active). Storage pools and volumes (simstorage.py) support dir
pools only; their data lives in the state directory, never at the pool's target path.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import uuid as uuidlib
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

from lxml import etree

from ... import metadata
from ...capabilities import HostCapabilities, check_domain, parse_capabilities
from .snapshots import SimSnapshots
from ...errors import DriverError, ErrorCode, ErrorDomain, SpecError
from ...fileio import open_private, state_root
from ...model import DomainState, Kind, Live, LiveDomain, LiveNetwork, NodeInfo, Ownership
from ...uri import ConnectionURI
from ...xmlutil import parse, tostring
from ..base import Event, EventCallback, EventType
from .caps import CAPABILITIES_XML, DOMAIN_CAPABILITIES_XML
from .defaults import DefaultsError, fill_domain, fill_network, to_kib
from .livecalls import SimLiveCalls
from .storage import SimStorage
from .store import Record, SimStore, faults_named
from .rawread import records_fingerprint


#: A sim host's size unless `node.json` says otherwise (SimDriver.set_node).
NODE_MEMORY_KIB = 16 * 1024 * 1024
NODE_CPUS = 8


def _current(root: etree._Element) -> etree._Element:
    found = root.find("currentMemory")
    return found if found is not None else root.find("memory")  # type: ignore[return-value]


def _error(message: str, code: ErrorCode) -> DriverError:
    return DriverError(message, code=code, domain=ErrorDomain.SIM)


_NO_SUCH = {Kind.DOMAIN: ErrorCode.NO_SUCH_DOMAIN, Kind.NETWORK: ErrorCode.NO_SUCH_NETWORK,
            Kind.POOL: ErrorCode.NO_SUCH_POOL, Kind.VOLUME: ErrorCode.NO_SUCH_VOLUME}


def _no_such(kind: Kind, name: str) -> DriverError:
    return _error(f"{kind} '{name}' not found", _NO_SUCH[kind])


def _owner(data: Record) -> Ownership | None:
    owner = data.get("owner")
    return metadata.owner_from_dict(owner) if isinstance(owner, dict) else None


def _owner_record(root: etree._Element) -> dict[str, Any] | None:
    found = metadata.read_owner(root)
    return None if found is None else metadata.owner_to_dict(found)


EVENT_POLL = 0.05  # seconds between looks at each subscribed events.log...
EVENT_POLL_IDLE = 0.2  # ...or this once none had news for EVENT_IDLE_AFTER seconds
EVENT_IDLE_AFTER = 2.0


class _Subscription:
    __slots__ = ("log", "callback", "offset", "inode", "active")

    def __init__(self, log: Path, callback: EventCallback) -> None:
        self.log = str(log)  # a str: os.lstat takes it as it is (a Path is converted)
        self.callback = callback
        self.active = True
        try:
            info = os.lstat(self.log)
            self.offset, self.inode = info.st_size, info.st_ino
        except OSError:
            self.offset, self.inode = 0, 0

    def poll(self) -> bool:
        """Deliver the complete lines appended since the last look; whether the log
        moved. An unchanged log costs one lstat (a fleet member follows hundreds of sim
        hosts: a thread, an open and a read per host every EVENT_POLL was most of an
        idle member's CPU)."""
        try:
            info = os.lstat(self.log)
        except OSError:  # not written yet, or gone (rotated)
            self.offset = 0
            return False
        if info.st_ino != self.inode:  # rotated (simstore.py): a new log, from its start
            self.offset, self.inode = 0, info.st_ino
        if info.st_size == self.offset:
            return False
        try:  # never through a symlink, never blocking on a FIFO (simstore.py)
            with os.fdopen(open_private(self.log, os.O_RDONLY), "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # rotated
                    self.offset = 0
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # gone (rotated), or not a file the sim wrote
            self.offset = 0
            return True
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                data = json.loads(line)
                event = Event(EventType(data["type"]), Kind(data["kind"]), data["name"])
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line: the watcher's resync covers it
            self.callback(event)
        return True


class _EventPump:
    """One thread per process polls every sim subscription (as libvirt runs one event
    loop per process), started with the first and ended with the last."""

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []
        self._mutex = threading.Lock()  # guards _subs and _thread
        self._delivering = threading.Lock()  # held while callbacks run
        self._thread: threading.Thread | None = None

    def add(self, log: Path, callback: EventCallback) -> Callable[[], None]:
        sub = _Subscription(log, callback)
        with self._mutex:
            self._subs = [*self._subs, sub]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sim-events",
                                                daemon=True)
                self._thread.start()

        def unsubscribe() -> None:
            with self._mutex:
                sub.active = False
                self._subs = [s for s in self._subs if s is not sub]
            if threading.current_thread() is not self._thread:
                with self._delivering:
                    pass  # a delivery under way ends first: none comes after this returns

        return unsubscribe

    def _run(self) -> None:
        # Every EVENT_POLL while events come, every EVENT_POLL_IDLE once the hosts have
        # been quiet a while (still well within a second for a change made outside).
        last_news = time.monotonic()
        while True:
            quiet = time.monotonic() - last_news > EVENT_IDLE_AFTER
            time.sleep(EVENT_POLL_IDLE if quiet else EVENT_POLL)
            with self._mutex:
                subs = self._subs
                if not subs:
                    self._thread = None
                    return
            news = False
            with self._delivering:
                for sub in subs:
                    if sub.active:  # not unsubscribed since this round began
                        news = sub.poll() or news
            if news:
                last_news = time.monotonic()


_PUMP = _EventPump()


class SimDriver(SimLiveCalls, SimStorage, SimSnapshots):
    """The embedded driver; see the module docstring."""

    def __init__(
        self, uri: ConnectionURI, *, readonly: bool = False, env: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if env is None else env
        self.uri = str(uri) or "sim:///default"
        self.readonly = readonly
        name = uri.path.strip("/") or "default"
        if "/" in name or name in (".", ".."):
            raise SpecError(
                f"{self.uri}: a sim host name is one path segment, e.g. sim:///lab",
                code=ErrorCode.INVALID_URI,
                domain=ErrorDomain.URI,
            )
        self.store = SimStore(
            state_root(env) / "sim" / name, fsync=env.get("VIRTCTL_SIM_FSYNC", "1") != "0"
        )
        self._caps: HostCapabilities = parse_capabilities(CAPABILITIES_XML)

    # -- reading -------------------------------------------------------------------

    def capabilities(self) -> str:
        return CAPABILITIES_XML

    def domain_capabilities(self, dom_type: str, arch: str | None,
                            machine: str | None) -> str | None:
        return DOMAIN_CAPABILITIES_XML

    def node_info(self) -> NodeInfo:
        """The sim host's size from `node.json` in its state directory (`set_node`;
        default NODE_MEMORY_KIB and NODE_CPUS); free memory is that less the current
        memory of its running and paused guests, as a host's would be."""
        with self.store.locked(exclusive=False):
            node = self.store.read_json("node.json") or {}
            used = sum(to_kib(_current(parse(d["running_xml"] or d["xml"])))
                       for _, d in self.store.all(Kind.DOMAIN) if DomainState(d["state"]).active)
        memory = int(node.get("memoryKiB", NODE_MEMORY_KIB))
        return NodeInfo(memory_kib=memory, free_kib=max(memory - used, 0),
                        cpus=int(node.get("cpus", NODE_CPUS)))

    def set_node(self, *, memory_kib: int, cpus: int) -> None:
        """Size this sim host (tests of placement by memory): `node.json`."""
        with self.store.locked(exclusive=True):
            self.store.write_json("node.json", {"memoryKiB": memory_kib, "cpus": cpus})

    def snapshot(self) -> Live:
        with self.store.locked(exclusive=False):
            read_domains = list(self.store.all_read(Kind.DOMAIN))
            read_networks = list(self.store.all_read(Kind.NETWORK))
        domains = {name: self._live_domain(name, d) for name, d, _ in read_domains}
        networks = {
            name: LiveNetwork(
                name=name,
                uuid=d["uuid"],
                xml=d["xml"],
                active=d["active"],
                autostart=d["autostart"],
                persistent=d["persistent"],
                owner=_owner(d),
                running_xml=d.get("running_xml"),
            )
            for name, d, _ in read_networks
        }
        # The fingerprint is of the records' bytes (everything a snapshot holds, ids
        # too): the no-op fast path (cli/noop.py) reads the same bytes without the model
        # or a JSON parse and hashes them with the same function (rawread.py).
        return Live(domains=domains, networks=networks, fingerprint=records_fingerprint(
            [(name, raw) for name, _, raw in read_domains],
            [(name, raw) for name, _, raw in read_networks]))

    def domain_state(self, name: str) -> DomainState | None:
        with self.store.locked(exclusive=False):
            record = self.store.get(Kind.DOMAIN, name)
        return None if record is None else DomainState(record["state"])

    @staticmethod
    def _live_domain(name: str, d: Record) -> LiveDomain:
        return LiveDomain(
            name=name,
            uuid=d["uuid"],
            xml=d["xml"],
            state=DomainState(d["state"]),
            autostart=d["autostart"],
            persistent=d["persistent"],
            id=d["id"],
            owner=_owner(d),
            running_xml=d["running_xml"],
        )

    def close(self) -> None:
        return None

    # -- writing -------------------------------------------------------------------

    def define(self, kind: Kind, xml: str) -> None:
        root = self._parse(xml)
        name = (root.findtext("name") or "").strip()
        if not name:
            raise _error(f"{kind} definition has no <name>", ErrorCode.INVALID_SPEC)
        if "/" in name:
            raise _error(f"{kind} name '{name}' contains '/'", ErrorCode.INVALID_SPEC)
        self._mutate("define", kind, name, lambda: self._define(kind, name, root))

    def undefine(self, kind: Kind, name: str) -> None:
        self._mutate("undefine", kind, name, lambda: self._undefine(kind, name))

    def start(self, kind: Kind, name: str) -> None:
        self._mutate("start", kind, name, lambda: self._start(kind, name))

    def shutdown(self, kind: Kind, name: str) -> None:
        if kind is not Kind.DOMAIN:
            self.destroy(kind, name)
            return
        self._mutate("shutdown", kind, name, lambda: self._stop(kind, name, graceful=True))

    def destroy(self, kind: Kind, name: str) -> None:
        self._mutate("destroy", kind, name, lambda: self._stop(kind, name, graceful=False))

    def suspend(self, name: str) -> None:
        self._mutate("suspend", Kind.DOMAIN, name, lambda: self._pause(name, pause=True))

    def resume(self, name: str) -> None:
        self._mutate("resume", Kind.DOMAIN, name, lambda: self._pause(name, pause=False))

    def set_autostart(self, kind: Kind, name: str, enabled: bool) -> None:
        self._mutate("autostart", kind, name, lambda: self._autostart(kind, name, enabled))

    def set_memory(self, name: str, kib: int) -> None:
        self._mutate("set_memory", Kind.DOMAIN, name, lambda: self._set_memory(name, kib))

    def inject_fault(
        self, op: str, kind: Kind, name: str, *, action: str = "fail", seconds: float = 0.0,
        after: int = 0,
    ) -> None:
        """Make a later call fail, stall or (shutdown only) be ignored; see module doc."""
        with self.store.locked(exclusive=True):
            faults = self.store.read_json("faults.json") or []
            fault = {"op": op, "kind": str(kind), "name": name, "action": action,
                     "seconds": seconds}
            if after:
                fault["after"] = after
            faults.append(fault)
            self.store.write_json("faults.json", faults)

    def clear_faults(self) -> None:
        with self.store.locked(exclusive=True):
            self.store.write_json("faults.json", [])

    # -- the fleet's pass log --------------------------------------------------------

    def record_pass(self, member: str, started: float, ended: float) -> None:
        """Append one line to passes.log in the state directory: which fleet member ran
        a pass on this host, from when to when (Unix time). The fleet tests read it to
        prove no two passes on one host overlapped (docs/fleet.md); one write(2) of a
        line under O_APPEND, so lines from several processes never interleave."""
        line = json.dumps({"member": member, "start": started, "end": ended}) + "\n"
        fd = open_private(self.store.root / "passes.log",
                          os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    # -- events --------------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Deliver events written by any process to this state directory (within about
        EVENT_POLL seconds; one thread of this process polls every subscription)."""
        return _PUMP.add(self.store.root / "events.log", callback)

    # -- internals (called with the store locked) -------------------------------------

    def _parse(self, xml: str) -> etree._Element:
        try:
            return parse(xml, source="<define>")
        except SpecError as exc:
            raise _error(f"XML error: {exc.message}", ErrorCode.INVALID_SPEC) from None

    def _refuse_readonly(self, op: str, kind: Kind, name: str) -> None:
        if self.readonly:
            raise _error(
                f"cannot {op} {kind} '{name}': the connection is read-only",
                ErrorCode.OPERATION_INVALID,
            )

    def _mutate(self, op: str, kind: Kind, name: str, body: Callable[[], EventType | None]) -> None:
        self._refuse_readonly(op, kind, name)
        self._apply_fault(op, kind, name)
        with self.store.locked(exclusive=True), self.store.event_log() as log, \
                faults_named():  # any file left unnamed
            event = body()
            if event is not None:
                log({"type": str(event), "kind": str(kind), "name": name})

    def _fault(self, op: str, kind: Kind, name: str) -> dict[str, Any] | None:
        for fault in self.store.read_json("faults.json") or []:
            if fault.get("op") == op and fault.get("kind") == kind and fault.get("name") == name:
                return dict(fault)
        return None

    def _apply_fault(self, op: str, kind: Kind, name: str) -> None:
        fault = self._fault(op, kind, name)
        if fault is None:
            return
        if fault["action"] == "stall":
            time.sleep(float(fault.get("seconds", 1.0)))
        elif fault["action"] == "fail":
            raise _error(
                fault.get("message") or f"injected failure: {op} {kind} '{name}'",
                ErrorCode.OPERATION_FAILED,
            )

    def _holder(self, kind: Kind, what: str, value: str) -> str | None:
        """Which object holds a unique value; the index is checked against the record, so
        an entry left by a crash between the two writes is ignored."""
        name = self.store.holder(f"{kind}-{what}", value)
        if name is None:
            return None
        record = self.store.get(kind, name)
        if record is None or record.get(what if what == "uuid" else "bridge") != value:
            return None
        return name

    def _forget(self, kind: Kind, name: str, record: Record) -> None:
        self.store.delete(kind, name)
        self.store.release(f"{kind}-uuid", record["uuid"])
        if record.get("bridge"):
            self.store.release(f"{kind}-bridge", record["bridge"])

    def _require(self, kind: Kind, name: str) -> Record:
        record = self.store.get(kind, name)
        if record is None:
            raise _no_such(kind, name)
        return record

    def _define(self, kind: Kind, name: str, root: etree._Element) -> EventType | None:
        existing = self.store.get(kind, name)
        declared = (root.findtext("uuid") or "").strip()
        try:
            uuid = str(uuidlib.UUID(declared)) if declared else None
        except ValueError:
            raise _error(f"malformed uuid '{declared}'", ErrorCode.INVALID_SPEC) from None
        # As libvirt: a definition without <uuid> gets a fresh one, which then clashes
        # with an existing object of that name. Whoever redefines must carry the uuid.
        uuid = uuid or str(uuidlib.uuid4())
        if existing is not None and uuid != existing["uuid"]:
            raise _error(
                f"{kind} '{name}' already exists with uuid {existing['uuid']}",
                ErrorCode.OPERATION_FAILED,
            )
        other = self._holder(kind, "uuid", uuid)
        if other is not None and other != name:
            raise _error(
                f"{kind} '{other}' already exists with uuid {uuid}", ErrorCode.OPERATION_FAILED
            )
        if kind is Kind.POOL:
            self._define_pool(name, root, uuid, existing)
            return None  # no storage events (libvirt's are not relayed)
        if kind is Kind.DOMAIN:
            self._define_domain(name, root, uuid, existing)
        else:
            self._define_network(name, root, uuid, existing)
        return EventType.DEFINED if existing is None else EventType.CHANGED

    def _define_domain(
        self, name: str, root: etree._Element, uuid: str, existing: Record | None
    ) -> None:
        if root.tag != "domain":
            raise _error(f"expected <domain>, got <{root.tag}>", ErrorCode.INVALID_SPEC)
        reason = check_domain(root, self._caps)
        if reason:
            raise _error(reason, ErrorCode.CONFIG_UNSUPPORTED)
        n_ifaces = len(root.findall("devices/interface"))
        suffixes = [":".join(secrets.token_hex(1) for _ in range(3)) for _ in range(n_ifaces)]
        try:
            fill_domain(root, uuid=uuid, mac_suffixes=suffixes, caps=self._caps)
        except DefaultsError as exc:
            raise _error(str(exc), ErrorCode.INVALID_SPEC) from None
        record = existing or {
            "running_xml": None, "state": "shutoff", "id": None, "autostart": False,
        }
        record.update(
            uuid=uuid, xml=tostring(root), persistent=True, owner=_owner_record(root)
        )
        # Claim before the record: a crash in between leaves a claim without its record,
        # which _holder ignores; the other order would leave a uuid nobody guards.
        self.store.claim("domain-uuid", uuid, name)
        self.store.put(Kind.DOMAIN, name, record)

    def _define_network(
        self, name: str, root: etree._Element, uuid: str, existing: Record | None
    ) -> None:
        if root.tag != "network":
            raise _error(f"expected <network>, got <{root.tag}>", ErrorCode.INVALID_SPEC)
        bridge = root.find("bridge")
        wanted = bridge.get("name") if bridge is not None else None
        old_bridge = existing.get("bridge") if existing is not None else None
        user = self._holder(Kind.NETWORK, "bridge", wanted) if wanted else None
        if user is not None and user != name:
            raise _error(
                f"bridge name '{wanted}' is already in use by network '{user}'",
                ErrorCode.OPERATION_FAILED,
            )
        free = old_bridge or next(
            f"virbr{i}" for i in range(1 << 16)
            if self._holder(Kind.NETWORK, "bridge", f"virbr{i}") is None
        )
        fill_network(
            root, uuid=uuid, bridge=free,
            mac_suffix=":".join(secrets.token_hex(1) for _ in range(3)),
        )
        final = root.find("bridge")
        bridge_name = final.get("name") if final is not None else None
        record = existing or {"active": False, "autostart": False}
        record.update(uuid=uuid, xml=tostring(root), persistent=True, owner=_owner_record(root),
                      bridge=bridge_name)
        # Claims first, the old bridge's release last (see _define_domain).
        if bridge_name:
            self.store.claim("network-bridge", bridge_name, name)
        self.store.claim("network-uuid", uuid, name)
        self.store.put(Kind.NETWORK, name, record)
        if old_bridge and old_bridge != bridge_name:
            self.store.release("network-bridge", old_bridge)

    def _undefine(self, kind: Kind, name: str) -> EventType | None:
        record = self._require(kind, name)
        if not record["persistent"]:
            raise _error(f"cannot undefine transient {kind} '{name}'", ErrorCode.OPERATION_INVALID)
        if kind is Kind.POOL:
            if record["active"]:  # as libvirt (unlike a domain's undefine)
                raise _error(f"storage pool '{name}' is still active",
                             ErrorCode.OPERATION_INVALID)
            self._forget(kind, name, record)
            return None
        if kind is Kind.NETWORK and record["active"]:
            raise _error(
                f"network '{name}' is still active; destroy it first", ErrorCode.OPERATION_INVALID
            )
        if kind is Kind.DOMAIN and self.has_snapshots(record["uuid"]):
            # As libvirt: a guest's snapshots are deleted (or forgotten) first.
            raise _error(f"cannot undefine domain '{name}': it has snapshots",
                         ErrorCode.OPERATION_INVALID)
        if kind is Kind.DOMAIN and DomainState(record["state"]).active:
            # As libvirt: undefining a running guest leaves it running, transient.
            record.update(persistent=False, autostart=False)
            self.store.put(kind, name, record)
        else:
            self._forget(kind, name, record)
        return EventType.UNDEFINED

    def _start(self, kind: Kind, name: str) -> EventType | None:
        if kind is Kind.POOL:
            self._start_pool(name)
            return None
        record = self._require(kind, name)
        if kind is Kind.NETWORK:
            if record["active"]:
                raise _error(f"network '{name}' is already active", ErrorCode.OPERATION_INVALID)
            # As libvirt: the network runs this definition until it is stopped, whatever
            # is defined meanwhile.
            record.update(active=True, running_xml=record["xml"])
            self.store.put(kind, name, record)
            return EventType.STARTED
        if DomainState(record["state"]).active:
            raise _error(f"domain '{name}' is already running", ErrorCode.OPERATION_INVALID)
        root = parse(record["xml"])
        for iface in root.iterfind("devices/interface[@type='network']"):
            source = iface.find("source")
            net_name = source.get("network", "") if source is not None else ""
            net = self.store.get(Kind.NETWORK, net_name)
            if net is None:
                raise _no_such(Kind.NETWORK, net_name)
            if not net["active"]:
                raise _error(f"network '{net_name}' is not active", ErrorCode.OPERATION_INVALID)
        dom_id = self.store.next_id()
        root.set("id", str(dom_id))
        record.update(state="running", id=dom_id, running_xml=tostring(root))
        self.store.put(kind, name, record)
        self.guest_writes(name, record)  # a simulated guest writing its disk as it boots
        return EventType.STARTED

    def _stop(self, kind: Kind, name: str, *, graceful: bool) -> EventType | None:
        if kind is Kind.POOL:
            self._stop_pool(name)
            return None
        record = self._require(kind, name)
        if kind is Kind.NETWORK:
            if not record["active"]:
                raise _error(f"network '{name}' is not active", ErrorCode.OPERATION_INVALID)
            if record["persistent"]:
                record.update(active=False, running_xml=None)
                self.store.put(kind, name, record)
            else:
                self._forget(kind, name, record)
            return EventType.STOPPED
        if not DomainState(record["state"]).active:
            raise _error(f"domain '{name}' is not running", ErrorCode.OPERATION_INVALID)
        if graceful:
            fault = self._fault("shutdown", kind, name)
            if fault is not None and fault["action"] == "ignore":
                return None  # the guest ignores the ACPI request, as some do
        if record["persistent"]:
            record.update(state="shutoff", id=None, running_xml=None)
            self.store.put(kind, name, record)
        else:
            self._forget(kind, name, record)
        return EventType.STOPPED

    def _pause(self, name: str, *, pause: bool) -> EventType:
        record = self._require(Kind.DOMAIN, name)
        state = DomainState(record["state"])
        if pause and state is not DomainState.RUNNING:
            raise _error(f"domain '{name}' is not running", ErrorCode.OPERATION_INVALID)
        if not pause and state is not DomainState.PAUSED:
            raise _error(f"domain '{name}' is not paused", ErrorCode.OPERATION_INVALID)
        record["state"] = "paused" if pause else "running"
        self.store.put(Kind.DOMAIN, name, record)
        return EventType.SUSPENDED if pause else EventType.RESUMED

    def _set_memory(self, name: str, kib: int) -> EventType:
        record = self._require(Kind.DOMAIN, name)
        # `ignore`: a guest without a balloon driver; the call succeeds (as QEMU's does)
        # and only the definition changes.
        ignored = (self._fault("set_memory", Kind.DOMAIN, name) or {}).get("action") == "ignore"
        fields = ["xml"] + (["running_xml"] if record["running_xml"] and not ignored else [])
        for field in fields:
            root = parse(record[field])
            memory, current = root.find("memory"), root.find("currentMemory")
            if memory is None or current is None:
                raise _error(f"domain '{name}' has no memory settings", ErrorCode.INVALID_SPEC)
            if kib > to_kib(memory):
                raise _error(f"cannot set memory of '{name}' above its maximum ({kib} KiB)",
                             ErrorCode.OPERATION_INVALID)
            current.text, current.attrib["unit"] = str(kib), "KiB"
            record[field] = tostring(root)
        self.store.put(Kind.DOMAIN, name, record)
        return EventType.CHANGED

    def _autostart(self, kind: Kind, name: str, enabled: bool) -> EventType | None:
        record = self._require(kind, name)
        if not record["persistent"]:
            raise _error(
                f"cannot set autostart for transient {kind} '{name}'", ErrorCode.OPERATION_INVALID
            )
        record["autostart"] = enabled
        self.store.put(kind, name, record)
        return None
