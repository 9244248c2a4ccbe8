"""A sim host's snapshot fingerprint read straight from its store, without virtctl.model.

The CLI's no-op fast path (cli/noop.py) compares this with the fingerprint a full run
recorded (`Live.fingerprint`, SimDriver.snapshot): the same records (store.py's
domains/ and networks/ JSON files, read under the store's shared lock) hashed by the
same function (drivers/snapshot.py), field for field as SimDriver.snapshot builds them,
so the two agree exactly (tests/unit/test_noop_fastpath.py checks it). Anything odd
(a missing or unsafe folder, a damaged record) is None: the full path then reports it.

May import the foundation modules but virtctl.model, and drivers/snapshot.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from urllib.parse import unquote

from ...fileio import open_private, private_dir, read_private
from ..snapshot import DomainRead, NetworkRead, fingerprint


def _records(folder: str) -> list[tuple[str, dict[str, object]]]:
    private_dir(folder, make=False)
    out = []
    for entry in sorted(os.listdir(folder)):  # as SimStore.all lists them
        if not entry.endswith(".json") or entry.startswith("."):
            continue
        try:  # plain strings: a Path per record costs more than reading it
            data = json.loads(read_private(f"{folder}/{entry}"))
        except FileNotFoundError:
            continue  # removed since the listing
        out.append((unquote(entry[: -len(".json")]), data))
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
        return fingerprint(
            (DomainRead(name, d["uuid"], d["xml"], d["state"], d["autostart"],  # type: ignore[arg-type]
                        d["persistent"], d["id"], d["running_xml"])  # type: ignore[arg-type]
             for name, d in domains),
            (NetworkRead(name, n["uuid"], n["xml"], n["active"], n["autostart"],  # type: ignore[arg-type]
                         n["persistent"], n.get("running_xml"))  # type: ignore[arg-type]
             for name, n in networks))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
