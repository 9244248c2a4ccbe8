"""Fingerprints of (spec, live object) pairs already found in sync, so a no-op run can
skip re-comparing them.

Planning one object is a pure function of its spec, its live state, the policy and the
host's capabilities. `sync_key` hashes all of those (and the planner's own code version,
passed in by the caller), so when a key is in the set of pairs found in sync before, the
planner would reach the same empty result again and may skip the work. A changed byte
anywhere in the inputs gives a new key: drift, a spec edit or a new virtctl version is
never hidden. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from itertools import chain
from operator import attrgetter

from ..model import Desired, Live, LiveDomain, LiveNetwork, ObjectKey, Spec

# Live fields that never decide a plan: the id changes with every start; `parsed` holds
# trees of the XML already keyed.
_DERIVED = frozenset({"id", "parsed"})
_DIGEST = attrgetter("digest")


@dataclass(frozen=True, slots=True)
class Memo:
    """Each object's sync key in this run, and the keys found in sync before."""

    keys: Mapping[ObjectKey, str] = field(default_factory=dict)
    known: frozenset[str] = frozenset()

    def verified(self) -> frozenset[ObjectKey]:
        return frozenset(k for k, v in self.keys.items() if v in self.known)


def _fields(obj: LiveDomain | LiveNetwork, skip: frozenset[str]) -> str:
    return "\0".join(str(getattr(obj, f.name)) for f in fields(obj) if f.name not in skip)


def sync_key(spec: Spec, live: LiveDomain | LiveNetwork, *, context: str) -> str:
    """The fingerprint of everything that decides this object's plan: both sides' every
    field (definitions, runtime state, autostart, policies...) and the run's context."""
    digest = hashlib.sha256(context.encode())
    digest.update(b"\1" + spec.digest.encode())
    digest.update(b"\1" + _fields(live, _DERIVED).encode())
    return digest.hexdigest()


def host_key(desired: Desired, live: Live, *, context: str) -> str | None:
    """The fingerprint of a whole run on one host: every spec, the snapshot's own
    fingerprint (every live object, managed or not: pruning and adoption look at them
    all) and the context. None when the driver gives no snapshot fingerprint.

    A run that checked the specs and planned nothing at all records it; a later run
    with the same key would check and plan the same, so it may stop here, without
    building, checking or comparing a single object."""
    if not live.fingerprint:
        return None
    specs = "\1".join(sorted(map(_DIGEST, chain(
        desired.domains.values(), desired.networks.values(), desired.pools.values(),
        desired.volumes.values()))))
    return hashlib.sha256(f"host\0{context}\0{live.fingerprint}\0{specs}".encode()).hexdigest()


def context_of(policy_repr: str, caps_xml: str, code: str) -> str:
    """What every object's plan depends on besides the object: the policy (`repr`, without
    the commit, which only labels definitions), the host's capabilities XML (as text:
    the parsed form holds sets, whose order differs between processes), the code."""
    return hashlib.sha256("\0".join((code, policy_repr, caps_xml)).encode()).hexdigest()


def memo_for(desired: Desired, live: Live, *, context: str, known: frozenset[str]) -> Memo:
    keys = {
        spec.key: sync_key(spec, found, context=context)
        for spec in desired
        if (found := live.get(spec.key)) is not None
    }
    return Memo(keys=keys, known=known)
