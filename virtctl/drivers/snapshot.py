"""What a driver reads for a snapshot, before it becomes live objects: the raw records,
their fingerprint (`Live.fingerprint`), and the lazy table that turns them into
`LiveDomain`/`LiveNetwork` objects only when someone looks.

A no-op run on a host it found in sync before needs nothing but the fingerprint, so a
driver reads everything, hashes it, and leaves building the objects (reading each
ownership mark out of its definition) to the first lookup. Used by both drivers (the
sim, whose objects are cheap to build, takes only the fingerprint). Pure, and free of
virtctl.model: the CLI's no-op fast path (cli/noop.py) hashes raw records with it before
the model is imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import attrgetter
from typing import NamedTuple, TypeVar

V = TypeVar("V")
R = TypeVar("R")


class DomainRead(NamedTuple):
    name: str
    uuid: str
    xml: str  # persistent definition (the running one for a transient domain)
    state: str  # a DomainState's value (the sim passes the enum, a str too)
    autostart: bool
    persistent: bool
    id: int | None
    running_xml: str | None  # when active


class NetworkRead(NamedTuple):
    name: str
    uuid: str
    xml: str
    active: bool
    autostart: bool
    persistent: bool
    running_xml: str | None  # when active and kept apart


def fingerprint(domains: Iterable[DomainRead], networks: Iterable[NetworkRead]) -> str:
    """A hash of every record but the domain ids, independent of listing order (libvirt
    lists in hash-table order). The definitions are hashed one after another and then
    an index of every record's other fields and definition lengths, so no two
    different snapshots feed the hash the same bytes. Shaped for speed: a no-op run
    hashes every definition on the host."""
    digest = hashlib.sha256(b"virtctl-snapshot-1")
    update = digest.update
    index: list[str] = []
    add = index.extend
    for name, uuid, xml, state, autostart, persistent, _id, running in sorted(
            domains, key=attrgetter("uuid")):
        update(xml.encode())
        if running is not None:
            update(running.encode())
        add(("d", uuid, name, state, "1" if autostart else "0", "1" if persistent else "0",
             str(len(xml)), "-" if running is None else str(len(running))))
    for name, uuid, xml, active, autostart, persistent, running in sorted(
            networks, key=attrgetter("uuid")):
        update(xml.encode())
        if running is not None:
            update(running.encode())
        add(("n", uuid, name, "1" if active else "0", "1" if autostart else "0",
             "1" if persistent else "0", str(len(xml)),
             "-" if running is None else str(len(running))))
    update("\0".join(index).encode())
    return digest.hexdigest()


class LazyTable(Mapping[str, V]):
    """A read-only mapping of names to objects made from what was read (`reads`), each
    made by `make` on its first lookup, then kept: a run that plans a few objects on a
    big host builds only those (names, `in` and `len` build nothing)."""

    __slots__ = ("_made", "_make", "_reads")

    def __init__(self, reads: Mapping[str, R], make: Callable[[R], V]) -> None:
        self._reads, self._make = reads, make
        self._made: dict[str, V] = {}

    def __getitem__(self, key: str) -> V:
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = self._make(self._reads[key])
        return found

    def get(self, key: str, default: V | None = None) -> V | None:  # type: ignore[override]
        # Mapping.get goes through a KeyError for every miss; planning a create misses.
        if key not in self._reads:
            return default
        return self[key]

    def __contains__(self, key: object) -> bool:
        return key in self._reads

    def __iter__(self) -> Iterator[str]:
        return iter(self._reads)

    def __len__(self) -> int:
        return len(self._reads)

    def __repr__(self) -> str:
        return f"LazyTable({dict(self)!r})"
