"""Placement of a DomainSet's instances on its `hosts`: explicit and stable.

Pure: the facts about the hosts (which of the set's instances each one holds, its
memory and cpus) are read by the caller before planning (`api.read_placement_facts`,
through the driver's `node_info` and snapshot) and passed in.

The rules, in order, for each instance:
1. An instance whose `host` is declared (`instances: [{name, host}]`) goes there; this
   is the only way an existing instance moves.
2. An instance that lives on one of the set's hosts (a guest there carrying virtctl's
   mark with the label `domainset: SET`) stays there: adding a host, reordering the
   list or scaling never moves it. (A host dropped from the list is no longer one of
   the set's: its instances are placed again, as new ones.)
3. A new instance is placed by the set's `placement`:
   - `roundRobin` (the default): on the host holding the fewest of the set's instances,
     ties to the earlier host in the list. From empty hosts this is plain round-robin
     by index (web-01 on a, web-02 on b, ...).
   - `memory`: on the host with the most free memory (the host's free memory, less
     what the instances placed before it in this run take), among those where it fits:
     its memory within that free memory and its vcpus within the host's cpus. None
     fits: refused, naming the instance, what it needs and the best host's room.

Without facts (only `render --offline` and `validate --offline`: apply, diff, delete,
render and the watcher all read them), every instance is taken as new on empty hosts:
`roundRobin` is round-robin by index and `memory` cannot check capacity, so it places
as roundRobin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...model import NodeInfo

ROUND_ROBIN = "roundRobin"
MEMORY = "memory"
MODES = (ROUND_ROBIN, MEMORY)


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What placement knows of one host: the instances of each set living there, and
    its node facts (None: not read, or not needed)."""

    instances: Mapping[str, frozenset[str]] = field(default_factory=dict)  # set -> names
    node: NodeInfo | None = None


#: Facts per host, keyed by the host as the set names it (alias or URI).
Facts = Mapping[str, HostFacts]


@dataclass(frozen=True, slots=True)
class Want:
    """One instance to place: its name, its declared host (None: to be placed), and what
    it needs (memory in KiB, vcpus) for the capacity check."""

    name: str
    pinned: str | None = None
    memory_kib: int = 0
    vcpus: int = 1


class NoRoom(Exception):
    """No host has room for an instance (placement: memory)."""


def _human(kib: int) -> str:
    return f"{kib // 1024} MiB" if kib % 1024 == 0 or kib >= 1024 * 16 else f"{kib} KiB"


def place(set_name: str, mode: str, hosts: Sequence[str], wants: Sequence[Want],
          facts: Facts | None) -> dict[str, str]:
    """The host of every instance of `wants` (by name), in the rules' order; raises
    NoRoom when `memory` placement finds no host with room for one."""
    out: dict[str, str] = {}
    count = dict.fromkeys(hosts, 0)
    fresh: list[Want] = []
    for want in wants:
        if want.pinned is not None:
            out[want.name] = want.pinned
        else:
            home = _home(set_name, want.name, hosts, facts)
            if home is None:
                fresh.append(want)
                continue
            out[want.name] = home
        if out[want.name] in count:
            count[out[want.name]] += 1
    nodes = {h: f.node for h, f in (facts or {}).items() if f.node is not None}
    if mode == MEMORY and facts is not None and all(h in nodes for h in hosts):
        free = {h: nodes[h].free_kib for h in hosts}
        for want in fresh:
            fits = [h for h in hosts
                    if want.memory_kib <= free[h] and want.vcpus <= nodes[h].cpus]
            if not fits:
                best = max(hosts, key=lambda h: (free[h], -hosts.index(h)))
                raise NoRoom(
                    f"instance {want.name} needs {_human(want.memory_kib)} and "
                    f"{want.vcpus} vcpu(s); no host has room (most free memory: "
                    f"{best}, {_human(max(free[best], 0))} free of "
                    f"{_human(nodes[best].memory_kib)}, {nodes[best].cpus} cpus)")
            # Most free first; ties to the earlier host in the list.
            chosen = max(fits, key=lambda h: (free[h], -hosts.index(h)))
            free[chosen] -= want.memory_kib
            out[want.name] = chosen
        return out
    for want in fresh:
        chosen = min(hosts, key=lambda h: (count[h], hosts.index(h)))
        count[chosen] += 1
        out[want.name] = chosen
    return out


def _home(set_name: str, name: str, hosts: Sequence[str], facts: Facts | None) -> str | None:
    """The first of the set's hosts where instance `name` lives, if any."""
    if facts is None:
        return None
    for host in hosts:
        found = facts.get(host)
        if found is not None and name in found.instances.get(set_name, frozenset()):
            return host
    return None
