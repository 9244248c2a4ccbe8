"""Many hosts: which connection each spec targets, and one reconcile per host at a time.

A spec may name its host with `connect:` (a libvirt URI, or an alias from a `kind: Hosts`
document: `hosts: {web: qemu+ssh://root@web1/system}`); specs that name none go to the
connection chosen on the command line. `group_by_host` is pure. `host_lock` serialises
virtctl runs against one host (an flock per URI: see `lock_path`), and
`run_per_host` runs a function for every host concurrently (bounded), turning each host's
failure into that host's result only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import (
    ErrorCode,
    ErrorDomain,
    InternalError,
    Source,
    SpecError,
    SpecErrors,
    VirtctlError,
)
from .model import Desired, DomainSpec, HostAlias, NetworkSpec, PoolSpec, VolumeSpec
from .uri import parse_uri

T = TypeVar("T")
R = TypeVar("R")


def resolve(connect: str, aliases: Mapping[str, HostAlias]) -> str:
    """An alias's URI, or `connect` itself when it is a URI."""
    if connect in aliases:
        return aliases[connect].uri
    return connect


def _uri_problem(connect: str, uri: str) -> str | None:
    if "://" not in uri:
        return (f"connect: {connect!r} is neither a URI nor a host named in a "
                "'kind: Hosts' document")
    try:
        parse_uri(uri)
    except SpecError as exc:
        return exc.message
    return None


def group_by_host(
    desired: Desired, *, default_uri: str, aliases: Mapping[str, HostAlias] | None = None
) -> dict[str, Desired]:
    """Split the specs by the host they target; raise SpecErrors for unknown hosts."""
    aliases = aliases or {}
    tables: dict[type, dict[str, dict[str, Any]]] = {
        DomainSpec: {}, NetworkSpec: {}, PoolSpec: {}, VolumeSpec: {}}
    errors: list[SpecError] = []
    parse_uri(default_uri)  # a bad --connect is the command line's error, not a spec's
    specs: list[DomainSpec | NetworkSpec | PoolSpec | VolumeSpec] = [
        *desired, *desired.pools.values(), *desired.volumes.values()]
    for spec in specs:
        uri = default_uri
        if spec.connect is not None:
            uri = resolve(spec.connect, aliases)
            problem = _uri_problem(spec.connect, uri)
            if problem:
                errors.append(SpecError(problem, code=ErrorCode.UNKNOWN_REFERENCE, source=Source(
                    spec.source.file, spec.source.line, "connect")))
                continue
        tables[type(spec)].setdefault(uri, {})[spec.key.name] = spec
    if errors:
        raise SpecErrors(errors)
    uris = sorted({uri for table in tables.values() for uri in table})
    return {
        uri: replace(desired, domains=tables[DomainSpec].get(uri, {}),
                     networks=tables[NetworkSpec].get(uri, {}),
                     pools=tables[PoolSpec].get(uri, {}),
                     volumes=tables[VolumeSpec].get(uri, {}))
        for uri in uris
    } or {default_uri: desired}


MACHINE_LOCK_DIR = Path("/run/lock/virtctl")


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
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


@contextlib.contextmanager
def host_lock(uri: str, state_root: Path) -> Iterator[None]:
    """Hold the per-host lock: two virtctl runs never interleave actions on one host."""
    path = lock_path(uri, state_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened for appending and never written: taking the lock changes nothing on disk.
    with open(path, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class HostOutcome(Generic[R]):
    uri: str
    value: R | None = None
    error: VirtctlError | None = None


def run_per_host(
    work: Mapping[str, T], fn: Callable[[str, T], R], *, parallel: int = 4
) -> list[HostOutcome[R]]:
    """Run `fn(uri, item)` for every host, at most `parallel` at once, in URI order.

    A host whose run raises a VirtctlError (unreachable, bad input for that host...) gets
    that error as its outcome; the other hosts are unaffected.
    """

    def one(uri: str) -> HostOutcome[R]:
        try:
            return HostOutcome(uri, value=fn(uri, work[uri]))
        except VirtctlError as exc:
            return HostOutcome(uri, error=exc)
        except Exception as exc:  # noqa: BLE001 - one host's bug must not sink the others
            return HostOutcome(uri, error=InternalError(
                f"{type(exc).__name__}: {exc}", domain=ErrorDomain.CLI))

    uris = sorted(work)
    if len(uris) <= 1 or parallel <= 1:
        return [one(uri) for uri in uris]
    with ThreadPoolExecutor(max_workers=min(parallel, len(uris))) as pool:
        return list(pool.map(one, uris))
