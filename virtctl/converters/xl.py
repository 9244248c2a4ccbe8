"""The xl dialect: what today's Xen toolstack adds to the xm format, both directions.

Called through `virtctl.converters.xm.xm_to_xml(..., flavor="xl")` / `xml_to_xm(...,
flavor="xl")`, or the `xl_to_xml` / `xml_to_xl` wrappers below. xl is a superset of xm,
so everything shared lives in `xm`, `xmbase` and the device modules (`xmdisk`, `xmvif`,
`xmchardev`, `xmdev`); this module holds only xl's differences: `type=`/`cmdline=`/`bios=`
boot keys and HVM direct kernel boot, the xl disk syntax
(`format=,vdev=,access=,backendtype=,devtype=,target=` and rbd targets), `maxvcpus`,
channel, usbctrl, usbdev, vnuma, spice, the xenbus limits and `device_model_args`.
Pure: no I/O.
"""

from __future__ import annotations

import re

from lxml import etree

from . import xm
from .xmbase import HVMLOADER, Guest, Kind, Writer, format_cpuset, parse_cpuset, sub
from .xmdisk import FORMATS, add_disk_mode, disk_bus, disk_facts
from .xmparse import ConfigReader, Value, key_values

#: libvirt's namespace for extra device-model arguments.
XEN_NS = "http://libvirt.org/schemas/domain/xen/1.0"
OVMF = "/usr/lib/xen/boot/ovmf.bin"
_LEGACY_FORMATS = {"aio": "raw", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd",
                   "qed": "qed", "vmdk": "vmdk"}
_DISK_KEYS = frozenset({"target", "format", "vdev", "access", "backendtype", "devtype"})
_BACKENDS = {"phy": "phy", "tap": "tap", "qdisk": "qemu"}


def xl_to_xml(text: str, *, source: str = "<xl>", arch: str = "x86_64") -> xm.Conversion:
    return xm.xm_to_xml(text, source=source, flavor="xl", arch=arch)


def xml_to_xl(xml: str, *, source: str = "<xml>") -> xm.Conversion:
    return xm.xml_to_xm(xml, flavor="xl", source=source)


# -- boot ------------------------------------------------------------------------------------

def _read_os(r: ConfigReader, guest: Guest) -> None:
    if guest.kind is not Kind.HVM:
        xm.read_common_os(r, guest, cmdline_key="cmdline")
        return
    bios = r.text("bios")
    if bios == "ovmf":
        sub(guest.os, "loader", OVMF, readonly="yes", type="pflash")
    else:
        if bios not in (None, "seabios", "rombios"):
            r.warn("bios", f"unknown firmware {bios!r}; using hvmloader")
        sub(guest.os, "loader", HVMLOADER, type="rom")
    # xl HVM guests may boot a kernel directly; kernel= is not the loader as in xm.
    for key, tag in (("kernel", "kernel"), ("ramdisk", "initrd")):
        value = r.text(key)
        if value is not None:
            sub(guest.os, tag, value)
    cmdline = xm.read_cmdline(r, "cmdline")
    if cmdline is not None:
        sub(guest.os, "cmdline", cmdline)
    acpi = r.text("acpi_firmware")
    if acpi is not None:
        sub(sub(guest.os, "acpi"), "table", acpi, type="slic")
    xm.read_boot_order(r, guest.os)


def _write_os(w: Writer, root: etree._Element) -> None:
    os_el = root.find("os")
    if os_el is None:
        return
    if w.kind is not Kind.HVM:
        xm.write_pv_os(w, root, os_el, cmdline_key="cmdline")
        return
    loader = w.child(os_el, "loader")
    if loader is not None:
        w.mark(loader, "type", "readonly")
        path = (loader.text or "").strip()
        if loader.get("type") == "pflash":
            w.put("bios", "ovmf")
        elif path != HVMLOADER:
            w.warn_xml(loader, None, "xl always uses its own hvmloader")
    xm.write_pv_os(w, root, os_el, cmdline_key="cmdline")
    acpi = w.child(os_el, "acpi")
    if acpi is not None:
        for table in w.children(acpi, "table"):
            w.attr(table, "type")
            w.put("acpi_firmware", (table.text or "").strip())
    xm.write_boot_order(w, os_el)


