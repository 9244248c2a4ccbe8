"""Xen device strings <-> domain XML devices: disk, vif, graphics, serial/parallel, input,
sound and PCI passthrough, shared by the xm and xl converters.

Called only by `virtctl.converters.xm` and `virtctl.converters.xl`. Each device kind has a
reader (cfg strings -> elements appended to `Guest.devices`, following the rules of
libvirt's xen_common.c/xen_xm.c as summarised in docs/xen-conversion.md) and a writer
(elements -> cfg keys on a `Writer`). Pure: no I/O.
"""

from __future__ import annotations

import re

from lxml import etree

from .xmbase import SOUND_MODELS, Guest, Writer, sub
from .xmparse import ConfigReader, Value

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


# -- network interfaces ---------------------------------------------------------------------

_VIF_KEYS = ("mac", "bridge", "script", "model", "type", "vifname", "ip", "rate")
_VFB_KEYS = frozenset({"type", "vncunused", "vncdisplay", "vnclisten", "vncpasswd", "keymap",
                        "display", "xauthority"})
_MAC = re.compile(r"(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")
_RATE = re.compile(r"([0-9]+)([GMK]?)([Bb])/s(?:@.*)?")


def read_vifs(r: ConfigReader, guest: Guest) -> None:
    for index, spec in r.strings("vif"):
        guest.devices.append(_read_vif(r, index, spec, guest))


def key_values(r: ConfigReader, key: str, index: int, spec: str) -> dict[str, str]:
    """`k=v,k=v` tokens as Xen splits them: commas, then spaces/tabs after a comma skipped."""
    out: dict[str, str] = {}
    for token in spec.split(","):
        token = token.lstrip(" \t")
        if not token:
            continue
        name, eq, value = token.partition("=")
        if not eq:
            raise r.error(key, f"item {index}: {token!r} is not key=value")
        out[name.strip()] = value
    return out


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


# -- graphics -------------------------------------------------------------------------------

def read_graphics(r: ConfigReader, guest: Guest) -> None:
    graphics = _read_top_graphics(r)
    if graphics is None and not guest.hvm:
        graphics = _read_vfb(r)
    elif r.has("vfb"):
        r.raw("vfb")
        r.warn("vfb", "ignored: HVM guests and guests with vnc=/sdl= use those keys")
    if graphics is not None:
        guest.devices.append(graphics)


def _read_top_graphics(r: ConfigReader) -> etree._Element | None:
    vnc, sdl = r.flag("vnc", False), r.flag("sdl", False)
    if vnc:
        if sdl:
            r.warn("sdl", "ignored because vnc=1 wins")
        if r.flag("vncunused", True):
            port, autoport = -1, "yes"
        else:
            port, autoport = 5900 + (r.integer("vncdisplay", 0) or 0), "no"
        return vnc_element(port, autoport, listen=r.text("vnclisten"),
                           passwd=r.text("vncpasswd"), keymap=r.text("keymap"))
    if sdl:
        return etree.Element("graphics", type="sdl", **_present(
            display=r.text("display"), xauth=r.text("xauthority")))
    return None


def _present(**attrs: str | None) -> dict[str, str]:
    return {k: v for k, v in attrs.items() if v is not None}


def vnc_element(port: int, autoport: str, *, listen: str | None, passwd: str | None,
                keymap: str | None) -> etree._Element:
    graphics = etree.Element("graphics", type="vnc", port=str(port), autoport=autoport,
                             **_present(listen=listen, passwd=passwd, keymap=keymap))
    if listen:
        sub(graphics, "listen", type="address", address=listen)
    return graphics


def _read_vfb(r: ConfigReader) -> etree._Element | None:
    items = r.strings("vfb")
    if not items:
        return None
    if len(items) > 1:
        r.warn("vfb", "only the first framebuffer is used; the rest are ignored")
    opts: dict[str, str] = {}
    for token in items[0][1].split(","):
        name, eq, value = token.strip().partition("=")
        if not eq:
            break  # libvirt stops at the first token without '='
        opts[name] = value
    if opts.get("type") == "sdl":
        return etree.Element("graphics", type="sdl", **_present(
            display=opts.get("display"), xauth=opts.get("xauthority")))
    for name in [k for k in opts if k not in _VFB_KEYS]:
        r.warn("vfb", f"{name}= has no domain XML equivalent; ignored")
    unused = opts.get("vncunused", "0" if "vncdisplay" in opts else "1") == "1"
    display = int(opts["vncdisplay"]) if opts.get("vncdisplay", "").isdigit() else 0
    return vnc_element(-1 if unused else 5900 + display, "yes" if unused else "no",
                       listen=opts.get("vnclisten"), passwd=opts.get("vncpasswd"),
                       keymap=opts.get("keymap"))


