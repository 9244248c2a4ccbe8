"""The sim's snapshots and its simulated guest: mixed into `SimDriver`.

A sim snapshot holds what a libvirt one does: the persistent definition, a copy of the
data of each writable disk the sim stores (a volume of a sim pool), and, when asked,
the running state (the running definition; the sim has no memory to save). It lives in
the state directory under snapshots/<domain uuid>/: the disk copies first, then the
record (written atomically), so a crash leaves either no snapshot or a whole one.
Undefining a guest that has snapshots is refused, as libvirt refuses it.

The guest inside is simulated: a running guest answers its agent's ping when its
definition has the agent channel, has every TCP port open and cloud-init done, unless
a fault says otherwise (faults.json, see sim.py):

    {"op": "agent", "kind": "domain", "name": "web", "action": "fail", "match": "q35"}

`agent`, `tcp` and `cloudinit` faults make that probe fail (or, `stall`, answer slowly)
while the guest runs; with
`match`, only while its running definition contains that text (a guest that breaks
under one definition and is fine under the old one). A `boot` fault with action `write`
makes the guest write to a disk as it boots:

    {"op": "boot", "kind": "domain", "name": "web", "action": "write", "target": "vda",
     "data": "AFTER", "match": "q35"}
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ... import metadata
from ..base import EventType
from ...errors import DriverError, ErrorCode, ErrorDomain
from ...fileio import private_dir, read_private, write_atomic
from ...model import DomainState, Kind
from ...xmlutil import parse
from ...checkpoints import AGENT_CHANNEL, SnapshotInfo

if TYPE_CHECKING:
    from .store import SimStore


def _error(message: str, code: ErrorCode) -> DriverError:
    return DriverError(message, code=code, domain=ErrorDomain.SIM)


class SimSnapshots:
    store: SimStore
    readonly: bool

    if TYPE_CHECKING:
        def _require(self, kind: Kind, name: str) -> dict[str, Any]: ...
        def _fault(self, op: str, kind: Kind, name: str) -> dict[str, Any] | None: ...
        def _mutate(self, op: str, kind: Kind, name: str, body: Any) -> None: ...
        def _file_for(self, path: str) -> Path | None: ...
        def _stop(self, kind: Kind, name: str, *, graceful: bool) -> Any: ...

    # -- where ------------------------------------------------------------------------

    def _snap_dir(self, uuid: str) -> Path:
        return self.store.root / "snapshots" / quote(uuid, safe="")

    def _snap_records(self, uuid: str) -> list[dict[str, Any]]:
        folder = self._snap_dir(uuid)
        if not folder.is_dir():
            return []
        out = []
        for entry in sorted(os.listdir(folder)):
            if entry.endswith(".json") and not entry.startswith("."):
                try:
                    out.append(json.loads(read_private(folder / entry)))
                except (OSError, ValueError):
                    continue  # removed meanwhile, or a damaged record: not a snapshot
        return out

    def _disk_files(self, xml: str) -> dict[str, tuple[str, Path]]:
        """target -> (source path, the sim's data file) of each writable disk whose data
        the sim stores."""
        root = parse(xml)
        out: dict[str, tuple[str, Path]] = {}
        for disk in root.iterfind("devices/disk"):
            if disk.get("device", "disk") != "disk" or disk.find("readonly") is not None:
                continue
            target = disk.find("target")
            source = disk.find("source")
            if target is None or source is None:
                continue
            path = source.get("file")
            if path is None and source.get("pool") and source.get("volume"):
                pool = self.store.get(Kind.POOL, source.get("pool", ""))
                folder = (pool or {}).get("running_target") or (pool or {}).get("target")
                path = f"{folder}/{source.get('volume')}" if folder else None
            file = self._file_for(path) if path else None
            if file is not None and str(file).startswith(str(self.store.root)):
                out[target.get("dev", "")] = (path or "", file)
        return out

    # -- the Protocol -----------------------------------------------------------------

    def snapshots(self, name: str) -> tuple[SnapshotInfo, ...]:
        with self.store.locked(exclusive=False):
            record = self._require(Kind.DOMAIN, name)
            found = self._snap_records(record["uuid"])
        return tuple(sorted((SnapshotInfo(r["name"], float(r["created"]), r.get("description", ""),
                                          bool(r.get("memory")), r.get("xml", ""))
                             for r in found),
                            key=lambda s: (s.created, s.name)))

    def create_snapshot(self, name: str, snapshot: str, description: str, *,
                        memory: bool = False) -> None:
        def body() -> None:
            record = self._require(Kind.DOMAIN, name)
            folder = self._snap_dir(record["uuid"])
            private_dir(folder.parent)
            private_dir(folder)
            if any(r["name"] == snapshot for r in self._snap_records(record["uuid"])):
                raise _error(f"snapshot '{snapshot}' of domain '{name}' already exists",
                             ErrorCode.OPERATION_INVALID)
            running = DomainState(record["state"]).active
            if memory and not running:
                raise _error(f"domain '{name}' is not running: no memory state to save",
                             ErrorCode.OPERATION_INVALID)
            data = folder / (quote(snapshot, safe="") + ".d")
            private_dir(data)
            disks = {}
            for target, (path, file) in self._disk_files(record["xml"]).items():
                copy = data / quote(target, safe="")
                write_atomic(copy, read_private(file), fsync=self.store.fsync)
                disks[target] = path
            snap = {"name": snapshot, "created": time.time(), "description": description,
                    "memory": memory, "xml": record["xml"], "disks": disks,
                    "running_xml": record["running_xml"] if memory else None}
            write_atomic(folder / (quote(snapshot, safe="") + ".json"),
                         json.dumps(snap).encode(), fsync=self.store.fsync)

        self._mutate("create_snapshot", Kind.DOMAIN, name, body)

    def _find(self, name: str, snapshot: str) -> tuple[dict[str, Any], dict[str, Any]]:
        record = self._require(Kind.DOMAIN, name)
        for snap in self._snap_records(record["uuid"]):
            if snap["name"] == snapshot:
                return record, snap
        raise _error(f"domain '{name}' has no snapshot '{snapshot}'",
                     ErrorCode.OPERATION_INVALID)

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        """The definition and disks of `snapshot`; running again only if it saved the
        running state, else shut off (a running guest is stopped first, as libvirt)."""
        def body() -> Any:
            record, snap = self._find(name, snapshot)
            data = self._snap_dir(record["uuid"]) / (quote(snapshot, safe="") + ".d")
            if DomainState(record["state"]).active:
                self._stop(Kind.DOMAIN, name, graceful=False)
                record = self._require(Kind.DOMAIN, name)
            for target, path in snap.get("disks", {}).items():
                file = self._file_for(path)
                saved = data / quote(target, safe="")
                if file is None:  # the volume is gone: made again with the saved data
                    raise _error(f"cannot revert '{name}' to '{snapshot}': the disk {target} "
                                 f"({path}) no longer exists", ErrorCode.OPERATION_FAILED)
                write_atomic(file, read_private(saved), fsync=self.store.fsync)
            owner = metadata.read_owner(parse(snap["xml"]))
            record.update(xml=snap["xml"],
                          owner=None if owner is None else metadata.owner_to_dict(owner))
            if snap.get("memory") and snap.get("running_xml"):
                record.update(state="running", id=self.store.next_id(),
                              running_xml=snap["running_xml"])
            self.store.put(Kind.DOMAIN, name, record)
            return EventType.CHANGED

        self._mutate("revert_snapshot", Kind.DOMAIN, name, body)

    def delete_snapshot(self, name: str, snapshot: str, *, keep_data: bool = False) -> None:
        """Remove a snapshot; `keep_data`: its saved data is set aside (as libvirt's
        metadata-only delete leaves internal snapshots in their qcow2 files)."""
        def body() -> None:
            record, _ = self._find(name, snapshot)
            folder = self._snap_dir(record["uuid"])
            stem = quote(snapshot, safe="")
            if keep_data:
                kept = self.store.root / "snapshots-kept"
                private_dir(kept)
                os.replace(folder / (stem + ".json"), kept / f"{record['uuid']}-{stem}.json")
                if (folder / (stem + ".d")).is_dir():
                    os.replace(folder / (stem + ".d"), kept / f"{record['uuid']}-{stem}.d")
                return
            os.unlink(folder / (stem + ".json"))  # the record first: the snapshot is gone
            shutil.rmtree(folder / (stem + ".d"), ignore_errors=True)

        self._mutate("delete_snapshot", Kind.DOMAIN, name, body)

    def has_snapshots(self, uuid: str) -> bool:
        return bool(self._snap_records(uuid))

    # -- the simulated guest ----------------------------------------------------------

    def guest_writes(self, name: str, record: dict[str, Any]) -> None:
        """A `write` fault: the guest writes `data` at the start of disk `target` as it
        boots (with `match`: only under a definition containing that text), so tests
        can tell a disk restored by a rollback from one the new definition wrote."""
        for fault in self.store.read_json("faults.json") or []:
            if (fault.get("op"), fault.get("name"), fault.get("action")) != (
                    "boot", name, "write"):
                continue
            if fault.get("match") and fault["match"] not in (record.get("running_xml") or ""):
                continue
            found = self._disk_files(record["xml"]).get(str(fault.get("target")))
            if found is not None:
                data = str(fault.get("data", "")).encode()
                old = read_private(found[1])
                write_atomic(found[1], data + old[len(data):], fsync=self.store.fsync)

    def _probe(self, op: str, name: str) -> tuple[bool, str]:
        """(the guest runs, its running definition), and whether a fault blocks `op`."""
        with self.store.locked(exclusive=False):
            record = self.store.get(Kind.DOMAIN, name)
        if record is None or DomainState(record["state"]) is not DomainState.RUNNING:
            return False, ""
        running = record.get("running_xml") or ""
        fault = self._fault(op, Kind.DOMAIN, name)
        if fault is not None and fault.get("action") == "stall":  # a slow answer
            time.sleep(float(fault.get("seconds", 1.0)))
        if fault is not None and fault.get("action") == "fail" and (
                not fault.get("match") or fault["match"] in running):
            return False, running
        return True, running

    def agent_ping(self, name: str) -> bool:
        up, running = self._probe("agent", name)
        return up and any(
            (c.get("name") == AGENT_CHANNEL)
            for c in parse(running).iterfind("devices/channel/target"))

    def tcp_open(self, name: str, port: int) -> bool:
        return self._probe("tcp", name)[0]

    def cloud_init_done(self, name: str) -> bool:
        return self._probe("cloudinit", name)[0]