def _write_vcpus(w: Writer, maximum: int, current: int) -> None:
    if current < maximum:
        w.put("maxvcpus", maximum)
    w.put("vcpus", current)


# -- disks -----------------------------------------------------------------------------------

def _split_disk(spec: str) -> tuple[list[str], dict[str, str]]:
    """Positional and key=value parts; `target=` swallows the rest of the string."""
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
        elif token:
            positional.append(token)
    return positional, named


def _read_disk(r: ConfigReader, index: int, spec: str, guest: Guest) -> etree._Element | None:
    positional, named = _split_disk(spec)
    if not named and len(positional) == 3:
        return _read_legacy_disk(r, index, spec, guest)
    for name, value in zip(("target", "format", "vdev", "access"), positional, strict=False):
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
                 mode=named.get("access", "rw"))


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


def _write_disk(w: Writer, disk: etree._Element) -> str | None:
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


# -- xl-only keys: reading ---------------------------------------------------------------------

def _read_extras(r: ConfigReader, guest: Guest) -> None:
    override = r.text("device_model_override")
    if override is not None and guest.devices.find("emulator") is None:
        sub(guest.devices, "emulator", override)
    _read_channels(r, guest)
    _read_usb(r, guest)
    _read_xenbus(r, guest)
    _read_vnuma(r, guest)
    _read_spice(r, guest)
    _read_dm_args(r, guest)


def _read_channels(r: ConfigReader, guest: Guest) -> None:
    for index, spec in r.strings("channel"):
        opts = key_values(r, "channel", index, spec)
        connection = opts.get("connection")
        if connection not in ("pty", "socket"):
            raise r.error("channel", f"item {index}: connection must be pty or socket")
        channel = sub(guest.devices, "channel", type="pty" if connection == "pty" else "unix")
        if connection == "socket":
            if not opts.get("path"):
                raise r.error("channel", f"item {index}: socket channels need path=")
            sub(channel, "source", mode="bind", path=opts["path"])
        sub(channel, "target", type="xen", name=opts.get("name"))


def _read_usb(r: ConfigReader, guest: Guest) -> None:
    for index, spec in r.strings("usbctrl"):
        opts = key_values(r, "usbctrl", index, spec)
        if opts.get("type", "qusb") != "qusb" or opts.get("version", "2") not in ("1", "2"):
            r.warn("usbctrl", f"item {index}: only qusb version 1 or 2 maps to XML; ignored")
            continue
        sub(guest.devices, "controller", type="usb", index=str(index),
            model=f"qusb{opts.get('version', '2')}", ports=opts.get("ports"))
    for index, spec in r.strings("usbdev"):
        opts = key_values(r, "usbdev", index, spec)
        if not (opts.get("hostbus", "").isdigit() and opts.get("hostaddr", "").isdigit()):
            raise r.error("usbdev", f"item {index}: needs hostbus= and hostaddr=")
        hostdev = sub(guest.devices, "hostdev", mode="subsystem", type="usb", managed="no")
        sub(sub(hostdev, "source"), "address", bus=opts["hostbus"], device=opts["hostaddr"])


def _read_xenbus(r: ConfigReader, guest: Guest) -> None:
    channels = r.integer("max_event_channels")
    frames = r.integer("max_grant_frames")
    if channels is not None or frames is not None:
        sub(guest.devices, "controller", type="xenbus", index="0",
            maxGrantFrames=None if frames is None else str(frames),
            maxEventChannels=None if channels is None else str(channels))


def _read_vnuma(r: ConfigReader, guest: Guest) -> None:
    nodes = r.raw("vnuma")
    if nodes is None:
        return
    if not isinstance(nodes, tuple) or not all(isinstance(n, tuple) for n in nodes):
        raise r.error("vnuma", "expected a list of lists of key=value strings")
    numa = sub(sub(guest.dom, "cpu"), "numa")
    for index, node in enumerate(nodes):
        assert isinstance(node, tuple)
        opts = dict(str(item).partition("=")[::2] for item in node)
        if not opts.get("size", "").isdigit() or "vcpus" not in opts:
            raise r.error("vnuma", f"node {index}: needs size= (MiB) and vcpus=")
        cpus = format_cpuset(parse_cpuset(r, opts["vcpus"])) or opts["vcpus"]
        cell = sub(numa, "cell", id=str(index), cpus=cpus,
                   memory=str(int(opts["size"]) * 1024), unit="KiB")
        _read_distances(r, cell, index, opts.get("vdistances"), len(nodes))


