"""`virtctl get pools` and `virtctl get volumes`: one row per storage pool or volume, for
people (a table, sizes in binary units) and programs (JSON and YAML, sizes in bytes).

Rows are read from the host's storage with virtctl's records (plan_storage.view): a pool
or volume is managed when its record names it (an inactive pool: when its uuid is the one
virtctl derives), and the row says the apply set, the spec file that applied it and the
labels it recorded.
Pure: returns dicts and strings.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ..converters.sizes import unit_bytes
from ..metadata import labels_to_text
from ..model import Live, LivePool, LiveVolume, Storage
from ..reconciler.plan.plan_storage import StorageView, view
from ..reconciler.storage_record import ObjectRecord
from ..xmlutil import parse

#: Table columns: `-o table`, and what `-o wide` adds.
COLUMNS = {
    "pools": (["name", "type", "state", "autostart", "capacity", "allocation", "volumes",
               "managed", "set"],
              ["uuid", "persistent", "available", "path", "source", "commit", "labels"]),
    "volumes": (["name", "pool", "capacity", "allocation", "format", "managed", "set"],
                ["path", "backing", "deletePolicy", "usedBy", "source", "commit", "labels"]),
}
SIZES = ("capacity", "allocation", "available")


def columns(what: str, *, wide: bool) -> list[str]:
    narrow, more = COLUMNS[what]
    return narrow + more if wide else list(narrow)


def rows(storage: Storage, live: Live, what: str) -> list[dict[str, Any]]:
    """The rows of `get pools` or `get volumes`; `live` says which running guests use
    which volumes."""
    found = view(storage, live)
    if what == "pools":
        return [pool_row(p, found) for _, p in sorted(found.storage.pools.items())]
    return [volume_row(v, found) for _, v in sorted(found.storage.volumes.items())]


def _owner(record: ObjectRecord | None) -> dict[str, Any]:
    # labels: "role=web,team=a" as `get domains` shows them; None: no record to hold any
    return {"set": record.apply_set if record is not None else None,
            "source": record.source if record is not None else None,
            "commit": (record.commit or None) if record is not None else None,
            "labels": labels_to_text(record.labels) if record is not None else None}


def _size(root: etree._Element, tag: str) -> int | None:
    elem = root.find(tag)
    text = (elem.text or "").strip() if elem is not None else ""
    if not text.isdigit():
        return None
    return int(text) * (unit_bytes(elem.get("unit") or "bytes") or 1)  # type: ignore[union-attr]


def pool_row(pool: LivePool, found: StorageView) -> dict[str, Any]:
    root = parse(pool.xml, source=str(pool.key))
    record = found.records.get(pool.name)
    volumes = (sum(1 for v in found.storage.volumes.values() if v.pool == pool.name)
               if pool.active else None)
    return {
        "name": pool.name,
        "uuid": pool.uuid,
        "type": root.get("type"),
        "state": "active" if pool.active else "inactive",
        "autostart": pool.autostart,
        "persistent": pool.persistent,
        **{tag: _size(root, tag) for tag in SIZES},
        "volumes": volumes,
        "path": (root.findtext("target/path") or "").strip() or None,
        "managed": found.pool_managed(pool),
        **_owner(record.pool if record is not None else None),
        "recordError": found.unreadable.get(pool.name),
    }


def volume_row(volume: LiveVolume, found: StorageView) -> dict[str, Any]:
    root = parse(volume.xml, source=str(volume.key))
    record = found.volume_record(volume)
    fmt = root.find("target/format")
    user = found.in_use.get(f"{volume.pool}/{volume.name}")
    return {
        "name": volume.name,
        "pool": volume.pool,
        "capacity": volume.capacity,
        "allocation": volume.allocation,
        "format": fmt.get("type") if fmt is not None else None,
        "path": (root.findtext("target/path") or "").strip() or None,
        "backing": (root.findtext("backingStore/path") or "").strip() or None,
        "managed": record is not None,
        **_owner(record),
        "deletePolicy": (str(record.delete_policy)
                         if record is not None and record.delete_policy else None),
        "usedBy": f"{user[0]} {user[1]}" if user else None,
    }


def human(count: int | None) -> str | None:
    """1536 -> '1.5 KiB', 20 GiB -> '20 GiB': a size for people."""
    if count is None:
        return None
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            if unit == "B":
                return f"{count} B"
            text = f"{value:.1f}"
            return f"{text.removesuffix('.0')} {unit}"
        value /= 1024
    return None  # not reached


def for_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with sizes for people."""
    return [{k: human(v) if k in SIZES else v for k, v in r.items()} for r in records]
