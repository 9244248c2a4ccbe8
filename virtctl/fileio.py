"""Writing a file so that readers see the old content or the new, never a part.

Used by the sim's store, the caches and `export`; `tighten_umask` runs first in every
command, so what they create is never group- or world-writable. Writes a temporary file beside the
target (suffix `.tmp`, so a crash's leftover never looks like a record) and renames it
over the target; with `fsync`, the data reaches the disk before the rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def tighten_umask() -> None:
    """Make sure nothing virtctl creates (state, caches, locks, records) is writable by
    group or others, whatever umask it was started with: at least 022."""
    current = os.umask(0o022)
    os.umask(current | 0o022)