def _read_distances(r: ConfigReader, cell: etree._Element, index: int, text: str | None,
                    count: int) -> None:
    if not text:
        return
    values = [v.strip() for v in text.split(",")]
    if len(values) != count or not all(v.isdigit() for v in values):
        raise r.error("vnuma", f"node {index}: vdistances needs {count} integers")
    # Xen's defaults (10 to itself, 20 to others) are what libvirt assumes without <distances>.
    if values == ["10" if i == index else "20" for i in range(count)]:
        return
    distances = sub(cell, "distances")
    for sibling, value in enumerate(values):
        sub(distances, "sibling", id=str(sibling), value=value)


def _read_spice(r: ConfigReader, guest: Guest) -> None:
    if not r.flag("spice", False):
        return
    port, tls_port = r.text("spiceport"), r.text("spicetls_port")
    listen = r.text("spicehost")
    passwd = None if r.flag("spicedisable_ticketing", False) else r.text("spicepasswd")
    graphics = sub(guest.devices, "graphics", type="spice", port=port, tlsPort=tls_port,
                   autoport="no" if port or tls_port else "yes", listen=listen, passwd=passwd)
    if listen:
        sub(graphics, "listen", type="address", address=listen)
    if r.has("spiceagent_mouse"):
        sub(graphics, "mouse", mode="client" if r.flag("spiceagent_mouse", False) else "server")
    if r.has("spice_clipboard_sharing"):
        sub(graphics, "clipboard",
            copypaste="yes" if r.flag("spice_clipboard_sharing", False) else "no")


def _read_dm_args(r: ConfigReader, guest: Guest) -> None:
    keys = ("device_model_args", "device_model_args_hvm", "device_model_args_pv")
    args = [arg for key in keys for _i, arg in r.strings(key)]
    if not args:
        return
    commandline = sub(guest.dom, f"{{{XEN_NS}}}commandline")
    for arg in args:
        sub(commandline, f"{{{XEN_NS}}}arg", value=arg)
    etree.cleanup_namespaces(guest.dom, top_nsmap={"xen": XEN_NS})


# -- xl-only keys: writing ---------------------------------------------------------------------

def _write_extras(w: Writer, root: etree._Element) -> None:
    devices = root.find("devices")
    if devices is not None:
        _write_channels(w, devices)
        _write_usb(w, devices)
        _write_xenbus(w, devices)
        _write_spice(w, devices)
    _write_vnuma(w, root)
    commandline = w.child(root, f"{{{XEN_NS}}}commandline")
    if commandline is not None:
        args = [w.attr(a, "value") or "" for a in w.children(commandline, f"{{{XEN_NS}}}arg")]
        w.put("device_model_args", tuple(args))


def _write_channels(w: Writer, devices: etree._Element) -> None:
    specs: list[Value] = []
    for channel in devices.findall("channel"):
        kind = channel.get("type")
        target = channel.find("target")
        if kind not in ("pty", "unix") or target is None or target.get("type") != "xen":
            continue  # left unmarked: reported as unhandled
        w.mark(channel, "type")
        parts = ["connection=pty" if kind == "pty" else "connection=socket"]
        source = w.child(channel, "source")
        if source is not None:
            w.attr(source, "mode")
            parts.append(f"path={w.attr(source, 'path')}")
        w.mark(target, "type")
        if w.attr(target, "name"):
            parts.append(f"name={target.get('name')}")
        specs.append(",".join(parts))
    if specs:
        w.put("channel", tuple(specs))


