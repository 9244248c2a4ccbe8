"""Which host each watched spec targets: the part of settling that is the same for all hosts.

Called by the fleet's Catalog (fleet.py) after each reading of the spec paths; pure.
`route` decides once, for every host, which files are broken whatever the host (they do
not parse, name a host that no `kind: Hosts` document names, or clash with another file)
and resolves each standing spec's `connect:` to its host URI. The URI is stored in the
spec's own `connect` field, so a file's last good specs keep the host they were declared
for even after the host names change. `Routed.scan_for(uri)` is one host's share of the
files, which that host's watcher settles against its own snapshot (specs.settle).

Host names are settled per file as specs are: a file that stops parsing keeps its last
good `kind: Hosts` entries; a file naming a host already named otherwise is broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ErrorCode, SpecError, SpecErrors
from ..coord.hosts import group_by_host
from ..model import Desired, DomainSpec, HostAlias, NetworkSpec, PoolSpec, Spec
from .specs import Aliases, Scan, Specs, settle
from virtctl.reconciler.trees import replaced

Errors = dict[str, list[SpecError]]


@dataclass(frozen=True, slots=True)
class Routed:
    """The files' standing specs (each `connect` set to its host URI) and host names."""

    chosen: Mapping[str, Specs]
    broken: Mapping[str, tuple[SpecError, ...]]
    hosts: Mapping[str, Aliases]  # each file's standing 'kind: Hosts' entries
    good_hosts: Mapping[str, Aliases] = field(default_factory=dict)  # next last good ones
    unreadable: tuple[str, ...] = ()

    @property
    def aliases(self) -> dict[str, HostAlias]:
        return {a.name: a for name in sorted(self.hosts) for a in self.hosts[name]}

    def targets(self, default: str) -> tuple[str, ...]:
        """Every host a spec targets or a Hosts document names (so --prune can empty it);
        the default host when there is none (as `apply` does)."""
        uris = {s.connect or default for specs in self.chosen.values() for s in specs}
        uris |= {alias.uri for alias in self.aliases.values()}
        return tuple(sorted(uris)) or (default,)

    def scan_for(self, uri: str) -> Scan:
        """One host's share: each valid file's specs for `uri`; broken files as errors."""
        valid = {name: specs for name, specs in self.chosen.items() if name not in self.broken}
        return Scan(
            parsed=share(valid, uri),
            errors=self.broken,
            unreadable=self.unreadable,
        )


def share(specs: Mapping[str, Specs], uri: str) -> dict[str, Specs]:
    """Each file's specs (routed) that target `uri`."""
    return {name: tuple(s for s in found if s.connect == uri) for name, found in specs.items()}


def _no_host_check(desired: Desired) -> list[SpecError]:
    return []


def route(
    scan: Scan, last_good: Mapping[str, Specs], last_hosts: Mapping[str, Aliases], *,
    default: str,
) -> Routed:
    """Settle the files for all hosts at once; `last_good` specs are routed already."""
    hosts, errors = settle_hosts(scan, last_hosts)
    aliases = {a.name: a for name in sorted(hosts) for a in hosts[name]}
    parsed: dict[str, Specs] = {}
    resolved: dict[str, str] = {}  # connect -> host URI, once per reading, not per spec
    for name, specs in scan.parsed.items():
        if name in errors:
            continue
        routed, problems = _route_file(specs, aliases, default, resolved)
        if problems:
            errors[name] = problems
        else:
            parsed[name] = routed
    for name, found in scan.errors.items():
        errors.setdefault(name, []).extend(found)
    settled = settle(Scan(parsed, {f: tuple(e) for f, e in errors.items()}, scan.unreadable),
                     last_good, host_check=_no_host_check)
    good = {f: a for f, a in hosts.items() if f not in errors}
    good |= {f: last_hosts[f] for f in errors if f in last_hosts}
    return Routed(settled.chosen, settled.broken, hosts, good, scan.unreadable)


def _route_file(
    specs: Specs, aliases: Mapping[str, HostAlias], default: str,
    resolved: dict[str, str] | None = None,
) -> tuple[Specs, list[SpecError]]:
    """Each spec with its `connect` resolved to its host URI (`resolved` remembers the
    URI of each connect value that resolved, for the other specs of the same reading:
    a fleet's 10,000 specs name 1,000 hosts). A spec that already names its URI is kept
    as it is (a replace() recomputes its digest)."""
    resolved = {} if resolved is None else resolved
    routed: list[Spec] = []
    problems: list[SpecError] = []
    for spec in specs:
        if spec.connect is None:
            routed.append(replaced(spec, connect=default))
            continue
        uri = resolved.get(spec.connect)
        if uri is None:
            try:
                (uri,) = group_by_host(_alone(spec), default_uri=default, aliases=aliases)
            except SpecErrors as exc:  # named after this spec: not remembered
                problems.extend(exc.errors)
                continue
            resolved[spec.connect] = uri
        routed.append(spec if spec.connect == uri else replaced(spec, connect=uri))
    return tuple(routed), problems


def _alone(spec: Spec) -> Desired:
    if isinstance(spec, DomainSpec):
        return Desired(domains={spec.name: spec})
    if isinstance(spec, NetworkSpec):
        return Desired(networks={spec.name: spec})
    if isinstance(spec, PoolSpec):
        return Desired(pools={spec.name: spec})
    return Desired(volumes={spec.key.name: spec})


def settle_hosts(
    scan: Scan, last_hosts: Mapping[str, Aliases]
) -> tuple[dict[str, Aliases], Errors]:
    """Each file's standing host names: its own if it parses and clashes with no other
    file (files unchanged since last good claim names first), else its last good ones."""
    standing: dict[str, Aliases] = {
        name: entries for name, entries in last_hosts.items()
        if name in scan.errors or (name not in scan.parsed and any(
            _under(name, given) for given in scan.unreadable))
    }
    claimed = {a.name: a for name in sorted(standing) for a in standing[name]}
    errors: Errors = {}
    current = {name: scan.hosts.get(name, ()) for name in scan.parsed}
    for name in sorted(current, key=lambda f: (current[f] != last_hosts.get(f, ()), f)):
        clashes = [a for a in current[name]
                   if a.name in claimed and claimed[a.name].uri != a.uri]
        if clashes:
            errors[name] = [_clash(a, claimed[a.name]) for a in clashes]
            standing[name] = ()
            continue
        standing[name] = current[name]
        claimed |= {a.name: a for a in current[name] if a.name not in claimed}
    return {name: entries for name, entries in standing.items() if entries}, errors


def _clash(alias: HostAlias, first: HostAlias) -> SpecError:
    return SpecError(f"host {alias.name!r} is already named {first.uri} at {first.source}",
                     code=ErrorCode.DUPLICATE, source=alias.source)


def _under(file: str, given: str) -> bool:
    return Path(file) == Path(given) or Path(file).is_relative_to(Path(given))
