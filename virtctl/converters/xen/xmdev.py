"""Xen device keys without a module of their own <-> domain XML devices: graphics
(`vnc=`/`sdl=`/`vfb=`), USB input (`usb=`/`usbdevice=`), sound (`soundhw=`) and PCI
passthrough (`pci=`). Disks live in `xmdisk`, vifs in `xmvif`, serial/parallel/console
in `xmchardev`.

Called only by `virtctl.converters.xen.xm` (for xm and xl alike). Each device kind has a
reader (cfg keys -> elements appended to `Guest.devices`, following the rules of
libvirt's xen_common.c/xen_xm.c as summarised in docs/xen-conversion.md) and a writer
(elements -> cfg keys on a `Writer`). Pure: no I/O.
"""

from __future__ import annotations

import re

from lxml import etree

from .xmbase import SOUND_MODELS, Guest, Writer, sub
from .xmparse import ConfigReader, Value, key_values

_VFB_KEYS = frozenset({"type", "vncunused", "vncdisplay", "vnclisten", "vncpasswd", "keymap",
                        "display", "xauthority"})


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
    # `vnc = 0` as libvirt writes it: xl's default for an HVM guest is a VNC display too.
    opts: list[tuple[str, Value]] = [("sdl", 1), ("vnc", 0)]
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