def _write_usb(w: Writer, devices: etree._Element) -> None:
    ctrls: list[Value] = []
    for ctrl in devices.findall("controller"):
        model = ctrl.get("model") or ""
        if ctrl.get("type") == "usb" and model in ("qusb1", "qusb2"):
            w.mark(ctrl, "type", "index", "model")
            ports = w.attr(ctrl, "ports")
            ctrls.append(f"type=qusb,version={model[-1]}" + (f",ports={ports}" if ports else ""))
    if ctrls:
        w.put("usbctrl", tuple(ctrls))
    devs: list[Value] = []
    for hostdev in devices.findall("hostdev"):
        address = hostdev.find("source/address")
        if hostdev.get("type") != "usb" or address is None:
            continue
        w.mark(hostdev, "type", "mode", "managed")
        w.child(hostdev, "source")
        w.mark(address, "bus", "device")
        devs.append(f"hostbus={address.get('bus')},hostaddr={address.get('device')}")
    if devs:
        w.put("usbdev", tuple(devs))


def _write_xenbus(w: Writer, devices: etree._Element) -> None:
    for ctrl in devices.findall("controller"):
        if ctrl.get("type") != "xenbus":
            continue
        w.mark(ctrl, "type", "index")
        for attr, key in (("maxEventChannels", "max_event_channels"),
                          ("maxGrantFrames", "max_grant_frames")):
            value = w.attr(ctrl, attr)
            if value is not None:
                w.put(key, int(value))


def _write_spice(w: Writer, devices: etree._Element) -> None:
    graphics = next((g for g in devices.findall("graphics") if g.get("type") == "spice"), None)
    if graphics is None:
        return
    w.mark(graphics, "type", "autoport")
    w.put("spice", 1)
    for attr, key in (("port", "spiceport"), ("tlsPort", "spicetls_port"),
                      ("listen", "spicehost"), ("passwd", "spicepasswd")):
        value = w.attr(graphics, attr)
        if value is not None:
            w.put(key, int(value) if key.endswith("port") and value.isdigit() else value)
    if graphics.get("passwd") is None:
        w.put("spicedisable_ticketing", 1)
    for listen in w.children(graphics, "listen"):
        w.mark(listen, "type", "address")
    mouse, clipboard = w.child(graphics, "mouse"), w.child(graphics, "clipboard")
    if mouse is not None:
        w.put("spiceagent_mouse", int(w.attr(mouse, "mode") == "client"))
    if clipboard is not None:
        w.put("spice_clipboard_sharing", int(w.attr(clipboard, "copypaste") == "yes"))


def _write_vnuma(w: Writer, root: etree._Element) -> None:
    cpu = root.find("cpu")
    numa = cpu.find("numa") if cpu is not None else None
    if cpu is None or numa is None:
        return
    w.mark(cpu)
    cells = w.children(numa, "cell")
    w.mark(numa)
    nodes: list[Value] = []
    for index, cell in enumerate(cells):
        w.mark(cell, "id", "unit")
        size = -(-int(w.attr(cell, "memory") or "0") // 1024)
        distances = {int(s.get("id") or "0"): s.get("value") or "20"
                     for s in cell.findall("distances/sibling")}
        w.mark_tree(cell.find("distances")) if cell.find("distances") is not None else None
        vdist = ",".join(distances.get(i, "10" if i == index else "20")
                         for i in range(len(cells)))
        nodes.append((f"pnode={index}", f"size={size}", f"vcpus={w.attr(cell, 'cpus')}",
                      f"vdistances={vdist}"))
    w.put("vnuma", tuple(nodes))


XL = xm.Dialect(
    flavor=xm.Flavor.XL,
    read_os=_read_os,
    read_disk=_read_disk,
    read_extras=_read_extras,
    write_os=_write_os,
    write_vcpus=_write_vcpus,
    write_disk=_write_disk,
    write_extras=_write_extras,
)


# Keys only the xl toolstack knows. Their presence decides how a file is read, which
# matters: `kernel=` on an HVM guest is the firmware loader in xm but a kernel in xl.
XL_ONLY_KEYS = frozenset({
    "type", "cmdline", "bios", "channel", "usbctrl", "usbdev", "vnuma",
    "device_model_override", "max_event_channels", "max_grant_frames", "e820_host",
})


def guess_flavor(text: str, *, source: str = "<xen>") -> str:
    """'xl' when the file uses any xl-only key, else 'xm'."""
    from .xmparse import parse_config

    keys = set(parse_config(text, source=source).keys())
    return "xl" if keys & XL_ONLY_KEYS else "xm"
