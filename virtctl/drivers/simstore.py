"""On-disk state of one `sim` hypervisor: one JSON record per object, under a lock.

Layout of a state directory (`$VIRTCTL_STATE_DIR/sim/NAME`):

    lock               flock'd: shared to read a snapshot, exclusive to change anything
    counter.json       the next domain id
    domains/NAME.json  {"xml", "running_xml", "state", "id", "autostart", "persistent", "owner"}
    networks/NAME.json {"xml", "active", "autostart", "persistent", "owner"}
    pools/NAME.json    {"xml", "type", "target", "active", "running_target", "autostart", ...}
    volumes/PATH.json  a volume's format, declared capacity and backing store, by its path
    pools-data/TARGET/ a dir pool's volumes as files, by the pool's target path (quoted);
                       .uploads/ holds uploads until they are renamed over a volume
    index/KEY/VALUE    which object holds a unique value (a uuid, a bridge name), so define
                       checks uniqueness without reading every record
    events.log         JSON lines, one per change, read by `subscribe`
    faults.json        optional fault injection (see sim.py)

Every write goes to a temporary file in the same directory and is renamed over the old
one, so a crash mid-write leaves the previous record whole; the lock keeps two virtctl
processes from interleaving read-modify-write cycles.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from ..fileio import write_atomic
from ..model import Kind

Record = dict[str, Any]
_EVENT_LOG_MAX = 1 << 20  # rotate events.log past 1 MiB; subscribers re-sync from the start


def _filename(name: str) -> str:
    # Names may hold any character but '/'; quote keeps file names portable and reversible.
    return quote(name, safe="") + ".json"


class SimStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        for kind in Kind:
            (root / f"{kind}s").mkdir(parents=True, exist_ok=True)
        self._lock_path = root / "lock"
        self._lock_path.touch(exist_ok=True)

    @contextlib.contextmanager
    def locked(self, *, exclusive: bool) -> Iterator[None]:
        with open(self._lock_path, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _dir(self, kind: Kind) -> Path:
        return self.root / f"{kind}s"

    def get(self, kind: Kind, name: str) -> Record | None:
        try:
            data: Record = json.loads((self._dir(kind) / _filename(name)).read_bytes())
        except FileNotFoundError:
            return None
        return data

    def all(self, kind: Kind) -> Iterator[tuple[str, Record]]:
        folder = self._dir(kind)
        for entry in sorted(os.listdir(folder)):
            if not entry.endswith(".json"):
                continue
            try:
                data: Record = json.loads((folder / entry).read_bytes())
            except FileNotFoundError:
                continue
            yield unquote(entry[: -len(".json")]), data

    def put(self, kind: Kind, name: str, record: Record) -> None:
        self._write_atomic(self._dir(kind) / _filename(name), json.dumps(record).encode())

    def delete(self, kind: Kind, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._dir(kind) / _filename(name)).unlink()

    def holder(self, index: str, value: str) -> str | None:
        """The name recorded as holding `value` in `index`, if any."""
        try:
            return (self.root / "index" / index / quote(value, safe="")).read_text()
        except FileNotFoundError:
            return None

    def claim(self, index: str, value: str, name: str) -> None:
        folder = self.root / "index" / index
        folder.mkdir(parents=True, exist_ok=True)
        self._write_atomic(folder / quote(value, safe=""), name.encode())

    def release(self, index: str, value: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / "index" / index / quote(value, safe="")).unlink()

    def next_id(self) -> int:
        path = self.root / "counter.json"
        try:
            value = int(json.loads(path.read_bytes())["next_id"])
        except (FileNotFoundError, ValueError, KeyError):
            value = 1
        self._write_atomic(path, json.dumps({"next_id": value + 1}).encode())
        return value

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.root / name).read_bytes())
        except FileNotFoundError:
            return None

    def write_json(self, name: str, value: Any) -> None:
        self._write_atomic(self.root / name, json.dumps(value, indent=1).encode())

    def append_event(self, event: Record) -> None:
        path = self.root / "events.log"
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > _EVENT_LOG_MAX:
                path.unlink()
        with open(path, "ab") as handle:
            handle.write(json.dumps(event).encode() + b"\n")

    def _write_atomic(self, path: Path, data: bytes) -> None:
        write_atomic(path, data, fsync=self.fsync)
