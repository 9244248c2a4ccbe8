"""Which DomainSet each object of a plan belongs to, so `diff` and `apply` name the set
and the instance for every object: created, changed, and removed alike.

Pure. A declared object's set is its spec's `domainset` label; an object the plan
removes (pruned on scale-down, or deleted) is no longer declared, so its set comes
from the labels virtctl recorded when it applied it: the owner mark of a domain or
network, the storage record of a pool or volume.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...model import SET_LABEL, Desired, Kind, Labels, Live, ObjectKey
from .plan_storage import StorageView


def _declared(key: ObjectKey, desired: Desired) -> Labels | None:
    table = {Kind.DOMAIN: desired.domains, Kind.NETWORK: desired.networks,
             Kind.POOL: desired.pools, Kind.VOLUME: desired.volumes}[key.kind]
    spec = table.get(key.name)
    return spec.labels if spec is not None else None


def _recorded(key: ObjectKey, live: Live, storage: StorageView | None) -> Labels:
    if key.kind in (Kind.DOMAIN, Kind.NETWORK):
        table = live.domains if key.kind is Kind.DOMAIN else live.networks
        obj = table.get(key.name)
        owner = obj.owner if obj is not None else None
        return owner.labels if owner is not None else ()
    if storage is None:
        return ()
    if key.kind is Kind.POOL:
        record = storage.records.get(key.name)
        return record.pool.labels if record is not None and record.pool is not None else ()
    volume = storage.storage.volumes.get(key.name)
    record = storage.volume_record(volume) if volume is not None else None
    return record.labels if record is not None else ()


def plan_members(keys: Iterable[ObjectKey], desired: Desired, live: Live,
                 storage: StorageView | None = None) -> tuple[tuple[ObjectKey, str], ...]:
    """(key, set name) for each of `keys` that is a DomainSet's, sorted by key."""
    out: dict[ObjectKey, str] = {}
    for key in keys:
        labels = _declared(key, desired)
        if labels is None:
            labels = _recorded(key, live, storage)
        name = dict(labels).get(SET_LABEL)
        if name is not None:
            out[key] = name
    return tuple(sorted(out.items(), key=lambda item: (item[0].kind, item[0].name)))
