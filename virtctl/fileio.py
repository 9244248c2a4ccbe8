"""Files: reading only regular files, private directories, and writing so that readers
see the old content or the new, never a part.

- `open_regular` opens a file to read only when it is a regular file: a FIFO would
  block the open or the read forever (an `apply`, or a watcher that then no longer
  reconciles nor stops), a device reads without end (/dev/zero), a socket or a
  directory cannot be read. It checks the path first (so a device is never even
  opened), opens with O_NONBLOCK (a FIFO swapped in after the check cannot block) and
  checks the opened descriptor again. With `follow=False` (the store's own files) it
  also refuses a symbolic link, by O_NOFOLLOW, so the check and the open see one file.
- `private_dir` checks that a directory of virtctl's (the sim store, the caches) is a
  real directory owned by this user and writable by no one else: whoever else owns or
  can write it could plant a symlink or a record there.
- `write_atomic` writes a temporary file beside the target (suffix `.tmp`, so a crash's
  leftover never looks like a record; made with O_EXCL|O_NOFOLLOW by mkstemp) and
  renames it over the target (a rename replaces a symlink, never follows it); with
  `fsync`, the data reaches the disk before the rename. A failed write (a full disk)
  leaves the old file whole and no temporary file, and its error names the target.

Used by the sim's store, the caches, spec loading and `export`; `tighten_umask` runs
first in every command, so what they create is never group- or world-writable.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from .errors import ErrorCode, Source, SpecError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for an error: "a FIFO (named pipe)", "a directory"..."""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


class NotRegularFile(OSError):
    """A path that is no regular file where one is read. An OSError (errno EINVAL) so
    that callers handling unreadable files handle it too; `strerror` says what it is."""

    def __init__(self, path: str | os.PathLike[str], mode: int) -> None:
        super().__init__(errno.EINVAL, f"{file_kind(mode)}, not a regular file", str(path))


class UnsafeDirectory(OSError):
    """A directory of virtctl's that another user could change; `strerror` says why."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(errno.EPERM, problem, str(path))


def open_regular(path: str | os.PathLike[str], *, follow: bool = True) -> BinaryIO:
    """`path` opened to read, if it is a regular file; else NotRegularFile. With
    `follow=False` a symbolic link is refused too (NotRegularFile)."""
    info = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(path, info.st_mode)
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = _open_checked(path, flags)
    return os.fdopen(fd, "rb")


def _open_checked(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """os.open, then the opened file must be regular (it may have been swapped since a
    check); a symlink refused by O_NOFOLLOW is reported as one."""
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and flags & os.O_NOFOLLOW:
            raise NotRegularFile(path, stat.S_IFLNK) from None
        if exc.errno == errno.ENXIO:  # a FIFO opened to write without a reader, a socket
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                raise exc from None
            raise NotRegularFile(path, mode) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotRegularFile(path, info.st_mode)
    return fd


def open_private(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """A file of virtctl's own (a store record, a log, a lock) opened without following
    a symlink and without blocking on a FIFO: a descriptor of a regular file, else
    NotRegularFile. `flags` are os.open's (O_RDONLY, O_WRONLY|O_APPEND|O_CREAT...)."""
    return _open_checked(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)


