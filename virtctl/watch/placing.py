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

Pending instances. Between a reading that places a new instance and its guest being
defined, a reading of the facts does not see it yet; with `placement: memory` the
hosts' free memory moves meanwhile, so placing it again could choose another host and
two hosts' watchers could both create it. An instance this Placer placed that no host
of its set holds yet is therefore kept on the host it was given (counted there as if it
lived there) until a reading finds it on one of them; from then on the facts alone say
where it lives, as for apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..errors import SpecError
from ..model import HostAlias
from ..reconciler.load.load import place_file_sets
from ..reconciler.load.loadset import FactsReader, LoadedSet, facts_wanted, placing
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
        self.readings = 0  # facts read (once per reading that has sets to place): tests

    def place(self, scan: Scan, aliases: Mapping[str, HostAlias]) -> tuple[Scan, Decided]:
        """`scan` with each valid file's sets placed (files whose sets cannot be placed
        moved to its errors), and what was decided."""
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
        parsed, errors = dict(scan.parsed), dict(scan.errors)
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
        return replace(scan, parsed=parsed, errors=errors), tuple(decided)

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
