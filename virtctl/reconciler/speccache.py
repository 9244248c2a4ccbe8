"""A content-addressed cache of loaded spec files, so re-reading unchanged files is cheap.

Loading a YAML file (parse, JSON Schema validation, conversion to XML) costs far more
than reading the result back: a no-op re-apply of 1,000 domains spends most of its time
there. An entry is keyed by the file's bytes and by a fingerprint of the code that
loads them (virtctl's version, the schema, the loader and converter sources), so a
hit returns exactly what a fresh load would; only files that loaded without error are
stored. `VIRTCTL_CACHE=0` turns it off. Location: `$VIRTCTL_CACHE_DIR`, else
`$XDG_CACHE_HOME/virtctl`, else `~/.cache/virtctl`.

What the caches hold decides what is applied (a spec) or skipped (a host in sync), so
their folder must be this user's own and writable by no one else (fileio.private_dir):
another user's folder is refused with a CacheError, and cache files are read without
following a symlink or blocking on a FIFO. Writes are atomic (fileio.write_atomic).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ErrorCode, ErrorDomain, Source, VirtctlError
from ..fileio import UnsafeDirectory, cache_path, private_dir, read_private, write_atomic
from ..model import DomainSpec, DomainState, NetworkSpec, UpdatePolicy

Spec = DomainSpec | NetworkSpec


class CacheError(VirtctlError):
    """The cache folder is not this user's own: one line naming it."""

    default_code = ErrorCode.OPERATION_INVALID
    default_domain = ErrorDomain.CLI


def cache_dir(env: Mapping[str, str]) -> Path | None:
    """The cache folder, checked if it exists (see the module doc); made when written."""
    if env.get("VIRTCTL_CACHE", "1") == "0":
        return None
    folder = cache_path(env)
    checked(folder, make=False)
    return Path(folder)


def checked(folder: str | os.PathLike[str], *, make: bool) -> bool:
    """Refuse (CacheError) a cache folder that is another user's or writable by others.
    With `make`, make it first (its parents too) if it is missing; False when it cannot
    be made (a read-only home): a cache that cannot be written is no cache."""
    try:
        if make:
            os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
        elif not os.path.lexists(folder):
            return False
        private_dir(folder, make=make)
    except UnsafeDirectory as exc:
        raise CacheError(f"cache directory {folder}: {exc.strerror}; or turn the caches "
                         "off with VIRTCTL_CACHE=0") from None
    except OSError:
        return False
    return True


@cache
def code_fingerprint() -> str:
    """virtctl's version and the sources whose output the caches hold (loading,
    converting, planning): a change to any of them empties every cache."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(__version__.encode())
    sources = [package / "schemas" / "spec.schema.json", package / "metadata.py",
               package / "xmlutil.py", package / "model.py", package / "capabilities.py",
               # rglob: since the layout split (issue 23) the loader, planner and
               # converters live in subpackages, which a glob of the top never saw.
               *sorted((package / "reconciler").rglob("*.py")),
               *sorted((package / "converters").rglob("*.py"))]
    for path in sources:
        with contextlib.suppress(OSError):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _key(text: str) -> str:
    return hashlib.sha256(code_fingerprint().encode() + b"\0" + text.encode()).hexdigest()


_KINDS: dict[str, type[DomainSpec] | type[NetworkSpec]] = {
    "domain": DomainSpec, "network": NetworkSpec,
}
# Fields whose JSON form is not the Python value itself.
_DECODERS: dict[str, Any] = {
    "state": DomainState,
    "update_policy": lambda v: None if v is None else UpdatePolicy(v),
    "networks": tuple,
    "macs": tuple,
    "lines": lambda v: tuple((str(n), int(line)) for n, line in v),
    "labels": lambda v: tuple((str(k), str(x)) for k, x in v),
    "safety": lambda v: tuple((str(k), str(x)) for k, x in v),
}


def _encode(spec: Spec) -> dict[str, Any]:
    # Every field but the source, whose file is the cache key's file anyway.
    out: dict[str, Any] = {"kind": "domain" if isinstance(spec, DomainSpec) else "network",
                           "line": spec.source.line}
    for f in fields(spec):
        if f.init and f.name != "source":
            value = getattr(spec, f.name)
            out[f.name] = [list(v) if isinstance(v, tuple) else v for v in value] \
                if isinstance(value, tuple) else value
    return out


def _decode(data: dict[str, Any], source: str) -> Spec:
    cls = _KINDS[data["kind"]]
    kwargs = {
        f.name: _DECODERS.get(f.name, lambda v: v)(data[f.name])
        for f in fields(cls) if f.init and f.name != "source"
    }
    return cls(source=Source(source, data["line"]), **kwargs)


class SyncMemo:
    """The sync keys (reconciler/memo.py) of objects found in sync on one host."""

    # Keys of objects no longer in sync are never looked up again: keep what this run
    # found, then older keys up to twice that (other spec sets applied to the same host).
    FLOOR = 2_000

    # Host keys (memo.host_key) of whole runs that planned nothing; a few, for the
    # different spec sets one host may be reconciled with.
    HOSTS = 8

    def __init__(self, folder: Path | None, uri: str) -> None:
        name = hashlib.sha256(uri.encode()).hexdigest()[:32]
        base = os.path.join(folder, "in-sync", name) if folder is not None else None
        if folder is not None:
            checked(os.path.join(folder, "in-sync"), make=False)
        self.path = Path(base + ".json") if base is not None else None
        self.hosts_path = Path(base + ".hosts") if base is not None else None

    def host_in_sync(self, key: str) -> bool:
        """Whether a run with this host key found everything in sync before. A small
        file of its own: a no-op run reads nothing else."""
        if self.hosts_path is None:
            return False
        try:  # keys are fixed-length hex, one a line: a substring match is exact
            return b"\n" + key.encode() + b"\n" in b"\n" + read_private(self.hosts_path)
        except OSError:
            return False

    def save_host(self, key: str) -> None:
        if self.hosts_path is None:
            return
        try:
            older = read_private(self.hosts_path).decode().split()
        except (OSError, ValueError):
            older = []
        if key in older:
            return
        keys = [key, *older][: self.HOSTS]
        if not checked(self.hosts_path.parent, make=True):
            return
        with contextlib.suppress(OSError):
            write_atomic(self.hosts_path, ("\n".join(keys) + "\n").encode())

    def load(self) -> frozenset[str]:
        if self.path is None:
            return frozenset()
        try:
            data = json.loads(read_private(self.path))
            return frozenset(str(k) for k in data) if isinstance(data, list) else frozenset()
        except (OSError, ValueError):
            return frozenset()

    def save(self, found: frozenset[str], previous: frozenset[str]) -> None:
        """Keep what was found in sync now, then older keys, within a bound."""
        if self.path is None or found <= previous:
            return
        keys = [*sorted(found), *sorted(previous - found)][: max(2 * len(found), self.FLOOR)]
        if not checked(self.path.parent, make=True):
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written is no cache
            write_atomic(self.path, json.dumps(keys).encode())


class SpecCache:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get(self, text: str, source: str) -> tuple[list[Spec], list[str]] | None:
        if self.folder is None:
            return None
        try:
            data = json.loads(read_private(self.folder / _key(text)))
            return [_decode(d, source) for d in data["specs"]], list(data["warnings"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, text: str, specs: list[Spec], warnings: list[str]) -> None:
        if self.folder is None:
            return
        payload = json.dumps({"specs": [_encode(s) for s in specs], "warnings": warnings})
        if not checked(self.folder, make=True):
            return
        with contextlib.suppress(OSError):
            write_atomic(self.folder / _key(text), payload.encode())
