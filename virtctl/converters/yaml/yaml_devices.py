"""The `<devices>` part of the YAML domain model: one read/write pair per device kind.

Called by yaml_domain. Each `read_*` turns one libvirt device element into a YAML
fragment (raising Unmodelled for anything outside the model) and each `write_*` does the
reverse; yaml_domain keeps a fragment only when writing it back gives the same XML.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from .xmlmap import (
    Element,
    Fragment,
    Type,
    Unmodelled,
    attr,
    only_children,
    read_attrs,
    single,
    spec_error,
    sub,
    write_attrs,
)

Reader = Callable[[Element], Fragment]
Writer = Callable[[Mapping[str, Any], str], Element]

_ADDRESS = tuple(
    attr(name, Type.SCALAR)
    for name in (
        "type", "domain", "bus", "slot", "function", "multifunction", "controller",
        "target", "unit", "port", "reg", "cssid", "ssid", "devno", "iobase", "irq", "base",
    )
)
_COMMON = ("alias", "address", "boot")


def _read_common(elem: Element, out: Fragment) -> Fragment:
    """alias, guest address and boot order: children every modelled device may carry."""
    for tag, key in (("alias", "alias"), ("boot", "bootOrder")):
        found = single(elem, tag)
        if found is not None:
            table = (attr("name"),) if tag == "alias" else (attr("order", Type.INT),)
            only_children(found, ())
            values = read_attrs(found, table)
            if len(values) != 1:
                raise Unmodelled(tag)
            out[key] = next(iter(values.values()))
    address = single(elem, "address")
    if address is not None:
        only_children(address, ())
        out["address"] = read_attrs(address, _ADDRESS)
    return out


def _write_common(elem: Element, data: Mapping[str, Any]) -> Element:
    if "bootOrder" in data:
        sub(elem, "boot", order=str(data["bootOrder"]))
    if "alias" in data:
        sub(elem, "alias", name=data["alias"])
    if "address" in data:
        write_attrs(sub(elem, "address"), data["address"], _ADDRESS)
    return elem


def _attrs_of(elem: Element, tag: str, table: tuple[Any, ...]) -> Fragment | None:
    found = single(elem, tag)
    if found is None:
        return None
    only_children(found, ())
    return read_attrs(found, table)


def _one_attr(elem: Element, tag: str, name: str, type_: Type = Type.STR) -> Any:
    values = _attrs_of(elem, tag, (attr(name, type_, key="v"),))
    if values is None:
        return None
    if set(values) != {"v"}:
        raise Unmodelled(tag)
    return values["v"]


def _put(out: Fragment, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


# disks -------------------------------------------------------------------------------

_DISK = (attr("type"), attr("device"))
_DISK_DRIVER = tuple(
    attr(n, Type.INT if n in ("iothread", "queues") else Type.STR)
    for n in ("name", "type", "cache", "io", "discard", "detect_zeroes", "error_policy",
              "iothread", "queues")
)
_SOURCE_ATTR = {"file": "file", "block": "dev", "dir": "dir"}
_VOLUME_SOURCE = (attr("pool"), attr("volume"), attr("mode"))  # <disk type='volume'>
_TARGET = (attr("dev", key="target"), attr("bus"))


def read_disk(elem: Element) -> Fragment:
    only_children(elem, ("driver", "source", "target", "readonly", "shareable", "transient",
                         "serial", *_COMMON))
    out = read_attrs(elem, _DISK)
    _put(out, "driver", _attrs_of(elem, "driver", _DISK_DRIVER))
    if out.get("type") == "volume":
        _put(out, "source", _attrs_of(elem, "source", _VOLUME_SOURCE))
    elif (source_attr := _SOURCE_ATTR.get(out.get("type", "file"))) is not None:
        _put(out, "source", _one_attr(elem, "source", source_attr))
    else:
        raise Unmodelled("disk type")
    target = _attrs_of(elem, "target", _TARGET)
    out.update(target or {})
    for flag in ("readonly", "shareable", "transient"):
        found = single(elem, flag)
        if found is not None:
            only_children(found, ())
            if found.attrib:
                raise Unmodelled(flag)
            out[flag] = True
    serial = single(elem, "serial")
    if serial is not None:
        only_children(serial, ())
        out["serial"] = serial.text or ""
    return _read_common(elem, out)


def write_disk(data: Mapping[str, Any], path: str) -> Element:
    elem = write_attrs(etree.Element("disk"), data, _DISK)
    if "driver" in data:
        write_attrs(sub(elem, "driver"), data["driver"], _DISK_DRIVER)
    if "source" in data:
        _write_disk_source(elem, data, path)
    if "target" in data or "bus" in data:
        write_attrs(sub(elem, "target"), data, _TARGET)
    for flag in ("readonly", "shareable", "transient"):
        if data.get(flag):
            sub(elem, flag)
        elif flag in data:
            raise spec_error(f"write {flag}: true or leave it out", f"{path}.{flag}")
    if "serial" in data:
        sub(elem, "serial", str(data["serial"]))
    return _write_common(elem, data)


def _write_disk_source(elem: Element, data: Mapping[str, Any], path: str) -> None:
    source = data["source"]
    if data.get("type") == "volume":
        if not isinstance(source, Mapping) or not {"pool", "volume"} <= set(source):
            raise spec_error("a volume disk's source is {pool: POOL, volume: NAME}",
                             f"{path}.source")
        write_attrs(sub(elem, "source"), source, _VOLUME_SOURCE)
    elif isinstance(source, Mapping):
        raise spec_error("source: {pool, volume} needs type: volume", f"{path}.source")
    else:
        sub(elem, "source", **{_SOURCE_ATTR[data.get("type", "file")]: source})


# interfaces ----------------------------------------------------------------------------

_IFACE_SOURCE = (
    attr("network"), attr("bridge"), attr("portgroup"), attr("dev"), attr("mode"),
    attr("address"), attr("port", Type.INT),
)
_IFACE_IP = (attr("address"), attr("prefix", Type.INT), attr("family"), attr("peer"))
_IFACE_DRIVER = (attr("name"), attr("queues", Type.INT))
_SOURCE_KEYS = {
    "network": {"network", "portgroup"},
    "bridge": {"bridge"},
    "direct": {"dev", "mode"},
    "mcast": {"address", "port"},
    "server": {"address", "port"},
    "client": {"address", "port"},
    "udp": {"address", "port"},
}


def read_interface(elem: Element) -> Fragment:
    only_children(elem, ("mac", "source", "target", "model", "script", "ip", "driver",
                         "link", "mtu", *_COMMON))
    out = read_attrs(elem, (attr("type"),))
    _put(out, "mac", _one_attr(elem, "mac", "address"))
    _put(out, "source", _attrs_of(elem, "source", _IFACE_SOURCE))
    _put(out, "target", _one_attr(elem, "target", "dev"))
    _put(out, "model", _one_attr(elem, "model", "type"))
    _put(out, "script", _one_attr(elem, "script", "path"))
    _put(out, "driver", _attrs_of(elem, "driver", _IFACE_DRIVER))
    _put(out, "link", _one_attr(elem, "link", "state"))
    _put(out, "mtu", _one_attr(elem, "mtu", "size", Type.INT))
    ips = []
    for ip in elem.findall("ip"):
        only_children(ip, ())
        ips.append(read_attrs(ip, _IFACE_IP))
    if ips:
        out["ips"] = ips
    return _read_common(elem, out)


def write_interface(data: Mapping[str, Any], path: str) -> Element:
    elem = write_attrs(etree.Element("interface"), data, (attr("type"),))
    _check_source(data, path)
    if "mac" in data:
        sub(elem, "mac", address=str(data["mac"]))
    if "source" in data:
        write_attrs(sub(elem, "source"), data["source"], _IFACE_SOURCE)
    if "target" in data:
        sub(elem, "target", dev=data["target"])
    if "model" in data:
        sub(elem, "model", type=data["model"])
    if "script" in data:
        sub(elem, "script", path=data["script"])
    for ip in data.get("ips", ()):
        write_attrs(sub(elem, "ip"), ip, _IFACE_IP)
    if "driver" in data:
        write_attrs(sub(elem, "driver"), data["driver"], _IFACE_DRIVER)
    if "link" in data:
        sub(elem, "link", state=data["link"])
    if "mtu" in data:
        sub(elem, "mtu", size=str(data["mtu"]))
    return _write_common(elem, data)


def _check_source(data: Mapping[str, Any], path: str) -> None:
    """The source fields an interface type uses, which the schema cannot tie to type."""
    source = data.get("source", {})
    kind = data.get("type", "")
    allowed = _SOURCE_KEYS.get(kind, set())
    for key in source:
        if key not in allowed:
            raise spec_error(f"interface type {kind!r} takes no source.{key}",
                             f"{path}.source.{key}")


# graphics, character devices, inputs, sound, video --------------------------------------

_GRAPHICS = tuple(
    attr(n, t)
    for n, t in (
        ("type", Type.STR), ("port", Type.INT), ("autoport", Type.YESNO),
        ("websocket", Type.INT), ("listen", Type.STR), ("passwd", Type.STR),
        ("keymap", Type.STR), ("sharePolicy", Type.STR), ("display", Type.STR),
        ("xauth", Type.STR), ("fullscreen", Type.YESNO),
    )
)
_LISTEN = (attr("type"), attr("address"), attr("network"), attr("socket"))


def read_graphics(elem: Element) -> Fragment:
    only_children(elem, ("listen",))
    out = read_attrs(elem, _GRAPHICS)
    listens = []
    for listen in elem.findall("listen"):
        only_children(listen, ())
        listens.append(read_attrs(listen, _LISTEN))
    if listens:
        out["listens"] = listens
    return out


def write_graphics(data: Mapping[str, Any], path: str) -> Element:
    elem = write_attrs(etree.Element("graphics"), data, _GRAPHICS)
    for listen in data.get("listens", ()):
        write_attrs(sub(elem, "listen"), listen, _LISTEN)
    return elem


_CHAR_SOURCE = (attr("path"), attr("mode"), attr("host"), attr("service", Type.SCALAR),
                attr("append", Type.ONOFF))
_CHAR_TARGET = (attr("type"), attr("port", Type.INT), attr("name"), attr("address"))


def _char_reader(tag: str) -> Reader:
    def read(elem: Element) -> Fragment:
        only_children(elem, ("source", "protocol", "target", "alias", "address"))
        out = read_attrs(elem, (attr("type"),))
        _put(out, "source", _attrs_of(elem, "source", _CHAR_SOURCE))
        _put(out, "protocol", _one_attr(elem, "protocol", "type"))
        _put(out, "target", _attrs_of(elem, "target", _CHAR_TARGET))
        return _read_common(elem, out)

    return read


def _char_writer(tag: str) -> Writer:
    def write(data: Mapping[str, Any], path: str) -> Element:
        elem = write_attrs(etree.Element(tag), data, (attr("type"),))
        if "source" in data:
            write_attrs(sub(elem, "source"), data["source"], _CHAR_SOURCE)
        if "protocol" in data:
            sub(elem, "protocol", type=data["protocol"])
        if "target" in data:
            write_attrs(sub(elem, "target"), data["target"], _CHAR_TARGET)
        return _write_common(elem, data)

    return write


def _simple_reader(table: tuple[Any, ...]) -> Reader:
    def read(elem: Element) -> Fragment:
        only_children(elem, ("alias", "address"))
        return _read_common(elem, read_attrs(elem, table))

    return read


def _simple_writer(tag: str, table: tuple[Any, ...]) -> Writer:
    def write(data: Mapping[str, Any], path: str) -> Element:
        return _write_common(write_attrs(etree.Element(tag), data, table), data)

    return write


_INPUT = (attr("type"), attr("bus"), attr("model"))
_SOUND = (attr("model"),)
_CONTROLLER = (attr("type"), attr("index", Type.INT), attr("model"), attr("ports", Type.INT),
               attr("vectors", Type.INT), attr("maxGrantFrames", Type.INT),
               attr("maxEventChannels", Type.INT))
_MEMBALLOON = (attr("model"), attr("autodeflate", Type.ONOFF))
_VIDEO_MODEL = tuple(
    attr(n, Type.STR if n == "type" else Type.INT)
    for n in ("type", "vram", "ram", "vgamem", "vram64", "heads")
) + (attr("primary", Type.YESNO),)


def read_video(elem: Element) -> Fragment:
    only_children(elem, ("model", "alias", "address"))
    out: Fragment = {}
    _put(out, "model", _attrs_of(elem, "model", _VIDEO_MODEL))
    return _read_common(elem, out)


def write_video(data: Mapping[str, Any], path: str) -> Element:
    elem = etree.Element("video")
    if "model" in data:
        write_attrs(sub(elem, "model"), data["model"], _VIDEO_MODEL)
    return _write_common(elem, data)


# host devices ---------------------------------------------------------------------------

_HOSTDEV = (attr("mode"), attr("type"), attr("managed", Type.YESNO))
_PCI_ADDRESS = tuple(attr(n) for n in ("domain", "bus", "slot", "function"))


def read_hostdev(elem: Element) -> Fragment:
    only_children(elem, ("driver", "source", "rom", *_COMMON))
    out = read_attrs(elem, _HOSTDEV)
    if out.get("type") != "pci":
        raise Unmodelled("hostdev type")
    _put(out, "driver", _one_attr(elem, "driver", "name"))
    _put(out, "rom", _attrs_of(elem, "rom", (attr("bar", Type.ONOFF), attr("file"))))
    source = single(elem, "source")
    if source is not None:
        only_children(source, ("address",))
        found = read_attrs(source, (attr("writeFiltering", Type.YESNO),))
        _put(found, "address", _attrs_of(source, "address", _PCI_ADDRESS))
        out["source"] = found
    return _read_common(elem, out)


def write_hostdev(data: Mapping[str, Any], path: str) -> Element:
    elem = write_attrs(etree.Element("hostdev"), data, _HOSTDEV)
    if "driver" in data:
        sub(elem, "driver", name=data["driver"])
    if "source" in data:
        source = data["source"]
        found = write_attrs(sub(elem, "source"), source, (attr("writeFiltering", Type.YESNO),))
        if "address" in source:
            write_attrs(sub(found, "address"), source["address"], _PCI_ADDRESS)
    if "rom" in data:
        write_attrs(sub(elem, "rom"), data["rom"], (attr("bar", Type.ONOFF), attr("file")))
    return _write_common(elem, data)


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """A YAML list key and the device elements it holds."""

    key: str
    tag: str
    read: Reader
    write: Writer


DEVICE_KINDS = (
    DeviceKind("disks", "disk", read_disk, write_disk),
    DeviceKind("controllers", "controller", _simple_reader(_CONTROLLER),
               _simple_writer("controller", _CONTROLLER)),
    DeviceKind("interfaces", "interface", read_interface, write_interface),
    DeviceKind("serials", "serial", _char_reader("serial"), _char_writer("serial")),
    DeviceKind("parallels", "parallel", _char_reader("parallel"), _char_writer("parallel")),
    DeviceKind("consoles", "console", _char_reader("console"), _char_writer("console")),
    DeviceKind("channels", "channel", _char_reader("channel"), _char_writer("channel")),
    DeviceKind("inputs", "input", _simple_reader(_INPUT), _simple_writer("input", _INPUT)),
    DeviceKind("graphics", "graphics", read_graphics, write_graphics),
    DeviceKind("sounds", "sound", _simple_reader(_SOUND), _simple_writer("sound", _SOUND)),
    DeviceKind("videos", "video", read_video, write_video),
    DeviceKind("hostdevs", "hostdev", read_hostdev, write_hostdev),
)
MEMBALLOON = DeviceKind(
    "memballoon", "memballoon", _simple_reader(_MEMBALLOON),
    _simple_writer("memballoon", _MEMBALLOON),
)

#: The order in which libvirt formats devices (virDomainDefFormatInternal).
DEVICE_ORDER = (
    "emulator", "disk", "controller", "lease", "filesystem", "interface", "smartcard",
    "serial", "parallel", "console", "channel", "input", "tpm", "graphics", "sound",
    "audio", "video", "hostdev", "redirdev", "redirfilter", "hub", "watchdog",
    "memballoon", "rng", "nvram", "panic", "shmem", "memory", "iommu", "vsock", "crypto",
)
