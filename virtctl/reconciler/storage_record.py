"""virtctl's records of the storage it manages, kept in each pool's STATE_VOLUME.

libvirt keeps no metadata on storage pools or volumes, so the ownership mark that
domains and networks carry in `<metadata>` lives here instead: one small JSON volume per
pool (`virtctl-state.json`, model.STATE_VOLUME) holding a record of the pool and of each
volume virtctl created in it: the spec hash, source file and commit (as in the owner
mark), the declared XML (zlib+base64, as the last-applied record), for pools the declared
runtime state, for volumes the delete policy and the checksum of the content virtctl
uploaded. A volume without a record is not virtctl's: it is never deleted, resized or
written to.

Each record names the apply set that wrote it (`set`), as the owner mark of domains and
networks does; --prune reaches only records of its own set (or of sets it names with
--prune-set). A record written before sets existed has no `set` key: it reads as the
empty set, "no set", like a domain's mark of that age, so no run prunes it implicitly;
applying its spec again moves it into that run's set (docs/storage.md, "Apply sets").

A pool's record can be read only while the pool is active (its volumes are reachable
then). An inactive pool is recognised as virtctl's by its uuid: virtctl creates pools
with the uuid derived from their name (identity.derived_uuid) unless the spec declares
one, in which case an inactive pool's ownership is unknown (not managed) until it runs.

Pure: text in, text out; the applier reads and writes the volume.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..model import DeletePolicy

API_VERSION = "virtctl/v1"
KIND = "StorageRecord"


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """virtctl's record of one pool or volume it manages."""

    spec_hash: str = ""
    source: str = ""
    commit: str = ""
    declared: str = ""  # the declared XML, zlib+base64 (metadata.encode_declared)
    active: bool | None = None  # pools: the declared runtime state
    autostart: bool | None = None
    delete_policy: DeletePolicy | None = None  # volumes
    content: str | None = None  # volumes: checksum of the content virtctl wrote
    apply_set: str = ""  # the apply set that wrote it ("": none, or before sets existed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"specHash": self.spec_hash, "source": self.source,
                               "commit": self.commit, "declared": self.declared,
                               "set": self.apply_set}
        for key, value in (("active", self.active), ("autostart", self.autostart),
                           ("deletePolicy", self.delete_policy), ("content", self.content)):
            if value is not None:
                out[key] = str(value) if isinstance(value, DeletePolicy) else value
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> ObjectRecord:
        policy = data.get("deletePolicy")
        return ObjectRecord(
            spec_hash=str(data.get("specHash", "")), source=str(data.get("source", "")),
            commit=str(data.get("commit", "")), declared=str(data.get("declared", "")),
            active=_flag(data.get("active")), autostart=_flag(data.get("autostart")),
            delete_policy=DeletePolicy(policy) if policy in ("retain", "delete") else None,
            content=str(data["content"]) if data.get("content") else None,
            apply_set=str(data.get("set") or ""))


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """Everything one pool's STATE_VOLUME holds."""

    pool: ObjectRecord | None = None
    volumes: Mapping[str, ObjectRecord] = field(default_factory=dict)

    def with_volume(self, name: str, record: ObjectRecord | None) -> PoolRecord:
        """This record with volume `name` recorded (None: forgotten)."""
        volumes = dict(self.volumes)
        if record is None:
            volumes.pop(name, None)
        else:
            volumes[name] = record
        return replace(self, volumes=volumes)

    def with_pool(self, record: ObjectRecord | None) -> PoolRecord:
        return replace(self, pool=record)

    @property
    def empty(self) -> bool:
        return self.pool is None and not self.volumes


class RecordError(ValueError):
    """A STATE_VOLUME that is not a record virtctl wrote."""


def read_record(text: str | None) -> PoolRecord:
    """The record in a STATE_VOLUME's text (None or empty: no record). Raises
    RecordError for anything else than virtctl's own format: a pool whose record cannot
    be read is treated as unmanaged by the caller, never guessed at."""
    if not text or not text.strip():
        return PoolRecord()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise RecordError(f"not a {KIND} (kind: {data.get('kind')!r})"
                          if isinstance(data, dict) else "not a JSON object")
    if data.get("apiVersion") != API_VERSION:
        raise RecordError(f"unknown apiVersion {data.get('apiVersion')!r}")
    pool = data.get("pool")
    volumes = data.get("volumes")
    volumes = {} if volumes is None else volumes
    if not isinstance(volumes, dict) or not (pool is None or isinstance(pool, dict)):
        raise RecordError("'pool' must be an object and 'volumes' a map of objects")
    return PoolRecord(
        pool=ObjectRecord.from_dict(pool) if pool is not None else None,
        volumes={str(name): ObjectRecord.from_dict(v) for name, v in volumes.items()
                 if isinstance(v, dict)})


def record_text(record: PoolRecord) -> str:
    """The STATE_VOLUME text for `record`: deterministic (sorted), so an unchanged
    record is never written again."""
    doc = {"apiVersion": API_VERSION, "kind": KIND,
           "pool": record.pool.to_dict() if record.pool is not None else None,
           "volumes": {name: record.volumes[name].to_dict() for name in sorted(record.volumes)}}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"
