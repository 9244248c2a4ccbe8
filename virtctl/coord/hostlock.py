"""The per-host lock: two virtctl runs never interleave actions on one host, and a run
that waits says so.

The lock is an flock on a small file per host URI (see `lock_path`). The kernel drops an
flock when its process dies, however it dies, so a crashed holder never blocks anyone:
there is no stale lock to clean up. The holder writes who it is into the file (pid,
command, since when) so that a waiter can name it: "waiting for the lock on HOST held by
pid N (virtctl apply, since HH:MM:SS)", at once and then every `interval` seconds. A
waiter gives up after `timeout` seconds (None: waits as long as it takes) with a
`LockTimeout` naming the holder.

Whoever can write the lock folder holds this user's locks and writes the records it
prints, so the folder must be a real directory of this user's that no one else can
write, below directories no one else can change (`UnsafeLockDir` otherwise, naming it
and the fix); lock files are 0600 files of this user's, opened through the checked
folder without following symlinks. A record is only text: printed escaped and cut.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pwd
import shlex
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from ..errors import ErrorCode, ErrorDomain, VirtctlError
from ..printable import printable
from ..uri import parse_uri

MACHINE_LOCK_DIR = Path("/run/lock/virtctl")
NOTICE_INTERVAL = 10.0  # seconds between "waiting for the lock" messages
COMMAND_LIMIT = 80  # characters of a holder's command shown
PID_MAX = 1 << 22  # the kernel's largest pid_max


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
        """"pid N (virtctl apply, since HH:MM:SS)". The record is only text in a file:
        its command is printed with control characters escaped, cut to
        COMMAND_LIMIT, and a time no clock can show is left out."""
        alive = _alive(self.pid)
        try:
            clock = ", since " + time.strftime("%H:%M:%S", time.localtime(self.since))
        except (OverflowError, ValueError, OSError):  # nan, inf, 1e300
            clock = ""
        state = "" if alive else ", which has exited"
        command = self.command[:COMMAND_LIMIT] + ("..." if len(self.command) > COMMAND_LIMIT
                                                   else "")
        return f"pid {self.pid} ({printable(command, keep_newlines=False)}{clock}{state})"


def lock_path(uri: str, state_root: Path) -> Path:
    """Where the lock for `uri` lives.

    A sim host is its state directory, so its lock lives there. A libvirt host is shared
    by every user of this machine (a root shell's `virtctl apply` and the watcher's
    systemd unit have different state directories), so its lock lives in one
    machine-wide place: $VIRTCTL_LOCK_DIR, else /run/lock/virtctl when it can be used,
    else the state directory. Raises UnsafeLockDir for a folder another user could
    take over (see `_folder`)."""
    name = hashlib.sha256(uri.encode()).hexdigest()[:24] + ".lock"
    return _folder(uri, state_root) / name


def _folder(uri: str, state_root: Path) -> Path:
    """The lock folder for `uri`, made (0700) if missing and checked: it must be a real
    directory (not a symlink), owned by this user and writable by no one else, or
    whoever owns or can write it holds this user's locks and writes the holder records
    it prints. $VIRTCTL_LOCK_DIR must be usable or the run stops. /run/lock/virtctl is
    made by root only; it is skipped (for the state directory) when it cannot be made,
    when it is missing and this is not root, or when it is root's and this is not root:
    a folder this user could never write."""
    own = state_root / "locks"
    if parse_uri(uri).driver == "sim":
        return _checked(own, explicit=True)
    given = os.environ.get("VIRTCTL_LOCK_DIR")
    if given:
        return _checked(Path(given), explicit=True, hint="or unset VIRTCTL_LOCK_DIR")
    machine = _checked(MACHINE_LOCK_DIR, explicit=False,
                       hint="or set VIRTCTL_LOCK_DIR to a directory you own")
    return machine if machine is not None else _checked(own, explicit=True)


class UnsafeLockDir(VirtctlError):
    """A lock folder another user could take over: a symlink, someone else's, or
    writable by others."""

    default_code = ErrorCode.OPERATION_INVALID
    default_domain = ErrorDomain.CLI


@overload
def _checked(folder: Path, *, explicit: Literal[True], hint: str = "") -> Path: ...
@overload
def _checked(folder: Path, *, explicit: bool, hint: str = "") -> Path | None: ...
def _checked(folder: Path, *, explicit: bool, hint: str = "") -> Path | None:
    me = os.geteuid()
    try:
        try:
            info = folder.lstat()
        except FileNotFoundError:
            if not explicit and me != 0:
                return None  # only root makes the machine-wide folder (its runs use it)
            folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # a racing run made it: check it
                folder.mkdir(mode=0o700)  # never follows a symlink planted at its name
            info = folder.lstat()
    except OSError as exc:
        if not explicit:
            return None  # no /run/lock here: the state directory
        raise UnsafeLockDir(f"cannot use the lock directory {folder}: "
                            f"{exc.strerror or exc}") from None
    if not explicit and info.st_uid == 0 and me != 0 and stat.S_ISDIR(info.st_mode):
        return None  # root's: this user's runs lock in their own state directory
    problem = _unsafe(info, me)
    if problem is not None:
        raise _refused(folder, problem, hint)
    above = _unsafe_ancestor(folder, me)
    if above is not None:
        raise _refused(folder, above, hint, fix="keep it in a directory only you and root "
                       "can change")
    return folder


def _unsafe_ancestor(folder: Path, me: int) -> str | None:
    """A directory above `folder` (as written, and as symlinks resolve it) that someone
    but root and this user could change: whoever can rename entries there can swap the
    lock folder for another between two runs, and two runs would then lock different
    files. A sticky directory (/tmp, /run/lock) lets no one rename what is not theirs."""
    written = Path(os.path.abspath(folder)).parents
    for above in dict.fromkeys([*written, *Path(os.path.realpath(folder)).parents]):
        try:
            info = above.lstat()
        except OSError:
            continue
        if info.st_uid not in (0, me):
            return f"{above} above it is owned by {_user(info.st_uid)}"
        if (not stat.S_ISLNK(info.st_mode) and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                and not info.st_mode & stat.S_ISVTX):
            return (f"{above} above it is writable by its group or others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}) and not sticky")
    return None


def _refused(folder: Path, problem: str, hint: str = "", *,
             fix: str | None = None) -> UnsafeLockDir:
    quoted = shlex.quote(str(folder))
    fix = fix or (f"make it private (chmod 700 {quoted})" if problem.startswith("writable")
                  else f"remove it (rm -r {quoted}; virtctl makes it again)")
    return UnsafeLockDir(
        f"refusing the lock directory {folder}: {problem}, so another user could hold "
        f"or fake virtctl's locks; {fix}{', ' + hint if hint else ''}")


def _unsafe(info: os.stat_result, me: int) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != me:
        return f"it is owned by {_user(info.st_uid)}, not by {_user(me)} running virtctl"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by its group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@contextlib.contextmanager
def host_lock(
    uri: str,
    state_root: Path,
    *,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    command: str = "virtctl",
    interval: float = NOTICE_INTERVAL,
) -> Iterator[None]:
    """Hold the lock on `uri` for the block. Waiting, `on_wait` gets a line naming the
    holder at once and every `interval` seconds; after `timeout` seconds, LockTimeout.
    `command` is what waiters see of this run ("virtctl apply")."""
    path = lock_path(uri, state_root)
    fd = _open(path)
    try:
        _acquire(fd, uri, timeout=timeout, on_wait=on_wait, interval=interval)
        writable = _record(fd, Holder(os.getpid(), command, time.time()))
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
    """The lock file, opened through its folder (checked again once open, so a folder
    swapped after `lock_path` looked at it is caught), read-write, without following a
    symlink (O_NOFOLLOW) or blocking on a FIFO (O_NONBLOCK); then checked: a regular
    file of this user's. Anyone who can open a lock file can flock it and stall this
    user's runs, so it is made 0600 (one an older virtctl made 0644 is tightened)."""
    me = os.geteuid()
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                         | os.O_CLOEXEC)
    except OSError as exc:
        raise _refused(path.parent, "it is a symbolic link" if exc.errno == errno.ELOOP
                       else exc.strerror or str(exc)) from None
    try:
        problem = _unsafe(os.fstat(folder), me)
        if problem is not None:
            raise _refused(path.parent, problem)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path.name, flags, 0o600, dir_fd=folder)
        except OSError as exc:
            reason = ("it is a symbolic link" if exc.errno == errno.ELOOP
                      else exc.strerror or str(exc))
            raise UnsafeLockDir(f"refusing the lock file {path}: {reason}; remove it "
                                f"(rm {shlex.quote(str(path))})") from None
    finally:
        os.close(folder)
    try:
        info = os.fstat(fd)
        problem = ("it is not a regular file" if not stat.S_ISREG(info.st_mode)
                   else f"it is owned by {_user(info.st_uid)}, not by {_user(me)}"
                   if info.st_uid != me else None)
        if problem is not None:
            raise UnsafeLockDir(f"refusing the lock file {path}: {problem}; remove it "
                                f"(rm {shlex.quote(str(path))})")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


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
        pid = doc["pid"]
        if type(pid) is not int or not 0 < pid <= PID_MAX:
            return None  # os.kill(0 or -1, 0) would ask about whole process groups
        return Holder(pid, str(doc["command"]), float(doc["since"]))
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
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
