"""What both drivers' storage calls share: the STATE_VOLUME read and the refusals they
make themselves rather than leave to the host."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from ..errors import DriverError, ErrorCode, ErrorDomain
from ..model import STATE_VOLUME

RECORD_LIMIT = 1 << 20  # `storage()` reads STATE_VOLUME up to this size


def record_text(data: bytes) -> str:
    """STATE_VOLUME's bytes as text: an upload overwrites a volume's first bytes and keeps
    the rest (libvirt's semantics), so zero bytes after the text are padding."""
    return data.rstrip(b"\0").decode("utf-8", errors="replace")


def image_size(path: str | os.PathLike[str]) -> int:
    """The capacity a file gives as a volume: a qcow2 image's virtual size (its header,
    bytes 24-31, big-endian), else the file's size."""
    return probe_image(path)[1]


def probe_image(path: str | os.PathLike[str]) -> tuple[str, int, str | None]:
    """(format, capacity, backing file) of an image file as libvirt's dir pool reports
    them: qcow2 (its header gives the virtual size and the backing file) or raw."""
    # O_NONBLOCK: a FIFO put in a pool's directory must not hang the run.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
        info = os.fstat(handle.fileno())
        header = handle.read(32) if stat.S_ISREG(info.st_mode) else b""
        if len(header) < 32 or header[:4] != b"QFI\xfb":
            return "raw", info.st_size, None
        offset, size = int.from_bytes(header[8:16], "big"), int.from_bytes(header[16:20], "big")
        backing = None
        if offset and 0 < size < 1024:
            handle.seek(offset)
            backing = handle.read(size).decode("utf-8", "replace") or None
            if backing and not backing.startswith("/") and ":" not in backing:
                backing = os.path.join(os.path.dirname(os.fspath(path)), backing)
        return "qcow2", int.from_bytes(header[24:32], "big"), backing


def shrink_refused(pool: str, name: str, current: int, capacity: int,
                   domain: ErrorDomain) -> DriverError:
    """Both drivers refuse a smaller capacity themselves (libvirt would, without its
    SHRINK flag, but with other codes per pool type)."""
    return DriverError(
        f"cannot resize volume '{pool}/{name}' to {capacity} bytes: can't shrink capacity "
        f"below current capacity ({current} bytes)",
        code=ErrorCode.OPERATION_INVALID, domain=domain)


def records_unreadable(pool: str, domain: ErrorDomain) -> DriverError:
    return DriverError(
        f"cannot read virtctl's records in storage pool '{pool}' ({STATE_VOLUME}): "
        "libvirt refuses volume downloads on a read-only connection",
        code=ErrorCode.OPERATION_INVALID, domain=domain)


def read_chunk(data: BinaryIO, size: int, key: str) -> bytes:
    """Up to `size` bytes of an upload's data; a failed read becomes a DriverError."""
    try:
        return data.read(size)
    except OSError as exc:
        raise DriverError(f"cannot upload to volume '{key}': cannot read the data: {exc}",
                          code=ErrorCode.OPERATION_FAILED, domain=ErrorDomain.DRIVER) from exc
