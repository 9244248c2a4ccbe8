"""The per-host lock: two virtctl runs never interleave actions on one host, and a run
that waits says so.

The lock is an flock on a small file per host URI (see `lock_path`). The kernel drops an
flock when its process dies, however it dies, so a crashed holder never blocks anyone:
there is no stale lock to clean up. The holder writes who it is into the file (pid,
command, since when) so that a waiter can name it: "waiting for the lock on HOST held by
pid N (virtctl apply, since HH:MM:SS)", at once and then every `interval` seconds. A
waiter gives up after `timeout` seconds (None: waits as long as it takes) with a
`LockTimeout` naming the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ErrorCode, ErrorDomain, VirtctlError
from .uri import parse_uri

MACHINE_LOCK_DIR = Path("/run/lock/virtctl")
NOTICE_INTERVAL = 10.0  # seconds between "waiting for the lock" messages


class LockTimeout(VirtctlError):
    """The host's lock stayed held longer than --lock-timeout."""

    default_code = ErrorCode.TIMEOUT
    default_domain = ErrorDomain.CLI


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    command: str
    since: float  # time.time()

    def describe(self) -> str:
        alive = _alive(self.pid)
        clock = time.strftime("%H:%M:%S", time.localtime(self.since))
        state = "" if alive else ", which has exited"
        return f"pid {self.pid} ({self.command}, since {clock}{state})"


def lock_path(uri: str, state_root: Path) -> Path:
    """Where the lock for `uri` lives.

    A sim host is its state directory, so its lock lives there. A libvirt host is shared
    by every user of this machine (a root shell's `virtctl apply` and the watcher's
    systemd unit have different state directories), so its lock lives in one
    machine-wide place: $VIRTCTL_LOCK_DIR, else /run/lock/virtctl when it can be used,
    else the state directory."""
    name = hashlib.sha256(uri.encode()).hexdigest()[:24] + ".lock"
    if parse_uri(uri).driver == "sim":
        return state_root / "locks" / name
    for folder in (os.environ.get("VIRTCTL_LOCK_DIR"), MACHINE_LOCK_DIR):
        if folder and _usable(Path(folder)):
            return Path(folder) / name
    return state_root / "locks" / name


def _usable(folder: Path) -> bool:
    try:
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def command_name() -> str:
    """"virtctl VERB" for this process, for the holder record."""
    verb = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    return f"virtctl {verb}".strip()


@contextlib.contextmanager
def host_lock(
    uri: str,
    state_root: Path,
    *,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    command: str | None = None,
    interval: float = NOTICE_INTERVAL,
) -> Iterator[None]:
    """Hold the lock on `uri` for the block. Waiting, `on_wait` gets a line naming the
    holder at once and every `interval` seconds; after `timeout` seconds, LockTimeout."""
    path = lock_path(uri, state_root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = _open(path)
    try:
        _acquire(fd, uri, timeout=timeout, on_wait=on_wait, interval=interval)
        writable = _record(fd, Holder(os.getpid(), command or command_name(), time.time()))
        try:
            yield
        finally:
            if writable:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    # O_NOFOLLOW: in a shared lock directory, a planted symlink must not redirect us.
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_CREAT
    try:
        return os.open(path, flags | os.O_RDWR, 0o644)
    except PermissionError:
        # Another user's lock file: flock works on a read-only descriptor too.
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)


def _acquire(fd: int, uri: str, *, timeout: float | None,
             on_wait: Callable[[str], None] | None, interval: float) -> None:
    if _try(fd):
        return
    began = time.monotonic()
    next_notice = began
    delay = 0.05
    while True:
        now = time.monotonic()
        if timeout is not None and now - began >= timeout:
            raise LockTimeout(
                f"gave up after waiting {timeout:g} s for the lock on {uri}, held by "
                f"{_holder_text(fd)}; try again later, or raise --lock-timeout")
        if on_wait is not None and now >= next_notice:
            on_wait(f"waiting for the lock on {uri} held by {_holder_text(fd)}")
            next_notice = now + interval
        wake = min(delay, next_notice - now)
        if timeout is not None:
            wake = min(wake, began + timeout - now)
        time.sleep(max(wake, 0.01))
        delay = min(delay * 2, 0.5)
        if _try(fd):
            return


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _record(fd: int, holder: Holder) -> bool:
    data = json.dumps({"pid": holder.pid, "command": holder.command,
                       "since": holder.since}).encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        return False  # a read-only descriptor: waiters will not know our name
    return True


def read_holder(fd: int) -> Holder | None:
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Holder(int(doc["pid"]), str(doc["command"]), float(doc["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _holder_text(fd: int) -> str:
    holder = read_holder(fd)
    return holder.describe() if holder is not None else "another process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
