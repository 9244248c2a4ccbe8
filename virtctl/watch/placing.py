"""DomainSets placed by the watcher exactly as `apply` places them (issue 24).

The watcher reads its files one by one (specs.py), which expands each DomainSet as on
empty hosts. The Catalog (fleet.py) then calls `Placer.place` once per reading, before
routing: it reads the facts of every host a set places on (where the set's instances
live; with `placement: memory` the node's memory and cpus) through the same reader as
apply (reconciler/placefacts.py: read-only, the hosts side by side), once for all the
files and hosts of that reading, never per spec or per host pass, and places each file's
sets with them through the loader's own `place_sets`. So an instance that lives on one
of its set's hosts stays there, a host added moves nothing, and new instances go where
apply would put them. A file whose set cannot be placed (a host of the set that cannot
be read, no room) is broken like any invalid file: its last good specs stand
(specs.settle) until a later reading (a spec edit, the resync) places it.

DHCP host entries. A set with `network:` writes one entry per instance into the network
declared for the instance's host, which another file may declare. Once placed (the
entries name the instances' hosts), each reading writes the entries of every valid
file's sets into the networks of the valid files with the loader's `add_dhcp_entries`,
as load_specs does across all files, so watch and apply give the same network spec and
addresses; an edit of either file is a new reading, which writes them again. A set
and its network stand or fall together (`_with_dhcp`).

Pending instances. Between a reading that places a new instance and its guest being
defined, a reading of the facts does not see it yet; with `placement: memory` the
hosts' free memory moves meanwhile, so placing it again could choose another host and
two hosts' watchers could both create it. An instance this Placer placed that no host
of its set holds yet is therefore kept on the host it was given (counted there as if it
lived there) until a reading finds it on one of them; from then on the facts alone say
where it lives, as for apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

from ..errors import ErrorCode, Source, SpecError
from ..model import HostAlias, NetworkSpec, Spec
from ..reconciler.load.load import place_file_sets
from ..reconciler.load.loadset import (
    FactsReader,
    LoadedSet,
    add_dhcp_entries,
    facts_wanted,
    placing,
)
from ..reconciler.load.placement import HostFacts
from .specs import Scan

#: What one reading's placement decided: per file, each placed set's (instance, host)
#: pairs, or the errors that refused it. Equal keys: the routing need not change.
Decided = tuple[tuple[str, tuple[object, ...]], ...]


class Placer:
    """Places the DomainSets of each reading of the spec files with their hosts' facts."""

    def __init__(self, read: FactsReader) -> None:
        self._read = read
        self._pending: dict[str, dict[str, str]] = {}  # set -> instance -> host (alias)
        # Each set's expansion for a placement, while its file is unchanged (SpecSet keeps
        # its loaded sets then): a reading that places it the same way expands nothing.
        self._memo: dict[object, tuple[LoadedSet, LoadedSet]] = {}
        # Per set file, the networks its sets wrote DHCP host entries into at the last
        # reading: (network's file, network, set), kept while the set's file is broken.
        self._links: dict[str, tuple[tuple[str, str, str], ...]] = {}
        self.readings = 0  # facts read (once per reading that has sets to place): tests

    def place(self, scan: Scan, aliases: Mapping[str, HostAlias]) -> tuple[Scan, Decided]:
        """`scan` with each valid file's sets placed and their DHCP host entries in their
        networks (files whose sets cannot be placed or written moved to its errors),
        and what was decided."""
        scan, decided = self._place(scan, aliases)
        return self._with_dhcp(scan), decided

    def _place(self, scan: Scan, aliases: Mapping[str, HostAlias]) -> tuple[Scan, Decided]:
        files = [name for name in sorted(scan.sets) if name in scan.parsed
                 and any(placing(s) for s in scan.sets[name])]
        asked = facts_wanted([s for name in files for s in scan.sets[name]], aliases)
        if not asked:
            self._pending, self._memo = {}, {}
            return scan, ()
        self.readings += 1
        read = self._read(asked)
        sets = [s for name in files for s in scan.sets[name] if placing(s)]
        live = {s.name: _living(s, read, aliases) for s in sets}
        found = self._with_pending(read, sets, live, aliases)
        parsed, errors, placed_sets = dict(scan.parsed), dict(scan.errors), dict(scan.sets)
        decided: list[tuple[str, tuple[object, ...]]] = []
        pending: dict[str, dict[str, str]] = {}
        for name in files:
            problems: list[SpecError] = []
            specs, placed = place_file_sets(list(parsed[name]), list(scan.sets[name]),
                                            aliases, lambda _: found, problems,
                                            memo=self._memo)
            if problems:
                del parsed[name]
                errors[name] = (*errors.get(name, ()), *problems)
                decided.append((name, tuple(str(e) for e in problems)))
                continue
            parsed[name] = tuple(specs)
            placed_sets[name] = tuple(placed)  # (their DHCP entries name the hosts)
            pairs: list[object] = []
            for loaded in placed:
                if not placing(loaded):
                    continue
                pinned = {i["name"] for i in loaded.doc.get("instances") or () if "host" in i}
                for instance in loaded.expansion.instances:
                    pairs.append((loaded.name, instance.name, instance.host))
                    if instance.host is not None and instance.name not in pinned \
                            and instance.name not in live[loaded.name]:
                        pending.setdefault(loaded.name, {})[instance.name] = instance.host
            decided.append((name, tuple(pairs)))
        self._pending = pending
        current = {id(s) for s in sets}
        self._memo = {k: v for k, v in self._memo.items() if id(v[0]) in current}
        return replace(scan, parsed=parsed, errors=errors, sets=placed_sets), tuple(decided)

    def _with_dhcp(self, scan: Scan) -> Scan:
        """`scan` with the DHCP host entries of every valid file's sets written into the
        networks the valid files declare, as load_specs writes them across all files.

        A set and the network it writes into stand or fall together, so the network
        never holds entries of instances other than those standing: a set file whose
        entries cannot be written (its network declared by no valid file, an address
        taken) is broken (its last good specs stand, entries included); and while a
        set's file is broken, the file whose network took its entries at the last
        reading is broken too, so that network's last good spec (with the entries of
        the set's last good instances) stands, not one emptied of them."""
        if not self._links and not any(s.expansion.dhcp for name in scan.parsed
                                       for s in scan.sets.get(name, ())):
            return scan
        parsed, errors = dict(scan.parsed), dict(scan.errors)
        while True:
            for set_file, net_file, network, set_name in self._held(errors):
                if net_file in parsed:
                    del parsed[net_file]
                    errors[net_file] = (*errors.get(net_file, ()), SpecError(
                        f"network {network!r} holds the DHCP host entries of DomainSet "
                        f"{set_name} ({set_file}), which is invalid: its last good "
                        f"spec stands until {set_file} is valid again",
                        code=ErrorCode.INVALID_SPEC, source=Source(net_file)))
            sets = [s for name in sorted(parsed) for s in scan.sets.get(name, ())
                    if s.expansion.dhcp]
            flat = [(name, spec) for name in sorted(parsed) for spec in parsed[name]]
            problems: list[SpecError] = []
            written = add_dhcp_entries([spec for _, spec in flat], sets, problems)
            bad = {e.source.file for e in problems if e.source is not None} & set(parsed)
            if not bad:
                break
            for error in problems:
                file = error.source.file if error.source is not None else None
                if file in bad:
                    errors[file] = (*errors.get(file, ()), error)
            for file in bad:
                del parsed[file]
        declared = {(spec.name, spec.connect): name for name, spec in flat
                    if isinstance(spec, NetworkSpec)}
        links: dict[str, set[tuple[str, str, str]]] = {
            f: set(held) for f, held in self._links.items() if f in errors}
        for loaded in sets:
            for entry in loaded.expansion.dhcp:
                links.setdefault(loaded.file, set()).add(
                    (declared[(entry.network, entry.host)], entry.network, loaded.name))
        self._links = {f: tuple(sorted(held)) for f, held in links.items()}
        if not sets:
            return replace(scan, parsed=parsed, errors=errors)
        out: dict[str, list[Spec]] = {name: [] for name in parsed}
        for (name, _), spec in zip(flat, written, strict=True):
            out[name].append(spec)
        return replace(scan, parsed={name: tuple(specs) for name, specs in out.items()},
                       errors=errors)

    def _held(self, errors: Mapping[str, object]) -> Iterator[tuple[str, str, str, str]]:
        """(set file, network's file, network, set) for each network whose entries came
        from a file broken now, and from files broken by that in turn."""
        seen: set[str] = set()
        todo = sorted(f for f in self._links if f in errors)
        while todo:
            set_file = todo.pop(0)
            if set_file in seen:
                continue
            seen.add(set_file)
            for net_file, network, set_name in self._links.get(set_file, ()):
                yield set_file, net_file, network, set_name
                todo.append(net_file)

    def _with_pending(self, read: Mapping[str, HostFacts | str], sets: list[LoadedSet],
                      live: Mapping[str, frozenset[str]], aliases: Mapping[str, HostAlias],
                      ) -> dict[str, HostFacts | str]:
        """The facts read, with each pending instance counted on the host it was given
        (while that host is still one of its set's and no host of the set holds it)."""
        out = dict(read)
        for loaded in sets:
            hosts = loaded.doc["hosts"]
            for instance, host in self._pending.get(loaded.name, {}).items():
                uri = _uri(host, aliases)
                facts = out.get(uri)
                if host not in hosts or instance in live[loaded.name] \
                        or not isinstance(facts, HostFacts):
                    continue
                have = facts.instances.get(loaded.name, frozenset())
                out[uri] = replace(facts, instances={**facts.instances,
                                                     loaded.name: have | {instance}})
        return out


def _uri(host: str, aliases: Mapping[str, HostAlias]) -> str:
    return aliases[host].uri if host in aliases else host


def _living(loaded: LoadedSet, read: Mapping[str, HostFacts | str],
            aliases: Mapping[str, HostAlias]) -> frozenset[str]:
    """The set's instances some host of its list holds now."""
    out: set[str] = set()
    for host in loaded.doc["hosts"]:
        facts = read.get(_uri(host, aliases))
        if isinstance(facts, HostFacts):
            out |= facts.instances.get(loaded.name, frozenset())
    return frozenset(out)