def write_graphics(w: Writer, devices: etree._Element) -> None:
    chosen = [g for g in devices.findall("graphics") if g.get("type") in ("vnc", "sdl")]
    for extra in chosen[1:]:
        w.warn_xml(extra, None, "only one vnc/sdl display maps to xm/xl")
    if not chosen:
        return
    graphics = chosen[0]
    w.mark(graphics, "type")
    opts = _vnc_opts(w, graphics) if graphics.get("type") == "vnc" else _sdl_opts(w, graphics)
    if w.hvm:
        for key, value in opts:
            w.put(key, value)
        return
    kind = graphics.get("type") or "vnc"
    tokens = [f"type={kind}"] + [f"{k}={v}" for k, v in opts if k not in ("vnc", "sdl")]
    w.put("vfb", (",".join(tokens),))


def _sdl_opts(w: Writer, graphics: etree._Element) -> list[tuple[str, Value]]:
    opts: list[tuple[str, Value]] = [("sdl", 1)]
    for key, attr in (("display", "display"), ("xauthority", "xauth")):
        value = w.attr(graphics, attr)
        if value is not None:
            opts.append((key, value))
    return opts


def _vnc_opts(w: Writer, graphics: etree._Element) -> list[tuple[str, Value]]:
    port = int(w.attr(graphics, "port") or "-1")
    autoport = w.attr(graphics, "autoport") == "yes" or port < 5900
    opts: list[tuple[str, Value]] = [("vnc", 1), ("vncunused", int(autoport))]
    if not autoport:
        opts.append(("vncdisplay", port - 5900))
    listen = w.attr(graphics, "listen")
    for child in w.children(graphics, "listen"):
        if w.attr(child, "type") == "address":
            listen = w.attr(child, "address") or listen
        else:
            w.warn_xml(child, None, "only address listens map to vnclisten")
    for key, value in (("vnclisten", listen), ("vncpasswd", w.attr(graphics, "passwd")),
                       ("keymap", w.attr(graphics, "keymap"))):
        if value is not None:
            opts.append((key, value))
    return opts


# -- serial, parallel, console --------------------------------------------------------------

def read_chardevs(r: ConfigReader, guest: Guest) -> None:
    if not guest.hvm:
        for key in ("serial", "parallel"):
            if r.raw(key) not in (None, "none"):
                r.warn(key, "only applies to HVM guests; PV guests get the Xen console")
        console = sub(guest.devices, "console", type="pty")
        sub(console, "target", type="xen", port="0")
        return
    serial = r.raw("serial")
    specs = serial if isinstance(serial, tuple) else () if serial is None else (serial,)
    for port, spec in enumerate(specs):
        if not isinstance(spec, str):
            raise r.error("serial", f"item {port} is not a string")
        if spec != "none":
            guest.devices.append(_chardev(r, "serial", spec, port))
    parallel = r.text("parallel")
    if parallel not in (None, "none"):
        guest.devices.append(_chardev(r, "parallel", parallel, 0))


def _chardev(r: ConfigReader, key: str, spec: str, port: int) -> etree._Element:
    el = etree.Element(key)
    kind, colon, rest = spec.partition(":")
    if spec.startswith("/"):
        el.set("type", "dev")
        sub(el, "source", path=spec)
    elif spec in ("pty", "null", "stdio", "vc"):
        el.set("type", spec)
    elif colon and kind in ("file", "pipe"):
        el.set("type", kind)
        sub(el, "source", path=rest)
    elif colon and kind in ("tcp", "telnet"):
        _tcp(r, key, el, rest, "raw" if kind == "tcp" else "telnet")
    elif colon and kind == "udp":
        _udp(r, key, el, rest)
    elif colon and kind == "unix":
        path, *opts = rest.split(",")
        el.set("type", "unix")
        sub(el, "source", mode="bind" if "server" in opts else "connect", path=path)
    else:
        raise r.error(key, f"unknown character device {spec!r}")
    sub(el, "target", port=str(port))
    return el


