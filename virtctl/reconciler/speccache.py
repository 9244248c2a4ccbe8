"""A content-addressed cache of loaded spec files, so re-reading unchanged files is cheap.

Loading a YAML file (parse, JSON Schema validation, conversion to XML) costs far more
than reading the result back: a no-op re-apply of 1,000 domains spends most of its time
there. An entry is keyed by the file's bytes and by a fingerprint of the code that
loads them (virtctl's version, the schema, the loader and converter sources), so a
hit returns exactly what a fresh load would; only files that loaded without error are
stored. `VIRTCTL_CACHE=0` turns it off. Location: `$VIRTCTL_CACHE_DIR`, else
`$XDG_CACHE_HOME/virtctl`, else `~/.cache/virtctl`.
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
from ..errors import Source
from ..fileio import write_atomic
from ..model import DomainSpec, DomainState, NetworkSpec, UpdatePolicy

Spec = DomainSpec | NetworkSpec


def cache_dir(env: Mapping[str, str]) -> Path | None:
    if env.get("VIRTCTL_CACHE", "1") == "0":
        return None
    # os.path, then one Path: every run starts here, and each Path costs several µs.
    if env.get("VIRTCTL_CACHE_DIR"):
        return Path(env["VIRTCTL_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME"):
        return Path(os.path.join(env["XDG_CACHE_HOME"], "virtctl"))
    return Path(os.path.join(os.path.expanduser("~"), ".cache", "virtctl"))


@cache
def code_fingerprint() -> str:
    """virtctl's version and the sources whose output the caches hold (loading,
    converting, planning): a change to any of them empties every cache."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(__version__.encode())
    sources = [package / "schemas" / "spec.schema.json", package / "metadata.py",
               package / "xmlutil.py", package / "model.py", package / "capabilities.py",
               *sorted((package / "reconciler").glob("*.py")),
               *sorted((package / "converters").glob("*.py"))]
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
        self.path = Path(base + ".json") if base is not None else None
        self.hosts_path = Path(base + ".hosts") if base is not None else None

    def host_in_sync(self, key: str) -> bool:
        """Whether a run with this host key found everything in sync before. A small
        file of its own: a no-op run reads nothing else."""
        if self.hosts_path is None:
            return False
        try:  # keys are fixed-length hex, one a line: a substring match is exact
            with open(self.hosts_path, "rb") as stream:
                return b"\n" + key.encode() + b"\n" in b"\n" + stream.read()
        except OSError:
            return False

    def save_host(self, key: str) -> None:
        if self.hosts_path is None:
            return
        try:
            older = self.hosts_path.read_text().split()
        except (OSError, ValueError):
            older = []
        if key in older:
            return
        keys = [key, *older][: self.HOSTS]
        with contextlib.suppress(OSError):
            self.hosts_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.hosts_path, ("\n".join(keys) + "\n").encode())

    def load(self) -> frozenset[str]:
        if self.path is None:
            return frozenset()
        try:
            data = json.loads(self.path.read_bytes())
            return frozenset(str(k) for k in data) if isinstance(data, list) else frozenset()
        except (OSError, ValueError):
            return frozenset()

    def save(self, found: frozenset[str], previous: frozenset[str]) -> None:
        """Keep what was found in sync now, then older keys, within a bound."""
        if self.path is None or found <= previous:
            return
        keys = [*sorted(found), *sorted(previous - found)][: max(2 * len(found), self.FLOOR)]
        with contextlib.suppress(OSError):  # a cache that cannot be written is no cache
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(keys).encode())


class SpecCache:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get(self, text: str, source: str) -> tuple[list[Spec], list[str]] | None:
        if self.folder is None:
            return None
        try:
            data = json.loads((self.folder / _key(text)).read_bytes())
            return [_decode(d, source) for d in data["specs"]], list(data["warnings"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, text: str, specs: list[Spec], warnings: list[str]) -> None:
        if self.folder is None:
            return
        payload = json.dumps({"specs": [_encode(s) for s in specs], "warnings": warnings})
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / _key(text), payload.encode())
