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
one, so a crash mid-write (or a full disk) leaves the previous record whole; the lock
keeps two virtctl processes from interleaving read-modify-write cycles.

The store trusts nothing it finds there: its directories must be real directories owned
by the running user and writable by no one else (fileio.private_dir), checked when the
store is opened and when a directory is made, and its files are opened without
following a symlink (O_NOFOLLOW) or blocking on a FIFO, and must be regular files. A
fault (a damaged record, a read-only or full file system, a planted symlink) is a
StoreError: one line naming the file, the run stops, nothing already stored is changed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from ...errors import DriverError, ErrorCode, ErrorDomain
from ...fileio import (
    NotRegularFile,
    UnsafeDirectory,
    open_private,
    private_dir,
    read_private,
    write_atomic,
)
from ...model import Kind

Record = dict[str, Any]
_EVENT_LOG_MAX = 1 << 20  # rotate events.log past 1 MiB; subscribers re-sync from the start


class StoreError(DriverError):
    """The sim's state directory cannot be used as it is: its message names the file."""

    default_code = ErrorCode.OPERATION_FAILED
    default_domain = ErrorDomain.SIM


def store_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> StoreError:
    """One line for a failed file operation in the store: the file, then what failed."""
    where = exc.filename if exc.filename is not None else path
    what = exc.strerror or str(exc)
    if isinstance(exc, NotRegularFile):
        what += "; refused (the sim's state files are never followed or waited on)"
    elif isinstance(exc, UnsafeDirectory):
        pass
    elif exc.errno == errno.EROFS:
        what += " (the sim's state directory must be writable to change anything)"
    return StoreError(f"sim state {where}: {what}" if where is not None else f"sim state: {what}")


@contextlib.contextmanager
def faults_named(path: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Turn an OSError inside into a StoreError naming its file (or `path`)."""
    try:
        yield
    except OSError as exc:
        raise store_error(exc, path) from None


def _filename(name: str) -> str:
    # Names may hold any character but '/'; quote keeps file names portable and reversible.
    return quote(name, safe="") + ".json"


def _decode(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:  # JSONDecodeError, or bytes that are no UTF-8
        where = f" ({exc.msg}: byte {exc.pos})" if isinstance(exc, json.JSONDecodeError) \
            else ""
        raise StoreError(f"sim state {path}: a damaged record, not JSON{where}; nothing was "
                         "changed: restore the file, or remove it to forget that object") from None


class SimStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.fsync = fsync
        with faults_named(root):
            # The state root may be a symlink the user made; below it, nothing may be.
            state = root.parent.parent
            if not os.path.exists(state):  # (not a FIFO there: private_dir names it)
                state.mkdir(parents=True, exist_ok=True)
            private_dir(state, follow=True)
            private_dir(root.parent)  # sim/
            private_dir(root)
            for kind in Kind:
                private_dir(root / f"{kind}s")
            for folder in ("index", "pools-data"):
                if os.path.lexists(root / folder):
                    private_dir(root / folder, make=False)
        self._lock_path = root / "lock"

    def private_dir(self, path: Path) -> None:
        """Make (if missing) and check a directory of the store (index/KIND, a pool's data)."""
        with faults_named(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            private_dir(path.parent)
            private_dir(path)

    @contextlib.contextmanager
    def locked(self, *, exclusive: bool) -> Iterator[None]:
        # O_CREAT without O_TRUNC: an existing lock opens on a read-only file system too.
        with faults_named(self._lock_path):
            fd = open_private(self._lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _dir(self, kind: Kind) -> Path:
        return self.root / f"{kind}s"

    def _read(self, path: Path) -> Any:
        """The JSON in `path`, or None if it does not exist."""
        try:
            data = read_private(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store_error(exc, path) from None
        return _decode(path, data)

    def get(self, kind: Kind, name: str) -> Record | None:
        data: Record | None = self._read(self._dir(kind) / _filename(name))
        return data

    def all(self, kind: Kind) -> Iterator[tuple[str, Record]]:
        for name, data, _raw in self.all_read(kind):
            yield name, data

    def all_read(self, kind: Kind) -> Iterator[tuple[str, Record, bytes]]:
        """Every record of `kind`, sorted by file name, with the bytes it was read from
        (the snapshot's fingerprint hashes them: rawread.py)."""
        folder = self._dir(kind)
        with faults_named(folder):
            entries = sorted(os.listdir(folder))
        for entry in entries:
            if not entry.endswith(".json") or entry.startswith("."):
                continue
            path = folder / entry
            try:
                raw = read_private(path)
            except FileNotFoundError:
                continue  # removed since the listing
            except OSError as exc:
                raise store_error(exc, path) from None
            yield unquote(entry[: -len(".json")]), _decode(path, raw), raw

    def put(self, kind: Kind, name: str, record: Record) -> None:
        self._write_atomic(self._dir(kind) / _filename(name), json.dumps(record).encode())

    def delete(self, kind: Kind, name: str) -> None:
        path = self._dir(kind) / _filename(name)
        with faults_named(path), contextlib.suppress(FileNotFoundError):
            path.unlink()  # unlinks a symlink itself, never its target

    def holder(self, index: str, value: str) -> str | None:
        """The name recorded as holding `value` in `index`, if any."""
        path = self.root / "index" / index / quote(value, safe="")
        try:
            return read_private(path).decode()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise StoreError(f"sim state {path}: a damaged index entry, not UTF-8 text; "
                             "remove it (the sim makes it again)") from None
        except OSError as exc:
            raise store_error(exc, path) from None

    def claim(self, index: str, value: str, name: str) -> None:
        folder = self.root / "index" / index
        self.private_dir(folder)
        self._write_atomic(folder / quote(value, safe=""), name.encode())

    def release(self, index: str, value: str) -> None:
        path = self.root / "index" / index / quote(value, safe="")
        with faults_named(path), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def next_id(self) -> int:
        path = self.root / "counter.json"
        data = self._read(path)
        try:
            value = 1 if data is None else int(data["next_id"])
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"sim state {path}: a damaged record, no next_id; restore it "
                             "or remove it (ids start again at 1)") from None
        self._write_atomic(path, json.dumps({"next_id": value + 1}).encode())
        return value

    def read_json(self, name: str) -> Any:
        return self._read(self.root / name)

    def write_json(self, name: str, value: Any) -> None:
        self._write_atomic(self.root / name, json.dumps(value, indent=1).encode())

    @contextlib.contextmanager
    def event_log(self) -> Iterator[Callable[[Record], None]]:
        """events.log opened (never through a symlink) before a change is made, so a log
        that cannot be written stops the change rather than follow it; yields `append`.
        A line that cannot be written whole (a full disk) is cut off again, so readers
        never see a part of one."""
        path = self.root / "events.log"
        with faults_named(path):
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_size > _EVENT_LOG_MAX:
                    path.unlink()
            fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

        def append(event: Record) -> None:
            line = json.dumps(event).encode() + b"\n"
            with faults_named(path):
                size = os.fstat(fd).st_size
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise

        try:
            yield append
        finally:
            os.close(fd)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        with faults_named(path):
            write_atomic(path, data, fsync=self.fsync)
