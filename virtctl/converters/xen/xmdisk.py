"""Xen disk strings <-> domain XML <disk>: xm's `SOURCE,TARGET,MODE` syntax, the legacy
`cdrom =` key, and the pieces xl's disk syntax shares (formats, bus, mode, disk facts).

Called by `virtctl.converters.xen.xm` (the xm dialect's disk reader and writer, the legacy
CD-ROM) and `virtctl.converters.xen.xl` (`FORMATS`, `disk_bus`, `add_disk_mode`,
`disk_facts`). Follows libvirt's xen_common.c/xen_xm.c as summarised in
docs/xen-conversion.md. Pure: no I/O; it only builds and reads elements.
"""

from __future__ import annotations

import re

from lxml import etree

from .xmbase import Guest, Writer, sub
from .xmparse import ConfigReader

FORMATS = frozenset({"raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd",
                     "ploop", "cow", "qcow", "qcow2", "qed", "vmdk"})
_DRIVER_PREFIX = re.compile(r"([A-Za-z0-9_+.-]+):(.*)", re.DOTALL)


# -- disks (xm syntax: SOURCE,TARGET,MODE) --------------------------------------------------

def read_xm_disk(r: ConfigReader, index: int, spec: str, guest: Guest) -> etree._Element | None:
    fields = spec.split(",", 2)
    if len(fields) < 3:
        r.warn("disk", f"item {index} {spec!r} is not SOURCE,TARGET,MODE; ignored")
        return None
    source, target, mode = fields[0].strip(), fields[1].strip(), fields[2].strip()
    parsed = _xm_source(r, index, source)
    if parsed is None:
        return None
    driver, fmt, path = parsed
    return disk_element(r, index, guest, driver=driver, fmt=fmt, path=path,
                        target=target.removeprefix("ioemu:"), mode=mode)


def _xm_source(r: ConfigReader, index: int,
               source: str) -> tuple[str, str | None, str | None] | None:
    if not source:
        return "phy", None, None  # an empty CD-ROM drive
    match = _DRIVER_PREFIX.fullmatch(source)
    if match is None:
        return "phy", None, source
    driver, path = match.group(1), match.group(2)
    if driver not in ("tap", "tap2"):
        return driver, None, path
    subtype, colon, rest = path.partition(":")
    if not colon:
        r.warn("disk", f"item {index}: {driver}: needs an image type ({driver}:aio:PATH); ignored")
        return None
    fmt = "raw" if subtype == "aio" else subtype
    if fmt not in FORMATS:
        raise r.error("disk", f"item {index}: unknown image type {subtype!r}")
    return driver, fmt, rest


def disk_element(r: ConfigReader, index: int, guest: Guest, *, driver: str, fmt: str | None,
                 path: str | None, target: str, mode: str) -> etree._Element:
    """Build <disk>; `target` may carry xm's ":cdrom" suffix."""
    target, _, suffix = target.partition(":")
    if not target:
        raise r.error("disk", f"item {index}: no target device")
    block = driver == "phy"
    disk = etree.Element("disk", type="block" if block else "file",
                         device="cdrom" if suffix == "cdrom" else "disk")
    # Modern libvirt states the format of phy disks explicitly.
    sub(disk, "driver", name=driver, type=fmt or ("raw" if block else None))
    if path:
        sub(disk, "source", **{"dev" if block else "file": path})
    sub(disk, "target", dev=target, bus=disk_bus(target, guest))
    add_disk_mode(disk, mode)
    return disk


def disk_bus(target: str, guest: Guest) -> str:
    if target.startswith("xvd") or not guest.hvm:
        return "xen"
    return "scsi" if target.startswith("sd") else "ide"


def add_disk_mode(disk: etree._Element, mode: str) -> None:
    if mode in ("r", "ro"):
        sub(disk, "readonly")
    elif mode in ("w!", "!"):
        sub(disk, "shareable")


def read_legacy_cdrom(r: ConfigReader, guest: Guest) -> None:
    """Xen 3.0.2's `cdrom = PATH` key (HVM): a read-only IDE CD-ROM on hdc."""
    path = r.text("cdrom")
    if path is None:
        return
    if not guest.hvm:
        r.warn("cdrom", "only applies to HVM guests; ignored")
        return
    disk = etree.SubElement(guest.devices, "disk", type="file", device="cdrom")
    sub(disk, "driver", name="file")
    sub(disk, "source", file=path)
    sub(disk, "target", dev="hdc", bus="ide")
    sub(disk, "readonly")


def disk_facts(w: Writer, disk: etree._Element) -> dict[str, str | None] | None:
    """The parts of a <disk> both cfg syntaxes can express, or None (warned) if it has none."""
    device = w.attr(disk, "device") or "disk"
    kind = w.attr(disk, "type") or "file"
    if device not in ("disk", "cdrom") or kind not in ("file", "block", "network"):
        w.warn_xml(disk, None, f"{kind} {device} has no {w.flavor} disk equivalent")
        return None
    driver = w.child(disk, "driver")
    source = w.child(disk, "source")
    target = w.child(disk, "target")
    if target is None:
        w.warn_xml(disk, None, "disk without a target")
        return None
    readonly, shareable = w.child(disk, "readonly"), w.child(disk, "shareable")
    w.attr(target, "bus")
    return {
        "kind": kind, "device": device,
        "driver": w.attr(driver, "name") if driver is not None else None,
        "format": w.attr(driver, "type") if driver is not None else None,
        "path": None if source is None or kind == "network"
        else w.attr(source, "dev" if kind == "block" else "file"),
        "target": w.attr(target, "dev"),
        "mode": "r" if readonly is not None else "w!" if shareable is not None else "w",
    }


def write_xm_disk(w: Writer, disk: etree._Element) -> str | None:
    facts = disk_facts(w, disk)
    if facts is None:
        return None
    if facts["kind"] == "network":
        w.warn_xml(disk, None, "network disks need xl")
        return None
    prefix = _xm_prefix(w, disk, facts) if facts["path"] else ""
    cdrom = ":cdrom" if facts["device"] == "cdrom" else ""
    return f"{prefix}{facts['path'] or ''},{facts['target']}{cdrom},{facts['mode']}"


def _xm_prefix(w: Writer, disk: etree._Element, facts: dict[str, str | None]) -> str:
    driver, fmt = facts["driver"], facts["format"]
    if driver in ("tap", "tap2"):
        return f"{driver}:{'aio' if fmt in (None, 'raw') else fmt}:"
    if driver == "qemu" and fmt not in (None, "raw"):
        return f"tap:{fmt}:"
    if driver in (None, "qemu"):
        return "phy:" if facts["kind"] == "block" else "file:"
    if fmt not in (None, "raw"):
        w.warnings.append(f"{facts['target']}: image format {fmt!r} has no xm spelling "
                          f"with driver {driver!r}; dropped")
    return f"{driver}:"

