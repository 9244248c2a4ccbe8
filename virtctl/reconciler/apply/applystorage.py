"""Performing storage actions (apply.py's part for them): pools built, volumes created,
uploaded, resized and deleted, and virtctl's records kept in each pool's state volume.

Content is verified while it is read: a local file or downloaded URL is hashed as it
is uploaded, and a volume whose content does not match its checksum is deleted again
before the action fails, so a bad checksum leaves nothing behind. A local file was
already hashed before the first action (contentcheck.py): unchanged since, it is not
hashed a second time. A URL is first
downloaded into virtctl's cache (resumed where an earlier download stopped, verified
there) and only then uploaded. On a terminal, uploads and downloads show a progress bar
on stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ...errors import DriverError, ErrorCode, ErrorDomain, SpecError
from ...fileio import NotRegularFile, open_private, open_regular, private_dir
from ...model import STATE_VOLUME, VolumeContent
from ...printable import printable
from ...xmlutil import parse, tostring
from . import seedmedia
from ..plan.actions import (
    BuildPool,
    CreateVolume,
    DeleteVolume,
    RecordPool,
    RecordVolume,
    ResizeVolume,
    StorageAction,
)
from .contentcheck import identity, remember, verified
from ..speccache import cache_dir
from ..storage_record import PoolRecord, RecordError, read_record, record_text

if TYPE_CHECKING:
    from ...drivers.base import Driver

RECORD_CAPACITY = 1 << 20  # bytes of a state volume; grown when a record needs more
_CHUNK = 1 << 20


def perform_storage(action: StorageAction, driver: Driver) -> str:
    match action:
        case BuildPool():
            driver.build_pool(action.name)
        case RecordPool(record=record):
            _update_record(driver, action.name, lambda r: r.with_pool(record))
        case CreateVolume():
            return _create(action, driver)
        case ResizeVolume(capacity=capacity, record=record):
            pool, name = _split(action.name)
            if action.domain is not None and action.target is not None:
                driver.resize_disk(action.domain, action.target, capacity)
            else:
                driver.resize_volume(pool, name, capacity)
            _update_record(driver, pool, lambda r: r.with_volume(name, record))
        case DeleteVolume():
            pool, name = _split(action.name)
            if action.eject is not None:  # never delete a file QEMU holds open
                seedmedia.eject(driver, *action.eject)
            driver.delete_volume(pool, name)
            _update_record(driver, pool, lambda r: r.with_volume(name, None))
        case RecordVolume(record=record):
            pool, name = _split(action.name)
            _update_record(driver, pool, lambda r: r.with_volume(name, record))
    return ""


def _split(key_name: str) -> tuple[str, str]:
    pool, _, name = key_name.partition("/")
    return pool, name


# -- records ----------------------------------------------------------------------------


def _update_record(driver: Driver, pool: str,
                   change: Callable[[PoolRecord], PoolRecord]) -> None:
    try:
        text = driver.download_volume(pool, STATE_VOLUME, limit=64 * RECORD_CAPACITY)
    except DriverError:
        text = None  # no record yet
    try:
        before = read_record(_decoded(text))
    except RecordError as exc:
        raise DriverError(f"pool '{pool}': {STATE_VOLUME} is not virtctl's record ({exc}); "
                          "not overwriting it", code=ErrorCode.OPERATION_INVALID,
                          domain=ErrorDomain.APPLIER) from None
    after = change(before)
    if text is not None and after == before:
        return
    body = record_text(after).encode()
    size = max(RECORD_CAPACITY, -(-len(body) // RECORD_CAPACITY) * RECORD_CAPACITY)
    if text is None:
        driver.create_volume(pool, f"<volume><name>{STATE_VOLUME}</name><capacity unit='bytes'>"
                                   f"{size}</capacity><target><format type='raw'/></target>"
                                   "</volume>")
    elif size > len(text):
        driver.resize_volume(pool, STATE_VOLUME, size)
    # The whole volume, padded with spaces: no byte of a longer, older record stays.
    driver.upload_volume(pool, STATE_VOLUME, io.BytesIO(body.ljust(size)), size)


def _decoded(data: bytes | str | None) -> str | None:
    if data is None:
        return None
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.rstrip("\x00")


# -- content ----------------------------------------------------------------------------


def _create(action: CreateVolume, driver: Driver) -> str:
    pool, name = _split(action.name)
    content = action.content
    root = parse(action.xml)
    opened = _open_content(content, name) if content is not None else None
    try:
        if opened is not None and root.find("capacity") is None:
            cap = root.makeelement("capacity", {"unit": "bytes"})
            cap.text = str(opened[1])
            root.append(cap)
        try:
            driver.create_volume(pool, tostring(root, pretty=False))
        except DriverError as exc:
            if exc.code is not ErrorCode.DUPLICATE:
                raise
            # A host whose pool directory could not be looked at before the first
            # action (a remote one): the file was there already. Never created over.
            raise DriverError(f"{exc.message}: volume {action.name} exists already and is "
                              "not managed by virtctl (retained by an earlier delete, or "
                              "made by someone else); use --adopt to take it over with its "
                              "data", code=ErrorCode.DUPLICATE, domain=exc.domain,
                              driver_code=exc.driver_code) from None
        if opened is not None and content is not None:
            stream, size = opened
            hashing = _Hashing(stream, _unverified(content, stream))
            try:
                driver.upload_volume(pool, name, hashing, size, _bar(f"upload {name}", size))
                hashing.verify(action.name)
            except BaseException:
                driver.delete_volume(pool, name)  # nothing half-written is left behind
                raise
            finally:
                hashing.close()
    finally:
        if opened is not None:
            opened[0].close()
    _update_record(driver, pool, lambda r: r.with_volume(name, action.record))
    if action.insert is not None:
        seedmedia.insert(driver, *action.insert, pool, name)
    return ""


def _unverified(content: VolumeContent, stream: IO[bytes]) -> str | None:
    """The checksum still to verify while uploading: none for a file (local, or a
    download in the cache) hashed and found right earlier in this run and unchanged
    since (contentcheck.py)."""
    if content.data is None and content.checksum is not None:
        with contextlib.suppress(OSError, ValueError):
            if verified(os.fstat(stream.fileno())) == content.checksum:
                return None
    return content.checksum


def prefetch(content: VolumeContent) -> None:
    """A URL's content downloaded into the cache and verified now, before the first
    action (api.fetch_content): its upload then reads the cached file, not hashed
    again."""
    if content.url is not None:
        _download(content.url, content.checksum)


def _open_content(content: VolumeContent, name: str) -> tuple[IO[bytes], int]:
    if content.data is not None:
        return io.BytesIO(content.data), len(content.data)
    if content.file is not None:
        path = Path(content.file)
        try:  # a regular file only: a FIFO would block the upload, a device never end
            handle = open_regular(path)
            return handle, os.fstat(handle.fileno()).st_size
        except NotRegularFile as exc:
            raise SpecError(f"volume {name}: {path} is {exc.strerror}; refused") from None
        except OSError as exc:
            raise SpecError(f"volume {name}: cannot read {path}: {exc.strerror}") from None
    assert content.url is not None
    path = _download(content.url, content.checksum)
    handle = os.fdopen(open_private(path, os.O_RDONLY), "rb")
    return handle, os.fstat(handle.fileno()).st_size


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through, for the checksum ('sha256:HEX').

    Reading and hashing run ahead on a thread of their own, a few MiB at most, while the
    caller sends what was read: hashlib and libvirt's stream both release the GIL, so a
    1 GiB upload costs about the time of the slower of the two, not their sum (SHA-256
    runs at about the speed of a local libvirt upload)."""

    # Chunks of one stream message (256 KiB, the drivers' UPLOAD_CHUNK): the sender asks
    # for exactly that much and gets the chunk itself, never a slice copied out of it
    # (a 1 MiB read cut in four cost a copy of every byte). 32 of them: 8 MiB ahead.
    _PIECE = 256 << 10
    _AHEAD = 32  # chunks read and hashed before they are asked for

    def __init__(self, inner: IO[bytes], checksum: str | None) -> None:
        self.algorithm, _, self.want = (checksum or "").partition(":")
        self.digest = hashlib.new(self.algorithm) if checksum else None
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(self._AHEAD)
        self._left, self._offset = b"", 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(inner,), daemon=True,
                                        name="virtctl-hash")
        self._thread.start()

    def _pump(self, inner: IO[bytes]) -> None:
        try:
            while not self._stop.is_set():
                data = inner.read(self._PIECE)
                if self.digest is not None and data:
                    self.digest.update(data)
                self._chunks.put(data)
                if not data:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            self._chunks.put(exc)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._offset >= len(self._left):
            got = self._chunks.get()
            if isinstance(got, BaseException):
                raise got
            if not got:
                self._chunks.put(b"")  # stay at the end for later reads
                return b""
            self._left, self._offset = got, 0
        start = self._offset
        end = len(self._left) if size < 0 else min(len(self._left), start + size)
        self._offset = end
        if start == 0 and end == len(self._left):
            return self._left
        return self._left[start:end]  # one copy of what is asked for, never of the rest

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a pump waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._chunks.get_nowait()
            self._thread.join(0.01)
        super().close()

    def verify(self, what: str) -> None:
        self._thread.join()
        if self.digest is not None and self.digest.hexdigest() != self.want.lower():
            raise DriverError(f"volume {what}: content does not match its checksum "
                              f"{self.algorithm}:{self.want} (got {self.algorithm}:"
                              f"{self.digest.hexdigest()}); the volume was removed again",
                              code=ErrorCode.VERIFICATION, domain=ErrorDomain.APPLIER)


