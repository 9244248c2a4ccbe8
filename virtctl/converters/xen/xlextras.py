"""The keys only xl knows, both directions: channel, usbctrl, usbdev, the xenbus limits,
vnuma, spice, `device_model_args`, and (in `xlcpu`) nestedhvm and cpuid. Part of the xl
dialect (`virtctl.converters.xen.xl`). Pure.
"""

from __future__ import annotations

from lxml import etree

from .xlcpu import read_cpu, write_cpu
from .xmbase import Guest, Writer, format_cpuset, parse_cpuset, sub
from .xmparse import ConfigReader, Value, key_values

#: libvirt's namespace for extra device-model arguments.
XEN_NS = "http://libvirt.org/schemas/domain/xen/1.0"


# -- xl-only keys: reading ---------------------------------------------------------------------

def read_extras(r: ConfigReader, guest: Guest) -> None:
    _read_channels(r, guest)
    _read_usb(r, guest)
    _read_xenbus(r, guest)
    read_cpu(r, guest)  # before vnuma: libvirt puts the features ahead of <numa>
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
    cpu = guest.dom.find("cpu")
    numa = sub(cpu if cpu is not None else sub(guest.dom, "cpu"), "numa")
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
    """As libvirt 11.3 reads them: the mouse mode and clipboard are always set (server, no
    by default); `spicevdagent` is implied by either, so it is read but adds nothing;
    `spiceusbredirection` = N becomes N spicevmc USB redirection channels."""
    if not r.flag("spice", False):
        for key in (k for k in _SPICE_KEYS if r.has(k)):
            r.raw(key)
            r.warn(key, "ignored because spice is not enabled")
        return
    port, tls_port = r.text("spiceport"), r.text("spicetls_port")
    listen = r.text("spicehost")
    ticketing = not r.flag("spicedisable_ticketing", False)
    passwd = r.text("spicepasswd")
    graphics = sub(guest.devices, "graphics", type="spice", port=port, tlsPort=tls_port,
                   autoport="no" if port or tls_port else "yes", listen=listen,
                   passwd=passwd if ticketing else None)
    if listen:
        sub(graphics, "listen", type="address", address=listen)
    client_mouse = r.flag("spiceagent_mouse", False)
    clipboard = r.flag("spice_clipboard_sharing", False)
    if (client_mouse or clipboard) and not r.flag("spicevdagent", True):
        r.warn("spicevdagent", "the client mouse and clipboard sharing need the agent; "
                               "kept as requested")
    sub(graphics, "mouse", mode="client" if client_mouse else "server")
    sub(graphics, "clipboard", copypaste="yes" if clipboard else "no")
    redirections = r.integer("spiceusbredirection", 0) or 0
    for _ in range(max(redirections, 0)):
        sub(guest.devices, "redirdev", bus="usb", type="spicevmc")


_SPICE_KEYS = ("spicehost", "spiceport", "spicetls_port", "spicedisable_ticketing",
               "spicepasswd", "spiceagent_mouse", "spicevdagent", "spice_clipboard_sharing",
               "spiceusbredirection")


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

def write_extras(w: Writer, root: etree._Element) -> None:
    devices = root.find("devices")
    if devices is not None:
        _write_channels(w, devices)
        _write_usb(w, devices)
        _write_xenbus(w, devices)
        _write_spice(w, devices)
    if w.hvm and not _displays(devices, "vnc", "sdl", "spice"):
        # xl gives an HVM guest a VNC display unless told not to (its `vnc` defaults to
        # 1; libvirt's reader and writer take a missing key as none): say none.
        w.put("vnc", 0)
    write_cpu(w, root)
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


def _displays(devices: etree._Element | None, *types: str) -> list[etree._Element]:
    """The `<graphics>` of these types."""
    found = devices.findall("graphics") if devices is not None else []
    return [g for g in found if g.get("type") in types]


def _write_spice(w: Writer, devices: etree._Element) -> None:
    """As libvirt 11.3 writes them; the client mouse and clipboard sharing turn on
    `spicevdagent`, which both need."""
    graphics = next((g for g in devices.findall("graphics") if g.get("type") == "spice"), None)
    if graphics is None:
        return
    w.mark(graphics, "type", "autoport")
    if w.hvm and not _displays(devices, "vnc", "sdl"):
        # As libvirt writes it: without `vnc = 0` xl starts a VNC display as well.
        w.put("sdl", 0)
        w.put("vnc", 0)
    w.put("spice", 1)
    for attr, key in (("listen", "spicehost"), ("port", "spiceport"),
                      ("tlsPort", "spicetls_port")):
        value = w.attr(graphics, attr)
        if value is not None:
            w.put(key, int(value) if key.endswith("port") and value.isdigit() else value)
    passwd = w.attr(graphics, "passwd")
    w.put("spicedisable_ticketing", int(passwd is None))
    if passwd is not None:
        w.put("spicepasswd", passwd)
    for listen in w.children(graphics, "listen"):
        w.mark(listen, "type", "address")
    mouse, clipboard = w.child(graphics, "mouse"), w.child(graphics, "clipboard")
    agent = False
    if mouse is not None:
        client = w.attr(mouse, "mode") == "client"
        w.put("spiceagent_mouse", int(client))
        agent = client
    if clipboard is not None and w.attr(clipboard, "copypaste") == "yes":
        w.put("spice_clipboard_sharing", 1)
        agent = True
    if agent:
        w.put("spicevdagent", 1)
    redirs = [d for d in devices.findall("redirdev")
              if d.get("bus") in (None, "usb") and d.get("type") == "spicevmc" and not len(d)]
    for redir in redirs:
        w.mark(redir, "bus", "type")
    if redirs:
        w.put("spiceusbredirection", len(redirs))


def _write_vnuma(w: Writer, root: etree._Element) -> None:
    cpu = root.find("cpu")
    numa = cpu.find("numa") if cpu is not None else None
    if cpu is None or numa is None:
        return
    w.mark(cpu)
    cells = w.children(numa, "cell")
    w.mark(numa)
    # A distance given one way only holds both ways, as libvirt completes the matrix;
    # then Xen's defaults: 10 to itself, 20 to the others.
    given: dict[tuple[int, int], str] = {}
    for index, cell in enumerate(cells):
        for sibling in cell.findall("distances/sibling"):
            given[(index, int(sibling.get("id") or "0"))] = sibling.get("value") or "20"
    nodes: list[Value] = []
    for index, cell in enumerate(cells):
        w.mark(cell, "id", "unit")
        size = -(-int(w.attr(cell, "memory") or "0") // 1024)
        if cell.find("distances") is not None:
            w.mark_tree(cell.find("distances"))
        vdist = ",".join(
            given.get((index, j)) or given.get((j, index)) or ("10" if j == index else "20")
            for j in range(len(cells)))
        nodes.append((f"pnode={index}", f"size={size}", f"vcpus={w.attr(cell, 'cpus')}",
                      f"vdistances={vdist}"))
    w.put("vnuma", tuple(nodes))
