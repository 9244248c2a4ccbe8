"""xl's disk syntax, both directions: `format=,vdev=,access=,backendtype=,devtype=,target=`
specs (rbd targets included) and the legacy positional form. Part of the xl dialect
(`virtctl.converters.xen.xl`). Pure.
"""

from __future__ import annotations

import re

from lxml import etree

from .xmbase import Guest, Writer, sub
from .xmdisk import FORMATS, add_disk_mode, disk_bus, disk_facts
from .xmparse import ConfigReader

_LEGACY_FORMATS = {"aio": "raw", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd",
                   "qed": "qed", "vmdk": "vmdk"}
_DISK_KEYS = frozenset({"target", "format", "vdev", "access", "backendtype", "devtype"})
_BACKENDS = {"phy": "phy", "tap": "tap", "qdisk": "qemu"}


# -- disks -----------------------------------------------------------------------------------

def _split_disk(spec: str) -> tuple[list[str], dict[str, str]]:
    """Positional and key=value parts; `target=` swallows the rest of the string.

    An empty positional field keeps its slot (`"path,,hda,,backendtype=phy"`: the format
    and access are defaults); empty trailing fields are dropped."""
    positional: list[str] = []
    named: dict[str, str] = {}
    rest = spec
    while rest:
        token, _, rest = rest.partition(",")
        token = token.strip()
        if token.startswith("target="):
            named["target"] = (token + ("," + rest if rest else ""))[len("target="):]
            break
        name, eq, value = token.partition("=")
        if eq:
            named[name.strip()] = value
        else:
            positional.append(token)
    while positional and not positional[-1]:
        positional.pop()
    return positional, named


def read_disk(r: ConfigReader, index: int, spec: str, guest: Guest) -> etree._Element | None:
    positional, named = _split_disk(spec)
    if not named and len(positional) == 3 and positional[1] and positional[1] not in FORMATS:
        return _read_legacy_disk(r, index, spec, guest)
    for name, value in zip(("target", "format", "vdev", "access"), positional, strict=False):
        if value:
            named.setdefault(name, value)
    for name in [k for k in named if k not in _DISK_KEYS]:
        r.warn("disk", f"item {index}: {name}= has no domain XML equivalent; ignored")
    vdev, _, suffix = named.get("vdev", "").partition(":")
    if not vdev:
        raise r.error("disk", f"item {index}: no vdev")
    backend = named.get("backendtype")
    if backend is not None and backend not in _BACKENDS:
        raise r.error("disk", f"item {index}: unknown backendtype {backend!r}")
    fmt = named.get("format", "raw")
    if fmt not in FORMATS:
        raise r.error("disk", f"item {index}: unknown format {fmt!r}")
    cdrom = named.get("devtype") == "cdrom" or suffix == "cdrom"
    return _disk(r, index, guest, driver=_BACKENDS.get(backend or "qdisk", "qemu"), fmt=fmt,
                 path=named.get("target") or None, vdev=vdev, cdrom=cdrom,
                 mode=named.get("access", "ro" if cdrom else "rw"))


def _read_legacy_disk(r: ConfigReader, index: int, spec: str,
                      guest: Guest) -> etree._Element | None:
    # xm-style SOURCE,VDEV,MODE read with libxl's meaning of the prefixes.
    source, vdev, mode = (p.strip() for p in spec.split(",", 2))
    driver, fmt, path = "qemu", "raw", source
    prefix, colon, rest = source.partition(":")
    if colon and prefix in ("phy", "file", "tap", "tap2"):
        driver, path = {"phy": "phy", "file": "qemu"}.get(prefix, "tap"), rest
        prefix, colon, rest = path.partition(":")
    if colon and prefix in _LEGACY_FORMATS:
        fmt, path = _LEGACY_FORMATS[prefix], rest
    vdev, _, suffix = vdev.removeprefix("ioemu:").partition(":")
    return _disk(r, index, guest, driver=driver, fmt=fmt, path=path or None, vdev=vdev,
                 cdrom=suffix == "cdrom", mode=mode)


def _disk(r: ConfigReader, index: int, guest: Guest, *, driver: str, fmt: str,
          path: str | None, vdev: str, cdrom: bool, mode: str) -> etree._Element:
    if not vdev:
        raise r.error("disk", f"item {index}: no vdev")
    network = path is not None and path.startswith("rbd:")
    kind = "network" if network else "block" if driver == "phy" else "file"
    disk = etree.Element("disk", type=kind, device="cdrom" if cdrom else "disk")
    sub(disk, "driver", name=driver, type=fmt)
    if network and path is not None:
        _rbd_source(r, index, disk, path)
    elif path:
        sub(disk, "source", **{"dev" if kind == "block" else "file": path})
    sub(disk, "target", dev=vdev, bus=disk_bus(vdev, guest))
    add_disk_mode(disk, mode)
    return disk


def _unescaped_split(text: str, sep: str) -> list[str]:
    # Backslashes escape separators in rbd strings (cfg files show them doubled).
    return re.split(r"(?<!\\)" + re.escape(sep), text)


def _unescape(text: str) -> str:
    return re.sub(r"\\+(.)", r"\1", text)


def _rbd_source(r: ConfigReader, index: int, disk: etree._Element, path: str) -> None:
    name, *options = _unescaped_split(path.removeprefix("rbd:"), ":")
    source = sub(disk, "source", protocol="rbd", name=_unescape(name))
    for option in options:
        key, _, value = option.partition("=")
        if key == "mon_host":
            # Inside an option, ":" and ";" arrive escaped: HOST\:PORT\;HOST\:PORT.
            for host in _unescape(value).split(";"):
                hostname, _, port = host.partition(":")
                sub(source, "host", name=hostname, port=port or None)
        elif key != "auth_supported" or value != "none":
            r.warn("disk", f"item {index}: rbd option {key!r} has no domain XML equivalent")


def write_disk(w: Writer, disk: etree._Element) -> str | None:
    facts = disk_facts(w, disk)
    if facts is None:
        return None
    kind = facts["kind"]
    backend = {"phy": "phy", "tap": "tap", "tap2": "tap"}.get(
        facts["driver"] or "", "phy" if kind == "block" and not facts["driver"] else "qdisk")
    parts = [f"format={facts['format'] or 'raw'}", f"vdev={facts['target']}",
             f"access={'ro' if facts['mode'] == 'r' else 'rw'}", f"backendtype={backend}"]
    if facts["mode"] == "w!":
        w.warnings.append(f"{facts['target']}: xl has no shareable disks; written read-write")
    if facts["device"] == "cdrom":
        parts.append("devtype=cdrom")
    target = _rbd_target(w, disk) if kind == "network" else facts["path"]
    if kind == "network" and target is None:
        return None
    if target:
        parts.append(f"target={target}")
    return ",".join(parts)


def _rbd_target(w: Writer, disk: etree._Element) -> str | None:
    source = w.child(disk, "source")
    if source is None or w.attr(source, "protocol") != "rbd":
        w.warn_xml(disk, None, "only rbd network disks map to xl")
        return None
    target = "rbd:" + (w.attr(source, "name") or "")
    hosts = []
    for host in w.children(source, "host"):
        port = w.attr(host, "port")
        hosts.append((w.attr(host, "name") or "") + (f"\\:{port}" if port else ""))
    target += ":auth_supported=none"
    if hosts:
        target += ":mon_host=" + "\\;".join(hosts)
    return target