def read_private(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file of virtctl's own (see open_private)."""
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as handle:
        return handle.read()


def private_dir(path: str | os.PathLike[str], *, make: bool = True,
                follow: bool = False) -> None:
    """Check (making it first if missing and `make`) that `path` is a directory owned by
    this user and writable by no one else; else UnsafeDirectory. A symbolic link is
    refused unless `follow` (a directory the user named, e.g. $VIRTCTL_STATE_DIR)."""
    if make and not os.path.lexists(path):  # (a read-only file system says EROFS)
        with contextlib.suppress(FileExistsError):  # made by a racing run: checked below
            os.mkdir(path, 0o755)  # a symlink planted at its name stays, and is refused
    info = os.stat(path) if follow else os.lstat(path)
    problem = dir_problem(info)
    if problem is not None:
        raise UnsafeDirectory(path, problem)


def dir_problem(info: os.stat_result) -> str | None:
    """Why a directory with this (l)stat is not private to this user, or None."""
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link, not a directory; refused"
    if not stat.S_ISDIR(info.st_mode):
        return f"{file_kind(info.st_mode)}, not a directory; refused"
    me = os.geteuid()
    if info.st_uid != me:
        return (f"owned by uid {info.st_uid}, not by uid {me} running virtctl; refused "
                "(another user could change what virtctl reads there)")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"writable by its group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "refused (chmod go-w)")
    return None


def write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    try:
        import tempfile  # here: it imports random and shutil, which reads never need

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """`exc` with the target's name: a write's ENOSPC names no file, a temporary
    file's name means nothing to the user."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def tighten_umask() -> None:
    """Make sure nothing virtctl creates (state, caches, locks, records) is writable by
    group or others, whatever umask it was started with: at least 022."""
    current = os.umask(0o022)
    os.umask(current | 0o022)


def state_root(env: Mapping[str, str]) -> Path:
    """virtctl's state directory (the sim's state, local host locks): $VIRTCTL_STATE_DIR,
    else $XDG_STATE_HOME/virtctl, else ~/.local/state/virtctl."""
    if env.get("VIRTCTL_STATE_DIR"):
        return Path(env["VIRTCTL_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "virtctl"
    return Path.home() / ".local" / "state" / "virtctl"


def cache_path(env: Mapping[str, str]) -> str:
    """virtctl's cache directory, unchecked: $VIRTCTL_CACHE_DIR, else
    $XDG_CACHE_HOME/virtctl, else ~/.cache/virtctl (a str: every run starts here, and
    each Path costs several µs)."""
    if env.get("VIRTCTL_CACHE_DIR"):
        return env["VIRTCTL_CACHE_DIR"]
    if env.get("XDG_CACHE_HOME"):
        return os.path.join(env["XDG_CACHE_HOME"], "virtctl")
    return os.path.join(os.path.expanduser("~"), ".cache", "virtctl")


# Spec files: what the loader reads of a directory (reconciler/load/load.py's `expand`),
# here so that the CLI's no-op fast path (cli/noop.py) selects exactly the same files
# without importing the loader.
YAML_SUFFIXES = (".yaml", ".yml")
XML_SUFFIXES = (".xml",)
XEN_SUFFIXES = (".cfg",)
SPEC_SUFFIXES = YAML_SUFFIXES + XML_SUFFIXES + XEN_SUFFIXES


def walk_specs(folder: Path, root: Path, seen: set[Path],
          errors: list[SpecError] | None = None) -> Iterator[Path]:
    """Spec files under `folder`, sorted. A symlink may point anywhere inside `root` (the
    directory given), never outside it: a link planted in a watched directory must not
    make virtctl read files elsewhere. Each real directory is walked once (no loops)."""
    real = folder.resolve()
    if real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:  # unreadable (permissions), or gone since it was listed
        refused = SpecError(f"cannot list the directory: {exc.strerror}",
                            code=ErrorCode.INVALID_SPEC, source=Source(str(folder)))
        if errors is None or isinstance(exc, FileNotFoundError):
            raise refused from None
        errors.append(refused)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            target = Path(entry.path).resolve()
            if not target.is_relative_to(root):
                if entry.is_dir() or entry.name.lower().endswith(SPEC_SUFFIXES):
                    refused = SpecError(f"a symlink to {target}, outside {root}; refused",
                                        code=ErrorCode.INVALID_SPEC, source=Source(entry.path))
                    if errors is None:
                        raise refused
                    errors.append(refused)
                continue
        if entry.is_dir():
            yield from walk_specs(Path(entry.path), root, seen, errors)
        elif entry.name.lower().endswith(SPEC_SUFFIXES):
            yield Path(entry.path)
