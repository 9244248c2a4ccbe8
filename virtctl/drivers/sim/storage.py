"""Storage pools and volumes of the `sim` driver (a mixin of SimDriver, sim.py), with
libvirt's semantics for dir pools (docs/libvirt-driver.md, "Storage").

A pool is a record (`pools/NAME.json`: its XML, type, target path, state). The sim
never writes outside its state directory: a dir pool's target path is only recorded,
and its directory is `pools-data/QUOTED-TARGET-PATH/` in the state directory, made by
`build_pool` (a pool started before its build is refused, as libvirt refuses a dir
pool whose directory is missing). Keyed by the target path as libvirt's dir pool is,
so a pool defined again over the same path finds its volumes again. Volume bytes are
real files there (sparse: a raw volume's allocation is the blocks on disk, where
libvirt's dir pool writes every byte at create); a volume's path is TARGET/NAME, and
its record (`volumes/QUOTED-PATH.json`: format, declared capacity of a qcow2 volume,
backing store) says what the file alone does not. A qcow2 volume's file is empty until
uploaded: the sim writes no image format, it records the backing chain in the XML. A
backing store may also be any file of the host, as libvirt allows (read for its size,
never written); a path in a dir pool's target is that pool's data directory here.

Pools of other types (logical, netfs, iscsi...) can be defined, given autostart and
undefined, but `build_pool` and `start` refuse them: the sim supports dir pools only.
No storage call emits an event (libvirt's pool events are not relayed either).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from lxml import etree

from ...converters.sizes import unit_bytes
from ...errors import DriverError, ErrorCode, ErrorDomain
from ...fileio import open_private, private_dir
from ...model import STATE_VOLUME, Kind, LivePool, LiveVolume, Storage
from ...xmlutil import parse, tostring
from ..base import EventType
from .store import Record, SimStore, StoreError, faults_named, store_error
from ..storageshared import (
    RECORD_LIMIT,
    image_size,
    read_chunk,
    record_text,
    records_unreadable,
    shrink_refused,
)

POOL_TYPES = frozenset({"dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct",
                        "scsi", "mpath", "rbd", "sheepdog", "gluster", "zfs", "vstorage"})
_NEEDS_TARGET = frozenset({"dir", "fs", "netfs"})
_FORMATS = frozenset({"raw", "qcow2"})
CHUNK = 1 << 20


def _error(message: str, code: ErrorCode) -> DriverError:
    return DriverError(message, code=code, domain=ErrorDomain.SIM)


def _capacity(root: etree._Element) -> int | None:
    elem = root.find("capacity")
    if elem is None or not (elem.text or "").strip():
        return None
    factor = unit_bytes(elem.get("unit")) if elem.get("unit") else 1
    try:
        value = int((elem.text or "").strip())
    except ValueError:
        value = -1
    if factor is None or value < 0:
        raise _error(f"XML error: invalid capacity '{elem.text}' {elem.get('unit', '')}",
                     ErrorCode.INVALID_SPEC)
    return value * factor


def _sanitized(path: str) -> str:
    return posixpath.normpath(path) if path else path


class SimStorage:
    """See the module doc; the Protocol's docstrings say what each call does."""

    if TYPE_CHECKING:
        store: SimStore
        readonly: bool

        def _parse(self, xml: str) -> etree._Element: ...
        def _require(self, kind: Kind, name: str) -> Record: ...
        def _fault(self, op: str, kind: Kind, name: str) -> dict[str, Any] | None: ...
        def _apply_fault(self, op: str, kind: Kind, name: str) -> None: ...
        def _refuse_readonly(self, op: str, kind: Kind, name: str) -> None: ...
        def _mutate(self, op: str, kind: Kind, name: str,
                    body: Callable[[], EventType | None]) -> None: ...

    # -- paths ------------------------------------------------------------------------

    def _data_dir(self, target: str) -> Path:
        """A pool's data directory; once it exists, a private one (never a symlink)."""
        folder = self.store.root / "pools-data" / quote(target, safe="")
        if os.path.lexists(folder):
            with faults_named(folder):
                private_dir(folder, make=False)
        return folder

    def _active_pool(self, pool: str) -> Record:
        record = self._require(Kind.POOL, pool)
        if not record["active"]:
            raise _error(f"storage pool '{pool}' is not active", ErrorCode.OPERATION_INVALID)
        return record

    def _volume(self, pool: str, name: str) -> tuple[str, Path, Record]:
        """An existing volume of an active pool: its path, its file, its record."""
        target = self._active_pool(pool)["running_target"]
        file = self._data_dir(target) / name
        if "/" in name or name in ("", ".", "..") or not _is_volume_file(file):
            raise _error(f"storage volume '{name}' not found in pool '{pool}'",
                         ErrorCode.NO_SUCH_VOLUME)
        path = posixpath.join(target, name)
        return path, file, self.store.get(Kind.VOLUME, path) or {}

    def _file_for(self, path: str) -> Path | None:
        """The file at `path` as the sim sees the host, if it exists (backing stores:
        libvirt checks the file, not the pool it belongs to). A dir pool's target path,
        or one a pool left its files at (undefined, its storage kept), is its data
        directory here; any other path is the host's own file, only ever read."""
        folder, name = posixpath.split(_sanitized(path))
        if not name or not folder.startswith("/"):
            return None
        data = self._data_dir(folder)
        if data.is_dir() or any(record.get("type") == "dir" and record.get("target") == folder
                                for _, record in self.store.all(Kind.POOL)):
            file = data / name
            return file if _is_volume_file(file) else None
        host = Path(folder) / name
        return host if host.is_file() else None

    @staticmethod
    def _size_of(file: Path, record: Record) -> tuple[int, int]:
        """(capacity, allocation) in bytes."""
        stat = file.lstat()  # the sim's own file: never a symlink (_is_volume_file)
        capacity = record.get("capacity") if record.get("format") == "qcow2" else None
        return (stat.st_size if capacity is None else int(capacity)), stat.st_blocks * 512

    # -- pools (through define/start/destroy/undefine of sim.py) ------------------------

    def _define_pool(self, name: str, root: etree._Element, uuid: str,
                     existing: Record | None) -> None:
        if root.tag != "pool":
            raise _error(f"expected <pool>, got <{root.tag}>", ErrorCode.INVALID_SPEC)
        ptype = root.get("type", "")
        if ptype not in POOL_TYPES:
            raise _error(f"XML error: Invalid value for attribute 'type' in element 'pool': "
                         f"'{ptype}'.", ErrorCode.INVALID_SPEC)
        target = _sanitized((root.findtext("target/path") or "").strip())
        if ptype in _NEEDS_TARGET and not target:
            raise _error("XML error: missing storage pool target path", ErrorCode.INVALID_SPEC)
        for other, record in self.store.all(Kind.POOL):
            if other != name and record.get("type") == ptype == "dir" and \
                    record.get("target") == target:
                raise _error(f"Storage source conflict with pool: '{other}'",
                             ErrorCode.OPERATION_FAILED)
        uuid_elem = root.find("uuid")
        if uuid_elem is None:
            uuid_elem = etree.Element("uuid")
            name_elem = root.find("name")
            assert name_elem is not None  # define checked it
            name_elem.addnext(uuid_elem)
        uuid_elem.text = uuid
        record = existing or {"active": False, "autostart": False, "running_target": None}
        record.update(uuid=uuid, xml=tostring(root), type=ptype, target=target,
                      persistent=True)
        self.store.claim("pool-uuid", uuid, name)  # before the record: see sim.py
        self.store.put(Kind.POOL, name, record)

    def _dir_pool_only(self, name: str, record: Record, op: str) -> None:
        if record["type"] != "dir":
            raise _error(f"cannot {op} storage pool '{name}' of type '{record['type']}': "
                         "the sim supports dir pools only", ErrorCode.UNSUPPORTED)

    def _start_pool(self, name: str) -> None:
        record = self._require(Kind.POOL, name)
        if record["active"]:
            raise _error(f"storage pool '{name}' is already active",
                         ErrorCode.OPERATION_INVALID)
        self._dir_pool_only(name, record, "start")
        if not os.path.lexists(self._data_dir(record["target"])):
            raise _error(f"cannot open directory '{record['target']}': No such file or "
                         "directory", ErrorCode.OPERATION_FAILED)
        record.update(active=True, running_target=record["target"], running_xml=record["xml"])
        self.store.put(Kind.POOL, name, record)

    def _stop_pool(self, name: str) -> None:
        record = self._require(Kind.POOL, name)
        if not record["active"]:
            raise _error(f"storage pool '{name}' is not active", ErrorCode.OPERATION_INVALID)
        record.update(active=False, running_target=None, running_xml=None)
        self.store.put(Kind.POOL, name, record)

    def build_pool(self, name: str) -> None:
        def body() -> None:
            record = self._require(Kind.POOL, name)
            if record["active"]:
                raise _error(f"storage pool '{name}' is already active",
                             ErrorCode.OPERATION_INVALID)
            self._dir_pool_only(name, record, "build")
            self.store.private_dir(self._data_dir(record["target"]))

        self._mutate("build", Kind.POOL, name, body)

    # -- volumes --------------------------------------------------------------------

    def create_volume(self, pool: str, xml: str) -> None:
        root = self._parse(xml)
        name = (root.findtext("name") or "").strip()
        self._mutate("create_volume", Kind.VOLUME, f"{pool}/{name}",
                     lambda: self._create_volume(pool, name, root))

    def _create_volume(self, pool: str, name: str, root: etree._Element) -> None:
        if root.tag != "volume":
            raise _error(f"expected <volume>, got <{root.tag}>", ErrorCode.INVALID_SPEC)
        target = self._active_pool(pool)["running_target"]
        if not name:
            raise _error("XML error: missing volume name element", ErrorCode.INVALID_SPEC)
        if "/" in name or name in (".", ".."):
            raise _error(f"volume name '{name}' cannot contain '/'",
                         ErrorCode.OPERATION_INVALID)
        fmt = root.find("target/format")
        fmt_type = "raw" if fmt is None else fmt.get("type", "raw")
        if fmt_type not in _FORMATS:
            raise _error(f"volume format '{fmt_type}': the sim supports raw and qcow2 only",
                         ErrorCode.CONFIG_UNSUPPORTED)
        capacity = _capacity(root)
        backing = None
        backing_path = (root.findtext("backingStore/path") or "").strip()
        if backing_path:
            if fmt_type == "raw":
                raise _error("backing storage not supported for raw volumes",
                             ErrorCode.UNSUPPORTED)
            base = self._file_for(backing_path)
            if base is None:
                raise _error(f"inaccessible backing store volume {backing_path}: No such "
                             "file or directory", ErrorCode.OPERATION_FAILED)
            base_format = root.find("backingStore/format")
            backing = {"path": _sanitized(backing_path),
                       "format": "raw" if base_format is None else base_format.get("type",
                                                                                   "raw")}
            if capacity is None:  # as libvirt: the overlay is as big as its base
                base_record = self.store.get(Kind.VOLUME, backing["path"])
                capacity = (self._size_of(base, base_record)[0] if base_record
                            else image_size(base))  # a host file, no sim volume
        if capacity is None:
            raise _error("XML error: missing capacity element", ErrorCode.INVALID_SPEC)
        folder = self._data_dir(target)
        file = folder / name
        if os.path.lexists(file):
            raise _error(f"storage volume '{name}' exists already", ErrorCode.DUPLICATE)
        path = posixpath.join(target, name)
        self.store.put(Kind.VOLUME, path, {"format": fmt_type, "backing": backing,
                                           "capacity": capacity})
        with open(file, "xb") as handle:
            if fmt_type == "raw":
                handle.truncate(capacity)  # sparse

    def delete_volume(self, pool: str, name: str) -> None:
        def body() -> None:
            path, file, _ = self._volume(pool, name)
            file.unlink()
            self.store.delete(Kind.VOLUME, path)

        self._mutate("delete_volume", Kind.VOLUME, f"{pool}/{name}", body)

    def resize_disk(self, name: str, target: str, capacity: int) -> None:
        """The sim's guests have no block layer: growing a running guest's disk grows
        the volume behind it (volume disks only), as blockResize does to the image."""
        self._refuse_readonly("resize a disk of", Kind.DOMAIN, name)
        record = self._require(Kind.DOMAIN, name)
        running = record.get("running_xml")
        if not running:
            raise _error(f"domain '{name}' is not running", ErrorCode.OPERATION_INVALID)
        for disk in self._parse(running).iterfind("devices/disk"):
            dev = disk.find("target")
            if dev is None or dev.get("dev") != target:
                continue
            source = disk.find("source")
            if disk.get("type") != "volume" or source is None:
                raise _error(f"the sim resizes volume disks only, not disk {target} of "
                             f"'{name}'", ErrorCode.UNSUPPORTED)
            self.resize_volume(source.get("pool", ""), source.get("volume", ""), capacity)
            return
        raise _error(f"domain '{name}' has no disk {target}", ErrorCode.OPERATION_INVALID)

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        def body() -> None:
            path, file, record = self._volume(pool, name)
            current = self._size_of(file, record)[0]
            if capacity < current:
                raise shrink_refused(pool, name, current, capacity, ErrorDomain.SIM)
            if record.get("format") == "qcow2":
                self.store.put(Kind.VOLUME, path, {**record, "capacity": capacity})
            else:
                fd = open_private(file, os.O_WRONLY)  # never truncates a symlink's target
                try:
                    os.ftruncate(fd, capacity)
                finally:
                    os.close(fd)

        self._mutate("resize_volume", Kind.VOLUME, f"{pool}/{name}", body)

    def upload_volume(self, pool: str, name: str, data: BinaryIO, size: int,
                      progress: Callable[[int], None] | None = None) -> None:
        """Writes a copy (the bytes sent, then what the old file had beyond them, as
        libvirt overwrites in place) and renames it over the volume's file at the end,
        so a failed upload leaves the old content. Fault `upload` with `after`: fail once
        that many bytes are written."""
        key = f"{pool}/{name}"
        self._refuse_readonly("upload", Kind.VOLUME, key)
        fault = self._fault("upload", Kind.VOLUME, key)
        fail_after = None
        if fault is not None and fault["action"] == "fail" and fault.get("after"):
            fail_after = int(fault["after"])
        else:
            self._apply_fault("upload", Kind.VOLUME, key)
        with self.store.locked(exclusive=False):
            _, file, _ = self._volume(pool, name)
        spool = self.store.root / "pools-data" / ".uploads"
        self.store.private_dir(spool)
        with faults_named(spool):
            fd, tmp = tempfile.mkstemp(dir=spool, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                sent = 0
                while sent < size:
                    chunk = read_chunk(data, min(CHUNK, size - sent), key)
                    if not chunk:
                        raise _error(f"cannot upload to volume '{key}': the data ended "
                                     f"after {sent} of {size} bytes", ErrorCode.OPERATION_FAILED)
                    out.write(chunk)
                    sent += len(chunk)
                    if fail_after is not None and sent >= fail_after:
                        raise _error(f"injected failure: upload {key} after {sent} bytes",
                                     ErrorCode.OPERATION_FAILED)
                    if progress is not None:
                        progress(sent)
                with os.fdopen(open_private(file, os.O_RDONLY), "rb") as old:
                    old.seek(size)
                    while tail := old.read(CHUNK):
                        out.write(tail)
                if self.store.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            with self.store.locked(exclusive=True):
                _, file, _ = self._volume(pool, name)  # still there
                os.replace(tmp, file)
        except OSError as exc:  # a full disk: the volume named, and it keeps its content
            raise StoreError(f"sim state {file}: cannot upload to volume '{key}': "
                             f"{exc.strerror or exc}; the volume keeps its old content") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def download_volume(self, pool: str, name: str, *, limit: int) -> bytes:
        key = f"{pool}/{name}"
        if self.readonly:  # as libvirt: virStorageVolDownload needs a read-write connection
            raise _error(f"cannot download volume '{key}': the connection is read-only",
                         ErrorCode.OPERATION_INVALID)
        with self.store.locked(exclusive=False):
            _, file, _ = self._volume(pool, name)
            return self._read_limited(key, file, limit)

    @staticmethod
    def _read_limited(key: str, file: Path, limit: int) -> bytes:
        with faults_named(file), os.fdopen(open_private(file, os.O_RDONLY), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise _error(f"volume '{key}' holds more than {limit} bytes",
                         ErrorCode.OPERATION_INVALID)
        return data

    # -- reading --------------------------------------------------------------------

    def storage(self) -> Storage:
        pools: dict[str, LivePool] = {}
        volumes: dict[str, LiveVolume] = {}
        with self.store.locked(exclusive=False):
            for name, record in self.store.all(Kind.POOL):
                state = None
                if record["active"]:
                    state = self._pool_volumes(name, record["running_target"], volumes)
                pools[name] = LivePool(
                    name=name, uuid=record["uuid"], xml=record["xml"],
                    active=record["active"], autostart=record["autostart"],
                    persistent=record["persistent"], record=state)
        return Storage(pools=pools, volumes=volumes)

    def pool_files(self, pool_xml: str) -> Storage | None:
        root = parse(pool_xml)
        pool = (root.findtext("name") or "").strip()
        target = _sanitized((root.findtext("target/path") or "").strip())
        if root.get("type") != "dir" or not target:
            return None
        volumes: dict[str, LiveVolume] = {}
        with self.store.locked(exclusive=False):
            # Read as a file, as a local libvirt's is: no volume download involved.
            state = self._pool_volumes(pool, target, volumes, refuse_readonly=False)
        return Storage(pools={pool: LivePool(
            name=pool, uuid=(root.findtext("uuid") or "").strip(), xml=pool_xml, active=True,
            autostart=False, persistent=True, record=state)}, volumes=volumes)

    def file_exists(self, path: str) -> bool | None:
        with self.store.locked(exclusive=False):
            return self._file_for(path) is not None

    def _pool_volumes(self, pool: str, target: str, into: dict[str, LiveVolume], *,
                      refuse_readonly: bool = True) -> str | None:
        """Adds the pool's volumes to `into`; returns its STATE_VOLUME's text."""
        folder, state = self._data_dir(target), None
        try:
            entries = sorted(os.listdir(folder))
        except FileNotFoundError:
            entries = []
        except OSError as exc:
            raise store_error(exc, folder) from None
        for entry in entries:
            file = folder / entry
            if not _is_volume_file(file):
                continue  # as a dir pool: only files are volumes (and no symlinks)
            if entry == STATE_VOLUME:
                if self.readonly and refuse_readonly:
                    raise records_unreadable(pool, ErrorDomain.SIM)
                state = record_text(self._read_limited(f"{pool}/{entry}", file,
                                                       RECORD_LIMIT))
                continue
            path = posixpath.join(target, entry)
            record = self.store.get(Kind.VOLUME, path) or {}
            capacity, allocation = self._size_of(file, record)
            into[f"{pool}/{entry}"] = LiveVolume(
                pool=pool, name=entry, capacity=capacity, allocation=allocation,
                xml=_volume_xml(entry, path, capacity, allocation, record))
        return state


def _is_volume_file(file: Path) -> bool:
    """A volume's file in a data directory: a regular file, never a symlink (which
    could make the sim read, write or truncate a file elsewhere)."""
    try:
        return stat.S_ISREG(file.lstat().st_mode)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise store_error(exc, file) from None


def _volume_xml(name: str, path: str, capacity: int, allocation: int, record: Record) -> str:
    root = etree.Element("volume", type="file")
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "key").text = path
    etree.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    etree.SubElement(root, "allocation", unit="bytes").text = str(allocation)
    target = etree.SubElement(root, "target")
    etree.SubElement(target, "path").text = path
    etree.SubElement(target, "format", type=record.get("format", "raw"))
    backing = record.get("backing")
    if backing:
        store = etree.SubElement(root, "backingStore")
        etree.SubElement(store, "path").text = backing["path"]
        etree.SubElement(store, "format", type=backing["format"])
    return tostring(root)


__all__ = ["SimStorage"]
