"""Xen `serial =`/`parallel =` strings <-> domain XML <serial>/<parallel>, and the Xen
console every PV guest gets.

Called by `virtctl.converters.xen.xm` for xm and xl alike. Follows libvirt's xen_common.c
(the qemu character device syntax: pty, file:, tcp:, udp:, unix:, ...) as summarised in
docs/xen-conversion.md. Pure: no I/O; a device type with no cfg spelling is warned
about, never silently dropped.
"""

from __future__ import annotations

from lxml import etree

from .xmbase import Guest, Writer, sub
from .xmparse import ConfigReader


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
        telnet = protocol is not None and w.attr(protocol, "type") == "telnet"
        scheme = "telnet" if telnet else "tcp"
        server = ",server,nowait" if "bind" in sources else ""
        return f"{scheme}:{_hp(w, first)}{server}"
    if kind == "udp" and "connect" in sources:
        bind = f"@{_hp(w, sources['bind'])}" if "bind" in sources else ""
        return f"udp:{_hp(w, sources['connect'])}{bind}"
    w.warn_xml(el, None, f"character device type {kind!r} has no xm/xl spelling")
    return None


def _hp(w: Writer, source: etree._Element) -> str:
    return f"{w.attr(source, 'host') or ''}:{w.attr(source, 'service') or ''}"

