"""Which fleet member reconciles which host: rendezvous (highest-random-weight) hashing.

Pure. Every member scores every (member, host) pair with the same hash and a host goes
to the live member with the highest score. Every member computes the same answer from
the same member set, with no coordination beyond agreeing on who is alive (etcd).
A member that joins takes only the hosts it now scores highest on (about 1/N of them,
and only from the others, never moving a host between two old members); a member that
leaves gives each of its hosts to that host's second choice, so its share spreads over
the rest instead of landing on one neighbour.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def weight(member: str, host: str) -> int:
    """The score of `member` for `host`: 64 bits of SHA-256 (stable across processes,
    Python versions and machines, unlike hash())."""
    digest = hashlib.sha256(f"{member}\x00{host}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def owner(host: str, members: Iterable[str]) -> str | None:
    """The member that owns `host` (None without members). Ties (never seen in practice)
    go to the smaller member name, so every member still agrees."""
    best: tuple[int, str] | None = None
    for member in members:
        score = (weight(member, host), member)
        if best is None or score[0] > best[0] or (score[0] == best[0] and member < best[1]):
            best = score
    return None if best is None else best[1]


def assign(hosts: Iterable[str], members: Iterable[str]) -> dict[str, str]:
    """host -> owning member, for every host (no entry when there is no member)."""
    ranked = sorted(set(members))
    found = {host: owner(host, ranked) for host in hosts}
    return {host: member for host, member in found.items() if member is not None}


def shares(assignment: Mapping[str, str]) -> dict[str, int]:
    """member -> how many hosts it owns."""
    counts: dict[str, int] = {}
    for member in assignment.values():
        counts[member] = counts.get(member, 0) + 1
    return counts
