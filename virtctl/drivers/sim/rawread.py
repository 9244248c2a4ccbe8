"""A sim host's snapshot fingerprint, read straight from its store without virtctl.model.

SimDriver.snapshot's `Live.fingerprint` is `records_fingerprint` of the bytes of every
domain and network record it read (store.py's domains/ and networks/ JSON files, under
the store's shared lock): a superset of what the snapshot holds (ids too). The CLI's
no-op fast path (cli/noop.py) reads the same files the same way (`store_fingerprint`)
and hashes them with the same function, with no JSON parse, so the two agree exactly
(tests/unit/cli/test_noop_fastpath.py checks it). Anything odd (a missing or unsafe
folder, a record that is no regular file) is None: the full path then reports it.

May import the foundation modules but virtctl.model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from ...fileio import open_private, private_dir, read_private


def records_fingerprint(domains: Iterable[tuple[str, bytes]],
                        networks: Iterable[tuple[str, bytes]]) -> str:
    """A hash of every record by kind, name and bytes, each length-prefixed, in the
    order given (the store lists them sorted by file name)."""
    digest = hashlib.sha256(b"virtctl-sim-records-1")
    update = digest.update
    for kind, records in ((b"d", domains), (b"n", networks)):
        for name, raw in records:
            encoded = name.encode()
            update(b"%s%d:%s%d:" % (kind, len(encoded), encoded, len(raw)))
            update(raw)
    return digest.hexdigest()


def _records(folder: str) -> list[tuple[str, bytes]]:
    private_dir(folder, make=False)
    out = []
    for entry in sorted(os.listdir(folder)):  # as SimStore.all_read lists them
        if not entry.endswith(".json") or entry.startswith("."):
            continue
        try:  # plain strings: a Path per record costs more than reading it
            raw = read_private(f"{folder}/{entry}")
        except FileNotFoundError:
            continue  # removed since the listing
        out.append((unquote(entry[: -len(".json")]), raw))
    return out


def store_fingerprint(root: Path) -> str | None:
    """The fingerprint SimDriver.snapshot gives the sim host stored at `root`, or None
    when it cannot be read here as the driver would read it."""
    try:
        for folder in (root.parent.parent, root.parent, root):
            private_dir(folder, make=False, follow=folder == root.parent.parent)
        if not os.path.lexists(root / "lock"):
            return None
        fd = open_private(root / "lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            domains = _records(str(root / "domains"))
            networks = _records(str(root / "networks"))
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    except (OSError, ValueError):
        return None
    return records_fingerprint(domains, networks)
