"""`virtctl export` for storage: StoragePool and Volume specs, as a user would write them.

Called by export.export_specs with the host's storage read (drivers' `storage()`,
virtctl's records read by plan_storage.view). Pure.

A pool is its live definition minus libvirt's read-only sizes (capacity, allocation,
available) and an empty `<source/>`; its uuid, source, target and permissions stay, and
its live state (active, autostart) becomes the desired one. A volume is what its creator
declared: its name, pool, capacity, format and backing store (by volume name when the
backing file is a volume of the same pool, else by path), and for a volume virtctl
manages its delete policy. What libvirt reports of the file as it is now (allocation,
path, key, permissions, timestamps, qcow2 compat and cluster size) is left out: a new
volume gets them on its own. Content (a file or URL) cannot be known from the host, so a
volume is exported without it.

Left out entirely: virtctl's own STATE_VOLUME (never listed among the volumes) and
cloud-init seeds (`NAME-cidata.iso` attached as a CD-ROM to guest NAME): the guest's
`cloudInit:` block makes them again. Applying the export with `apply --adopt` on the same
host changes nothing: unmanaged pools and volumes are only recorded as virtctl's.
"""

from __future__ import annotations

from typing import Any

import yaml
from lxml import etree

from ..converters.yaml.yaml_storage import pool_from_xml
from ..converters.yaml.yaml_volume import BACKING_VOLUME, runtime_attrs, volume_from_xml
from ..errors import ErrorDomain, SpecError
from ..metadata import set_runtime
from ..model import DeletePolicy, Live, LivePool, LiveVolume
from ..reconciler.load.loadcloudinit import SEED_SUFFIX
from ..reconciler.plan.plan_storage import StorageView
from ..xmlutil import parse, tostring

API_VERSION = "virtctl/v1"
#: What libvirt reports of a pool that a definition cannot set.
POOL_SIZES = ("capacity", "allocation", "available")


def exported_pools(found: StorageView, *, managed_only: bool) -> list[LivePool]:
    """The pools to export, by name."""
    pools = sorted(found.storage.pools.values(), key=lambda p: p.name)
    return [p for p in pools if found.pool_managed(p) or not managed_only]


def exported_volumes(found: StorageView, live: Live, *,
                     managed_only: bool) -> list[LiveVolume]:
    """The volumes to export, by pool and name: not cloud-init seeds."""
    seeds = seed_volumes(live)
    out = []
    for key in sorted(found.storage.volumes):
        volume = found.storage.volumes[key]
        if key in seeds:
            continue
        if managed_only and found.volume_record(volume) is None:
            continue
        out.append(volume)
    return out


def seed_volumes(live: Live) -> frozenset[str]:
    """"POOL/NAME" of the cloud-init seeds the host's guests attach: volume
    `GUEST-cidata.iso` as a CD-ROM of guest GUEST (in its persistent definition or the
    one it runs), as loadcloudinit makes them."""
    out = set()
    for dom in live.domains.values():
        for xml in (dom.xml, dom.running_xml):
            if not xml:
                continue
            for disk in parse(xml, source=str(dom.key)).iterfind("devices/disk"):
                source = disk.find("source")
                if (disk.get("type") == "volume" and disk.get("device") == "cdrom"
                        and source is not None
                        and source.get("volume") == dom.name + SEED_SUFFIX):
                    out.add(f"{source.get('pool')}/{source.get('volume')}")
    return frozenset(out)


# -- pools ----------------------------------------------------------------------------------


def pool_text(pool: LivePool, *, xml: bool) -> str:
    root = parse(pool.xml, source=str(pool.key))
    for tag in POOL_SIZES:
        for elem in root.findall(tag):
            root.remove(elem)
    for elem in root.findall("source"):
        if not len(elem) and not elem.attrib:
            root.remove(elem)  # libvirt's empty <source/> of a dir pool
    runtime = {"active": pool.active, "autostart": pool.autostart}
    if xml:
        set_runtime(root, runtime_attrs("pool", runtime))
        return tostring(root)
    return _dump(_as_yaml(pool_from_xml, root, str(pool.key)), runtime)


# -- volumes --------------------------------------------------------------------------------


def volume_text(volume: LiveVolume, found: StorageView, *, xml: bool) -> str:
    root = declared_volume(volume, found)
    runtime: dict[str, Any] = {"pool": volume.pool}
    record = found.volume_record(volume)
    if record is not None and record.delete_policy is DeletePolicy.DELETE:
        runtime["deletePolicy"] = str(DeletePolicy.DELETE)
    if xml:
        set_runtime(root, runtime_attrs("volume", runtime))
        return tostring(root)
    return _dump(_as_yaml(volume_from_xml, root, str(volume.key)), runtime)


def declared_volume(volume: LiveVolume, found: StorageView) -> etree._Element:
    """The `<volume>` a user would declare for this one: name, capacity, format and
    backing store."""
    live = parse(volume.xml, source=str(volume.key))
    root = etree.Element("volume")
    etree.SubElement(root, "name").text = volume.name
    etree.SubElement(root, "capacity", unit="bytes").text = str(volume.capacity)
    fmt = live.find("target/format")
    if fmt is not None and fmt.get("type"):
        target = etree.SubElement(root, "target")
        etree.SubElement(target, "format", type=fmt.get("type", ""))
    path = (live.findtext("backingStore/path") or "").strip()
    if path:
        backing = etree.SubElement(root, "backingStore")
        etree.SubElement(backing, "path").text = _backing_ref(path, volume, found)
        backing_fmt = live.find("backingStore/format")
        if backing_fmt is not None and backing_fmt.get("type"):
            etree.SubElement(backing, "format", type=backing_fmt.get("type", ""))
    return root


def _backing_ref(path: str, volume: LiveVolume, found: StorageView) -> str:
    """A backing file that is a volume of the same pool, by name (`virtctl-volume:NAME`,
    which the planner resolves to exactly this path again); any other, by path."""
    pool = found.storage.pools.get(volume.pool)
    base = (parse(pool.xml).findtext("target/path") or "").strip() if pool else ""
    if base:
        folder, _, name = path.rpartition("/")
        if folder == base.rstrip("/") and f"{volume.pool}/{name}" in found.storage.volumes:
            return BACKING_VOLUME + name
    return path


# -- YAML -----------------------------------------------------------------------------------


def _as_yaml(convert: Any, root: etree._Element, what: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = convert(root)
    except SpecError as exc:
        raise SpecError(f"{what} cannot be written as YAML ({exc.message}); export it with "
                        "-o xml", code=exc.code, domain=ErrorDomain.CONVERTER) from None
    return doc


def _dump(doc: dict[str, Any], runtime: dict[str, Any]) -> str:
    """kind, apiVersion, name, [pool, type, uuid], runtime keys, then the definition."""
    head = ("kind", "name", "pool", "type", "uuid")
    ordered: dict[str, Any] = {"kind": doc["kind"], "apiVersion": API_VERSION,
                               "name": doc["name"]}
    merged = {**doc, **runtime}
    ordered.update((k, merged[k]) for k in head[2:] if k in merged)
    ordered.update((k, v) for k, v in runtime.items() if k not in ordered)
    ordered.update((k, v) for k, v in doc.items() if k not in ordered)
    return str(yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True))
