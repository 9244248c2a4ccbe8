"""Xen `vif = [...]` strings <-> domain XML <interface>, both directions.

Called by `virtctl.converters.xen.xm` for xm and xl alike (the paravirtual NIC keyword comes
from the dialect, through `Guest.pv_nic_type` and `Writer.flavor`). Follows libvirt's
xen_common.c as summarised in docs/xen-conversion.md. Pure: no I/O; a vif option with
no domain XML equivalent is warned about, never silently dropped.
"""

from __future__ import annotations

import re

from lxml import etree

from .xmbase import Guest, Writer, sub
from .xmparse import ConfigReader, Value, key_values

_VIF_KEYS = ("mac", "bridge", "script", "model", "type", "vifname", "ip", "rate")
_MAC = re.compile(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")
_RATE = re.compile(r"([0-9]+)([GMK]?)([Bb])/s(?:@.*)?")


def read_vifs(r: ConfigReader, guest: Guest) -> None:
    for index, spec in r.strings("vif"):
        guest.devices.append(_read_vif(r, index, spec, guest))

def _read_vif(r: ConfigReader, index: int, spec: str, guest: Guest) -> etree._Element:
    opts = key_values(r, "vif", index, spec)
    for name in [k for k in opts if k not in _VIF_KEYS]:
        r.warn("vif", f"item {index}: {name}= has no domain XML equivalent; ignored")
    script = opts.get("script")
    bridged = "bridge" in opts or script in ("vif-bridge", "vif-vnic")
    iface = etree.Element("interface", type="bridge" if bridged else "ethernet")
    if "mac" in opts:
        if not _MAC.fullmatch(opts["mac"]):
            raise r.error("vif", f"item {index}: malformed MAC address {opts['mac']!r}")
        sub(iface, "mac", address=opts["mac"].lower())
    if "bridge" in opts:
        _read_bridge(iface, opts["bridge"])
    for address in opts.get("ip", "").split():
        sub(iface, "ip", address=address)
    if script:
        sub(iface, "script", path=script)
    if opts.get("vifname"):
        sub(iface, "target", dev=opts["vifname"])
    model = opts.get("model") or ("netfront" if opts.get("type") == guest.pv_nic_type else None)
    if model:
        sub(iface, "model", type=model)
    if "rate" in opts:
        sub(sub(iface, "bandwidth"), "outbound", average=str(_rate(r, index, opts["rate"])))
    return iface


def _read_bridge(iface: etree._Element, bridge: str) -> None:
    # Newer libvirt: BR.TAG is a tagged Open vSwitch port, BR:T1:T2 a trunk.
    name, dot, tag = bridge.partition(".")
    parts = bridge.split(":")
    if dot and tag.isdigit():
        tags, trunk = [tag], False
    elif len(parts) > 1 and all(p.isdigit() for p in parts[1:]):
        name, tags, trunk = parts[0], parts[1:], True
    else:
        sub(iface, "source", bridge=bridge)
        return
    sub(iface, "source", bridge=name)
    vlan = sub(iface, "vlan", trunk="yes" if trunk else None)
    for t in tags:
        sub(vlan, "tag", id=t)
    sub(iface, "virtualport", type="openvswitch")


def _rate(r: ConfigReader, index: int, rate: str) -> int:
    match = _RATE.fullmatch(rate)
    if match is None:
        raise r.error("vif", f"item {index}: malformed rate {rate!r} (expected N[KMG]B/s)")
    number = int(match.group(1)) * {"": 1, "K": 1, "M": 1024, "G": 1024**2}[match.group(2)]
    return number // 8 if match.group(3) == "b" else number


def write_vifs(w: Writer, devices: etree._Element) -> None:
    vifs: list[Value] = []
    for iface in w.children(devices, "interface"):
        spec = _write_vif(w, iface)
        if spec is not None:
            vifs.append(spec)
    if vifs:
        w.put("vif", tuple(vifs))


def _write_vif(w: Writer, iface: etree._Element) -> str | None:
    kind = w.attr(iface, "type")
    if kind not in ("bridge", "ethernet", "network"):
        w.warn_xml(iface, None, f"interface type {kind!r} has no vif equivalent")
        return None
    parts: list[str] = []
    mac = w.child(iface, "mac")
    if mac is not None:
        parts.append(f"mac={w.attr(mac, 'address')}")
    source = w.child(iface, "source")
    if kind == "bridge" and source is not None:
        parts.append(f"bridge={w.attr(source, 'bridge')}{_write_vlan(w, iface)}")
    elif kind == "network":
        w.warn_xml(iface, "type", "a libvirt network has no vif spelling; give its bridge=")
        if source is not None:
            w.mark(source, "network")
    addresses = [w.attr(ip, "address") or "" for ip in w.children(iface, "ip")]
    if addresses:
        parts.append("ip=" + " ".join(addresses))
    parts += _write_vif_tail(w, iface)
    return ",".join(parts)


def _write_vlan(w: Writer, iface: etree._Element) -> str:
    vlan = w.child(iface, "vlan")
    port = w.child(iface, "virtualport")
    if port is not None and w.attr(port, "type") != "openvswitch":
        w.warn_xml(port, None, "only Open vSwitch virtual ports map to vif")
    if vlan is None:
        return ""
    tags = [w.attr(t, "id") or "" for t in w.children(vlan, "tag")]
    if w.attr(vlan, "trunk") == "yes" or len(tags) > 1:
        return ":" + ":".join(tags)
    return "." + tags[0] if tags else ""


def _write_vif_tail(w: Writer, iface: etree._Element) -> list[str]:
    parts: list[str] = []
    script = w.child(iface, "script")
    if script is not None:
        parts.append(f"script={w.attr(script, 'path')}")
    model = w.child(iface, "model")
    if model is not None:
        name = w.attr(model, "type")
        pv_keyword = "vif" if w.flavor == "xl" else "netfront"
        parts.append(f"type={pv_keyword}" if w.hvm and name == "netfront" else f"model={name}")
    target = w.child(iface, "target")
    if target is not None:
        parts.append(f"vifname={w.attr(target, 'dev')}")
    bandwidth = w.child(iface, "bandwidth")
    outbound = w.child(bandwidth, "outbound") if bandwidth is not None else None
    if outbound is not None:
        parts.append(f"rate={w.attr(outbound, 'average')}KB/s")
    return parts
