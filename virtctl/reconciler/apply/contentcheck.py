"""Local content files checked before the first action (docs/storage.md, "Data safety").

A volume's `content.file` is read and hashed while the specs are checked, not only
while it is uploaded: a missing or unreadable file, one that is not a regular file (a
FIFO would hang the run), or a wrong checksum stops the run with an error naming the
spec and the file before anything is made (a pool created, then its volume refused,
would be half an apply). The file is streamed through the hash, never held whole.

The digest found is remembered for the file as it was (device, inode, size, mtime and
ctime: a write changes ctime, a replacement the inode), so the upload of the same run
takes it instead of hashing the file a second time; a file changed in between is
hashed again as it is uploaded. Reads files; plans nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterable

from ...errors import ErrorCode, Source, SpecError
from ...model import VolumeSpec

_CHUNK = 1 << 20
# (dev, inode, size, mtime_ns, ctime_ns) -> "ALGO:HEX" verified by this process
_VERIFIED: dict[tuple[int, int, int, int, int], str] = {}
_LOCK = threading.Lock()


def identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    """A file as it is now: the same file (device, inode), not written since (size,
    mtime, and ctime, which every write and rename moves and no one can set)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def verified(info: os.stat_result) -> str | None:
    """The checksum this file was found to have, if it is unchanged since (by any path:
    a local content file, or a download in virtctl's cache)."""
    with _LOCK:
        return _VERIFIED.get(identity(info))


def remember(info: os.stat_result, checksum: str) -> None:
    with _LOCK:
        if len(_VERIFIED) > 4096:  # a long-running watch: forget old files' states
            _VERIFIED.clear()
        _VERIFIED[identity(info)] = checksum


def content_source(spec: VolumeSpec, key: str) -> Source:
    """The spec's line, with its content key (file, url, checksum) as its format spells
    it."""
    xml = spec.source.file.lower().endswith(".xml")
    path = (f"metadata/virtctl:runtime/@{'checksum' if key == 'checksum' else 'content-' + key}"
            if xml else f"content.{key}")
    return Source(spec.source.file, spec.source.line, path)


def check_content(volumes: Iterable[VolumeSpec]) -> list[SpecError]:
    """Each local content file of `volumes` read and hashed; one error per spec whose
    file cannot be read or does not match its checksum. Each file is hashed once per
    checksum asked for."""
    errors: list[SpecError] = []
    for spec in volumes:
        content = spec.content
        if content is None or content.file is None:
            continue
        problem = _problem(content.file, content.checksum)
        if problem is not None:
            message, key = problem
            errors.append(SpecError(f"volume '{spec.pool}/{spec.name}': {message}",
                                    code=ErrorCode.INVALID_SPEC,
                                    source=content_source(spec, key)))
    return errors


def _problem(path: str, checksum: str | None) -> tuple[str, str] | None:
    """What is wrong with the file for this checksum, and which key to blame."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"cannot read content file {path}: {exc.strerror}", "file"
    with os.fdopen(fd, "rb", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return f"content file {path} is not a regular file", "file"
        if checksum is None:
            return None
        if verified(info) == checksum:
            return None
        algorithm, _, want = checksum.partition(":")
        digest = hashlib.new(algorithm)
        try:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        except OSError as exc:
            return f"cannot read content file {path}: {exc.strerror}", "file"
        got = f"{algorithm}:{digest.hexdigest()}"
        if digest.hexdigest() != want.lower():
            return (f"content file {path} does not match its checksum {checksum} "
                    f"(it has {got})", "checksum")
        if identity(os.fstat(fd)) == identity(info):  # not written while hashed
            remember(info, checksum)
    return None