def _host_port(r: ConfigReader, key: str, text: str) -> tuple[str | None, str]:
    host, colon, service = text.rpartition(":")
    if not colon or not service:
        raise r.error(key, f"{text!r} is not HOST:PORT")
    return host or None, service


def _tcp(r: ConfigReader, key: str, el: etree._Element, rest: str, protocol: str) -> None:
    address, *opts = rest.split(",")
    host, service = _host_port(r, key, address)
    # ",listen" is the very old spelling of ",server".
    mode = "bind" if {"server", "listen"} & set(opts) else "connect"
    el.set("type", "tcp")
    sub(el, "source", mode=mode, host=host, service=service)
    sub(el, "protocol", type=protocol)


def _udp(r: ConfigReader, key: str, el: etree._Element, rest: str) -> None:
    connect, at, bind = rest.partition("@")
    el.set("type", "udp")
    host, service = _host_port(r, key, connect)
    sub(el, "source", mode="connect", host=host, service=service)
    if at:
        host, service = _host_port(r, key, bind)
        sub(el, "source", mode="bind", host=host, service=service)


def write_chardevs(w: Writer, devices: etree._Element) -> None:
    serials = devices.findall("serial")
    parallels = devices.findall("parallel")
    if not w.hvm:
        for el in [*serials, *parallels]:
            w.warn_xml(el, None, "PV guests only have the Xen console")
        return
    by_port: dict[int, str] = {}
    for el in serials:
        spec = _chardev_spec(w, el)
        if spec is not None:
            by_port[_target_port(w, el, len(by_port))] = spec
    if list(by_port) == [0]:
        w.put("serial", by_port[0])
    elif by_port:
        w.put("serial", tuple(by_port.get(p, "none") for p in range(max(by_port) + 1)))
    for extra in parallels[1:]:
        w.warn_xml(extra, None, "only one parallel port maps to xm/xl")
    if parallels:
        spec = _chardev_spec(w, parallels[0])
        _target_port(w, parallels[0], 0)
        if spec is not None:
            w.put("parallel", spec)


def _target_port(w: Writer, el: etree._Element, default: int) -> int:
    target = w.child(el, "target")
    port = w.attr(target, "port") if target is not None else None
    return int(port) if port and port.isdigit() else default


def _chardev_spec(w: Writer, el: etree._Element) -> str | None:
    w.mark(el)
    kind = w.attr(el, "type") or "pty"
    sources = {w.attr(s, "mode") or "connect": s for s in w.children(el, "source")}
    first = next(iter(sources.values()), None)
    path = w.attr(first, "path") if first is not None else None
    if kind in ("pty", "null", "stdio", "vc"):
        return kind
    if kind == "dev" and path:
        return path
    if kind in ("file", "pipe") and path:
        return f"{kind}:{path}"
    if kind == "unix" and path:
        return f"unix:{path}" + (",server,nowait" if "bind" in sources else "")
    if kind == "tcp" and first is not None:
        protocol = w.child(el, "protocol")
        scheme = "telnet" if protocol is not None and w.attr(protocol, "type") == "telnet" else "tcp"
        server = ",server,nowait" if "bind" in sources else ""
        return f"{scheme}:{_hp(w, first)}{server}"
    if kind == "udp" and "connect" in sources:
        bind = f"@{_hp(w, sources['bind'])}" if "bind" in sources else ""
        return f"udp:{_hp(w, sources['connect'])}{bind}"
    w.warn_xml(el, None, f"character device type {kind!r} has no xm/xl spelling")
    return None


def _hp(w: Writer, source: etree._Element) -> str:
    return f"{w.attr(source, 'host') or ''}:{w.attr(source, 'service') or ''}"


# -- input, sound, PCI ----------------------------------------------------------------------