def _download(url: str, checksum: str | None) -> Path:
    """`url` in the cache, verified; a partial file from an earlier try is resumed."""
    # VIRTCTL_CACHE=0 turns off the spec caches; a download still needs its folder.
    # A private folder (fileio.private_dir) and files opened without following a
    # symlink: another user's link planted at a .part name would take the download.
    root = cache_dir({**os.environ, "VIRTCTL_CACHE": "1"}) or Path()
    folder = root / "downloads"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        private_dir(root)
        private_dir(folder)
    except OSError as exc:
        raise DriverError(f"{exc.filename}: cannot keep downloads there: {exc.strerror}",
                          code=ErrorCode.OPERATION_FAILED, domain=ErrorDomain.APPLIER) from None
    stem = hashlib.sha256(url.encode()).hexdigest()[:32]
    done, part = folder / stem, folder / f"{stem}.part"
    with contextlib.suppress(FileNotFoundError, NotRegularFile):
        if os.path.lexists(done) and _matches(done, checksum):
            return done
    try:  # checked before anything is fetched: a regular file, never through a symlink
        with os.fdopen(open_private(part, os.O_RDONLY), "rb") as earlier:
            have = os.fstat(earlier.fileno()).st_size
    except FileNotFoundError:
        have = 0
    except OSError as exc:
        raise DriverError(f"cannot download {url}: {part}: {exc.strerror}; remove it",
                          code=ErrorCode.OPERATION_FAILED, domain=ErrorDomain.APPLIER) from None
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 (http/s only)
            resumed = reply.status == 206
            total = int(reply.headers.get("Content-Length") or 0) + (have if resumed else 0)
            bar = _bar(f"download {url.rsplit('/', 1)[-1]}", total)
            mode = os.O_APPEND if resumed else os.O_TRUNC
            with os.fdopen(open_private(part, os.O_WRONLY | os.O_CREAT | mode, 0o600),
                           "wb") as out:
                got = have if resumed else 0
                while chunk := reply.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    if bar is not None:
                        bar(got)
            if got < total:  # http.client ends a cut-off body quietly: never take it whole
                raise OSError(f"the connection closed after {got} of {total} bytes")
    except OSError as exc:
        raise DriverError(f"cannot download {url}: {exc}; run again to resume",
                          code=ErrorCode.CONNECTION, domain=ErrorDomain.APPLIER) from None
    if not _matches(part, checksum):
        part.unlink()
        raise DriverError(f"{url}: the download does not match its checksum {checksum}; "
                          "it was discarded", code=ErrorCode.VERIFICATION,
                          domain=ErrorDomain.APPLIER)
    part.replace(done)
    if checksum:  # just verified: the upload of this run need not hash it again
        with contextlib.suppress(OSError):
            remember(os.lstat(done), checksum)
    return done


def _matches(path: Path, checksum: str | None) -> bool:
    if not checksum:
        return True
    algorithm, _, want = checksum.partition(":")
    digest = hashlib.new(algorithm)
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as handle:
        info = os.fstat(handle.fileno())
        if verified(info) == checksum:  # hashed earlier in this run, unchanged since
            return True
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != want.lower():
            return False
        if identity(os.fstat(handle.fileno())) == identity(info):
            remember(info, checksum)
    return True


def _bar(label: str, total: int) -> Callable[[int], None] | None:
    """A progress bar on stderr when it is a terminal (no bar in logs and pipes)."""
    if not sys.stderr.isatty() or total <= 0:
        return None
    label = printable(label, keep_newlines=False)  # a URL's name is anyone's text

    def show(done: int) -> None:
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done * 100 // total:3d}% {done >> 20}/{total >> 20} MiB")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
