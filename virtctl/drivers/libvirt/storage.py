"""The libvirt driver's storage calls: pools' build, volumes' create, delete, resize,
upload and download, and `storage()` (docs/libvirt-driver.md, "Storage").

A mixin of `LibvirtDriver` (libvirt_driver.py); pools' define, start (libvirt's create),
destroy, undefine and autostart go through the driver's generic calls with Kind.POOL.
Nothing here deletes a pool's storage (no virStoragePoolDelete); volumes are deleted
only when asked by name.

`storage()` does not refresh pools (virStoragePoolRefresh rescans every file of a
pool, and probes each image: expensive on big pools): volumes created, resized,
uploaded or deleted through libvirt are current; files changed behind libvirt's back
show after the next refresh or pool start.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from lxml import etree

from ...errors import DriverError, ErrorCode, ErrorDomain, VirtctlError
from ...model import STATE_VOLUME, Kind, LivePool, LiveVolume, Storage
from ...uri import parse_uri
from ...xmlutil import parse, tostring
from .deadline import Deadline
from .errors import translated
from ..storageshared import (
    RECORD_LIMIT,
    probe_image,
    read_chunk,
    record_text,
    records_unreadable,
    shrink_refused,
)

# Bytes per virStreamSend/virStreamRecv call: libvirt's largest stream message
# (VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX); a bigger send takes one message's worth and the
# rest is sent again, copied by the binding. A 256 MiB upload to qemu:///system, median
# of 7: 64 KiB 0.26 s, 128 KiB 0.18 s, 256 KiB 0.17 s, 1 MiB 0.21 s, 4 MiB 0.34 s;
# `virsh vol-upload` 0.29 s.
UPLOAD_CHUNK = 256 << 10
DOWNLOAD_CHUNK = 256 << 10


def _error(message: str, code: ErrorCode) -> DriverError:
    return DriverError(message, code=code, domain=ErrorDomain.LIBVIRT)


class StorageCalls:
    """The storage part of the Driver Protocol for LibvirtDriver (see the module doc)."""

    if TYPE_CHECKING:
        uri: str
        readonly: bool
        _lv: Any
        _conn: Any

        def _writable(self, action: str, kind: Kind, name: str = "") -> None: ...
        def _lookup(self, kind: Kind, name: str) -> Any: ...
        _deadline: Deadline

    _pool_xml_flags: int | None = None  # VIR_STORAGE_XML_INACTIVE until refused

    def _volume(self, pool: str, name: str) -> Any:
        return self._lookup(Kind.POOL, pool).storageVolLookupByName(name)

    def build_pool(self, name: str) -> None:
        self._writable("build", Kind.POOL, name)
        with translated(self._lv, context=f"cannot build storage pool '{name}'"):
            self._lookup(Kind.POOL, name).build(0)

    def create_volume(self, pool: str, xml: str) -> None:
        self._writable("create a volume in", Kind.POOL, pool)
        with translated(self._lv, context=f"cannot create a volume in pool '{pool}'"):
            self._lookup(Kind.POOL, pool).createXML(xml, 0)

    def delete_volume(self, pool: str, name: str) -> None:
        self._writable("delete", Kind.VOLUME, f"{pool}/{name}")
        with translated(self._lv, context=f"cannot delete volume '{pool}/{name}'"):
            self._volume(pool, name).delete(0)

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        self._writable("resize", Kind.VOLUME, f"{pool}/{name}")
        with translated(self._lv, context=f"cannot resize volume '{pool}/{name}'"):
            vol = self._volume(pool, name)
            current = int(vol.info()[1])
            if capacity < current:  # never the SHRINK flag: a smaller size loses data
                raise shrink_refused(pool, name, current, capacity, ErrorDomain.LIBVIRT)
            vol.resize(capacity, 0)

    def resize_disk(self, name: str, target: str, capacity: int) -> None:
        self._writable("resize a disk of", Kind.DOMAIN, name)
        lv = self._lv
        with translated(lv, context=f"cannot resize disk {target} of domain '{name}'"):
            dom = self._lookup(Kind.DOMAIN, name)
            current = int(dom.blockInfo(target, 0)[0])
            if capacity < current:  # blockResize would shrink it: data lost
                raise _error(f"cannot resize disk {target} of domain '{name}' from "
                             f"{current} to {capacity} bytes: disks are never shrunk",
                             ErrorCode.OPERATION_INVALID)
            dom.blockResize(target, capacity, lv.VIR_DOMAIN_BLOCK_RESIZE_BYTES)

    def upload_volume(self, pool: str, name: str, data: BinaryIO, size: int,
                      progress: Callable[[int], None] | None = None) -> None:
        """libvirt writes the bytes over the volume's first `size` bytes and keeps the
        rest (a raw file grows when they are more). Not bounded as a whole (it takes as
        long as its data): the call deadline applies to each step, each chunk sent
        included (Deadline.run_watched)."""
        key = f"{pool}/{name}"
        self._writable("upload to", Kind.VOLUME, key)
        self._deadline.run_watched(f"upload to {key}", lambda step: self._upload(
            pool, name, data, size, progress, step))

    def _upload(self, pool: str, name: str, data: BinaryIO, size: int,
                progress: Callable[[int], None] | None, step: Callable[[], None]) -> None:
        key = f"{pool}/{name}"
        lv = self._lv
        with translated(lv, context=f"cannot upload to volume '{key}'"):
            vol = self._volume(pool, name)
            stream = self._conn.newStream(0)
            try:
                vol.upload(stream, 0, size, 0)
                step()
                sent = 0
                while sent < size:
                    chunk = read_chunk(data, min(UPLOAD_CHUNK, size - sent), key)
                    if not chunk:
                        raise _error(f"cannot upload to volume '{key}': the data ended after "
                                     f"{sent} of {size} bytes", ErrorCode.OPERATION_FAILED)
                    done = stream.send(chunk)
                    while done < len(chunk):  # a send may take less than it was given
                        done += stream.send(chunk[done:])
                    step()
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent)
                stream.finish()
            except BaseException:
                with contextlib.suppress(lv.libvirtError):
                    stream.abort()
                raise

    def download_volume(self, pool: str, name: str, *, limit: int) -> bytes:
        key = f"{pool}/{name}"
        with translated(self._lv, context=f"cannot download volume '{key}'"):
            return self._download(self._volume(pool, name), key, limit)

    def _download(self, vol: Any, key: str, limit: int) -> bytes:
        lv = self._lv
        too_big = _error(f"volume '{key}' holds more than {limit} bytes",
                         ErrorCode.OPERATION_INVALID)
        with contextlib.suppress(lv.libvirtError):  # the file's size, where the host says
            if int(vol.infoFlags(lv.VIR_STORAGE_VOL_GET_PHYSICAL)[2]) > limit:
                raise too_big
        stream = self._conn.newStream(0)
        try:
            vol.download(stream, 0, 0, 0)
            parts, total = [], 0
            while True:
                part = stream.recv(DOWNLOAD_CHUNK)
                if part == -2:  # would block: not on a blocking stream, but say so
                    continue
                if not part:
                    break
                total += len(part)
                if total > limit:
                    raise too_big
                parts.append(part)
            stream.finish()
        except BaseException:
            with contextlib.suppress(lv.libvirtError):
                stream.abort()
            raise
        return b"".join(parts)

    # Reading

    def _local(self) -> bool:
        """Whether the daemon's files are this machine's: a local URI of a driver that
        keeps them on disk (the test driver keeps its storage in memory)."""
        try:
            uri = parse_uri(self.uri or str(self._conn.getURI()))
        except (VirtctlError, self._lv.libvirtError):
            return False
        return uri.is_local and uri.driver != "test"

    def pool_files(self, pool_xml: str) -> Storage | None:
        """Read from this machine's filesystem for a local daemon: libvirt has no call
        that lists a directory without a running pool over it. Each file as the dir
        pool reports it: qcow2 (capacity and backing file from its header) or raw."""
        root = parse(pool_xml)
        pool = (root.findtext("name") or "").strip()
        target = posixpath.normpath((root.findtext("target/path") or "").strip() or ".")
        if root.get("type") != "dir" or not target.startswith("/") or not self._local():
            return None
        volumes: dict[str, LiveVolume] = {}
        state = None
        try:
            with os.scandir(target) as entries:
                # What a dir pool lists: files and directories (a symlink to one too).
                for entry in entries:
                    if entry.name == STATE_VOLUME and entry.is_file():
                        state = _read_state(entry.path)
                        continue
                    if not (entry.is_file() or entry.is_dir()):
                        continue
                    fmt, capacity, backing = "dir", 0, None
                    with contextlib.suppress(OSError):
                        if entry.is_file():
                            fmt, capacity, backing = probe_image(entry.path)
                    volumes[f"{pool}/{entry.name}"] = LiveVolume(
                        pool=pool, name=entry.name, capacity=capacity, allocation=0,
                        xml=_file_volume_xml(entry.name, entry.path, capacity, fmt, backing))
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError:
            return None
        return Storage(pools={pool: LivePool(
            name=pool, uuid=(root.findtext("uuid") or "").strip(), xml=pool_xml, active=True,
            autostart=False, persistent=True, record=state)}, volumes=volumes)

    def file_exists(self, path: str) -> bool | None:
        if not self._local() or not path.startswith("/"):
            return None
        try:
            return not stat.S_ISDIR(os.stat(path).st_mode)  # a file or a block device
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:  # not ours to see (permissions): libvirt may still open it
            return None

    def storage(self) -> Storage:
        lv = self._lv
        pools: dict[str, LivePool] = {}
        volumes: dict[str, LiveVolume] = {}
        with translated(lv):
            for pool in self._conn.listAllStoragePools(0):
                settled = self._read_settled(pool)
                if settled is not None:
                    pools[settled[0].name] = settled[0]
                    volumes.update(settled[1])
        return Storage(pools=pools, volumes=volumes)

    def _read_settled(self, pool: Any) -> tuple[LivePool, dict[str, LiveVolume]] | None:
        """`_read_pool`, again when someone else changed the pool while it was read: a
        volume went (no such volume) or the pool stopped (libvirt: "storage pool is not
        active"), as on a host where other tools work; None when the pool went."""
        lv = self._lv
        for attempt in range(3):
            try:
                return self._read_pool(pool)
            except lv.libvirtError as exc:
                code = exc.get_error_code()
                if code == lv.VIR_ERR_NO_STORAGE_POOL:
                    return None  # gone since it was listed
                if code not in (lv.VIR_ERR_NO_STORAGE_VOL, lv.VIR_ERR_OPERATION_INVALID) \
                        or attempt == 2:
                    raise
        return None  # not reached

    def _read_pool(self, pool: Any) -> tuple[LivePool, dict[str, LiveVolume]]:
        """The pool and, when active, its volumes by "POOL/NAME"."""
        volumes: dict[str, LiveVolume] = {}
        name, active = pool.name(), bool(pool.isActive())
        record = None
        if active:
            for vol in pool.listAllVolumes(0):
                vol_name = vol.name()
                if vol_name == STATE_VOLUME:
                    if self.readonly:
                        raise records_unreadable(name, ErrorDomain.LIBVIRT)
                    record = record_text(self._download(vol, f"{name}/{vol_name}",
                                                        RECORD_LIMIT))
                    continue
                _, capacity, allocation = vol.info()
                volumes[f"{name}/{vol_name}"] = LiveVolume(
                    pool=name, name=vol_name, xml=str(vol.XMLDesc(0)),
                    capacity=int(capacity), allocation=int(allocation))
        return LivePool(name=name, uuid=pool.UUIDString(), xml=self._pool_xml(pool),
                        active=active, autostart=bool(pool.autostart()),
                        persistent=bool(pool.isPersistent()), record=record), volumes

    def _pool_xml(self, pool: Any) -> str:
        lv = self._lv
        flags = lv.VIR_STORAGE_XML_INACTIVE if self._pool_xml_flags is None \
            else self._pool_xml_flags
        try:
            return str(pool.XMLDesc(flags))
        except lv.libvirtError as exc:
            if not flags or exc.get_error_code() not in (lv.VIR_ERR_INVALID_ARG,
                                                         lv.VIR_ERR_NO_SUPPORT):
                raise
        self._pool_xml_flags = 0  # libvirt's test driver keeps one definition
        return str(pool.XMLDesc(0))


def _read_state(path: str) -> str:
    """A STATE_VOLUME read as a file (at most RECORD_LIMIT bytes, as `storage()`)."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
        data = handle.read(RECORD_LIMIT + 1)
    if len(data) > RECORD_LIMIT:
        raise OSError(f"{path}: more than {RECORD_LIMIT} bytes")
    return record_text(data)


def _file_volume_xml(name: str, path: str, capacity: int, fmt: str,
                     backing: str | None) -> str:
    """A volume's XML as a dir pool lists a file (the parts planning compares)."""
    root = etree.Element("volume", type="dir" if fmt == "dir" else "file")
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    target = etree.SubElement(root, "target")
    etree.SubElement(target, "path").text = path
    etree.SubElement(target, "format", type=fmt)
    if backing:
        etree.SubElement(etree.SubElement(root, "backingStore"), "path").text = backing
    return tostring(root)