def read_inputs(r: ConfigReader, guest: Guest) -> None:
    r.raw("usb")  # usb=1 only enables the controller usbdevice= needs; no XML of its own
    value = r.raw("usbdevice")
    names = value if isinstance(value, tuple) else () if value is None else (value,)
    for name in names:
        if name in ("mouse", "tablet", "keyboard"):
            sub(guest.devices, "input", type=str(name), bus="usb")
        else:
            r.warn("usbdevice", f"{name!r} has no domain XML equivalent; ignored")
    # The inputs libvirt adds by itself to every Xen guest.
    bus = "ps2" if guest.hvm else "xen"
    sub(guest.devices, "input", type="mouse", bus=bus)
    sub(guest.devices, "input", type="keyboard", bus=bus)


def write_inputs(w: Writer, devices: etree._Element) -> None:
    names: list[Value] = []
    for el in devices.findall("input"):
        if el.get("bus") == "usb" and el.get("type") in ("mouse", "tablet", "keyboard"):
            w.mark(el, "type", "bus")
            names.append(el.get("type") or "")
    if not names:
        return
    w.put("usb", 1)
    if len(names) == 1:
        w.put("usbdevice", names[0])
    elif w.flavor == "xl":
        w.put("usbdevice", tuple(names))
    else:
        w.warnings.append("devices/input: xm takes one usbdevice; wrote the first")
        w.put("usbdevice", names[0])


def read_sound(r: ConfigReader, guest: Guest) -> None:
    value = r.text("soundhw")
    if value is None:
        return
    if not guest.hvm:
        r.warn("soundhw", "only applies to HVM guests; ignored")
        return
    for model in ("sb16", "es1370") if value == "all" else value.split(","):
        if model.strip() not in SOUND_MODELS:
            raise r.error("soundhw", f"unknown sound model {model!r}")
        sub(guest.devices, "sound", model=model.strip())


def write_sound(w: Writer, devices: etree._Element) -> None:
    models = [w.attr(s, "model") or "" for s in w.children(devices, "sound")]
    if models:
        w.put("soundhw", ",".join(models))


_PCI = re.compile(r"(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])"
                  r"(@[0-9a-fA-F]{1,2})?((?:,[^,]*)*)")


def read_pci(r: ConfigReader, guest: Guest) -> None:
    for index, spec in r.strings("pci"):
        match = _PCI.fullmatch(spec.strip())
        if match is None:
            raise r.error("pci", f"item {index}: malformed PCI address {spec!r}")
        domain, bus, slot, function, vslot, options = match.groups()
        hostdev = sub(guest.devices, "hostdev", mode="subsystem", type="pci", managed="no")
        sub(hostdev, "driver", name="xen")
        source = sub(hostdev, "source")
        opts = key_values(r, "pci", index, options or "")
        if opts.pop("permissive", "0") == "1":
            source.set("writeFiltering", "no")
        for name in [*opts, *(["@vslot"] if vslot else [])]:
            r.warn("pci", f"item {index}: {name} has no domain XML equivalent; ignored")
        sub(source, "address", domain=f"0x{int(domain or '0', 16):04x}",
            bus=f"0x{int(bus, 16):02x}", slot=f"0x{int(slot, 16):02x}",
            function=f"0x{int(function, 16):x}")


def write_pci(w: Writer, devices: etree._Element) -> None:
    specs: list[Value] = []
    for hostdev in devices.findall("hostdev"):
        if hostdev.get("type") != "pci":
            continue
        w.mark(hostdev, "type", "mode")
        if w.attr(hostdev, "managed") == "yes":
            w.warn_xml(hostdev, "managed", "Xen does not detach devices itself; managed dropped")
        driver = w.child(hostdev, "driver")
        if driver is not None:
            w.attr(driver, "name")
        source = w.child(hostdev, "source")
        address = w.child(source, "address") if source is not None else None
        if source is None or address is None:
            w.warn_xml(hostdev, None, "PCI hostdev without a source address")
            continue
        parts = [int(w.attr(address, k) or "0", 16)
                 for k in ("domain", "bus", "slot", "function")]
        permissive = ",permissive=1" if w.attr(source, "writeFiltering") == "no" else ""
        specs.append(f"{parts[0]:04x}:{parts[1]:02x}:{parts[2]:02x}.{parts[3]:x}{permissive}")
    if specs:
        w.put("pci", tuple(specs))
