"""Many hosts: which connection each spec targets, and one reconcile per host at a time.

A spec may name its host with `connect:` (a libvirt URI, or an alias from a `kind: Hosts`
document: `hosts: {web: qemu+ssh://root@web1/system}`); specs that name none go to the
connection chosen on the command line. `group_by_host` is pure. `run_per_host` runs a
function for every host concurrently (bounded), turning each host's failure into that
host's result only; each writing run holds the host's lock (`virtctl.coord.hostlock`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from ..errors import (
    ErrorCode,
    ErrorDomain,
    InternalError,
    Source,
    SpecError,
    SpecErrors,
    VirtctlError,
)
from ..model import Desired, DomainSpec, HostAlias, NetworkSpec, PoolSpec, VolumeSpec
from ..uri import parse_uri

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
        table = tables[type(spec)].setdefault(uri, {})
        first = table.get(spec.key.name)
        if first is not None:  # two specs for one object of one host (alias and URI...)
            errors.append(SpecError(
                f"{spec.key} is declared twice for host {uri} (first at {first.source}); "
                "a name is unique per host", code=ErrorCode.DUPLICATE,
                source=Source(spec.source.file, spec.source.line, "name")))
            continue
        table[spec.key.name] = spec
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
