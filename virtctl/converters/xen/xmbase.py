"""Shared base of the Xen converters: reading/writing contexts and scalar mappings.

Called only by `virtctl.converters.xen.xm`, `.xl` and the device modules (`.xmdisk`,
`.xmvif`, `.xmchardev`, `.xmdev`). `Guest` is the domain being
built from a config file; `Writer` collects cfg keys from domain XML and tracks which XML
parts were used so the rest can be reported. Also: cpuset, uuid, memory units, timers
and `<features><xen>`. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from lxml import etree

from ...errors import ErrorCode, ErrorDomain, SpecError
from .xmparse import ConfigReader, Value, config_error

HVMLOADER = "/usr/lib/xen/boot/hvmloader"
BOOT_DEVICES = {"a": "fd", "c": "hd", "d": "cdrom", "n": "network"}
LIFECYCLE: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("on_poweroff", "destroy", frozenset({"destroy", "restart", "preserve", "rename-restart"})),
    ("on_reboot", "restart", frozenset({"destroy", "restart", "preserve", "rename-restart"})),
    ("on_crash", "restart", frozenset({"destroy", "restart", "preserve", "rename-restart",
                                       "coredump-destroy", "coredump-restart"})),
)
SOUND_MODELS = ("sb16", "es1370", "pcspk", "ac97", "ich6", "ich7", "ich9", "usb")
_DOMAIN_ORDER = ("name", "uuid", "memory", "currentMemory", "vcpu", "bootloader",
                 "bootloader_args", "os", "features", "cpu", "clock", "on_poweroff",
                 "on_reboot", "on_crash", "devices")
_DEVICE_ORDER = ("emulator", "disk", "controller", "interface", "serial", "parallel",
                 "console", "channel", "input", "graphics", "sound", "video", "hostdev",
                 "memballoon")


class Kind(StrEnum):
    """Guest type, valued as libvirt's <os><type> text."""

    PV = "linux"
    HVM = "hvm"
    PVH = "xenpvh"


_MACHINES = {Kind.PV: "xenpv", Kind.HVM: "xenfv", Kind.PVH: "xenpvh"}


def sub(parent: etree._Element, tag: str, text: str | None = None,
        **attrs: str | None) -> etree._Element:
    """Append a child element; attributes whose value is None are left out."""
    child = etree.SubElement(parent, tag)
    for key, value in attrs.items():
        if value is not None:
            child.set(key, value)
    if text is not None:
        child.text = text
    return child


def sort_children(dom: etree._Element) -> None:
    """Put domain and device children in libvirt's order (stable within a tag)."""
    _sort(dom, _DOMAIN_ORDER)
    devices = dom.find("devices")
    if devices is not None:
        _sort(devices, _DEVICE_ORDER)


def _sort(parent: etree._Element, order: tuple[str, ...]) -> None:
    rank = {tag: i for i, tag in enumerate(order)}
    children = sorted(parent, key=lambda c: rank.get(str(c.tag), len(order)))
    parent[:] = children


@dataclass(slots=True)
class Guest:
    """The domain being built from a config file."""

    dom: etree._Element
    devices: etree._Element
    kind: Kind
    arch: str
    pv_nic_type: str
    os: etree._Element = field(init=False)

    def __post_init__(self) -> None:
        self.os = sub(self.dom, "os")
        sub(self.os, "type", self.kind.value, arch=self.arch, machine=_MACHINES[self.kind])

    @property
    def hvm(self) -> bool:
        return self.kind is Kind.HVM


# -- reading helpers -----------------------------------------------------------------------

def missing(r: ConfigReader, key: str) -> SpecError:
    return config_error(f"{key}: is required", r.source, r.line(key), key)


def positive(r: ConfigReader, key: str, default: int) -> int:
    value = r.integer(key, default)
    if value is None or value <= 0:
        raise r.error(key, f"must be a positive integer, got {value}")
    return value


def normalize_uuid(r: ConfigReader, value: str) -> str:
    digits = value.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", digits):
        raise r.error("uuid", f"malformed uuid {value!r}")
    parts = (digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:])
    return "-".join(parts)


def warn_only_for(r: ConfigReader, keys: tuple[str, ...], who: str) -> None:
    for key in keys:
        if r.has(key):
            r.raw(key)
            r.warn(key, f"only applies to {who}; ignored")


def read_cpuset(r: ConfigReader) -> str | None:
    value = r.raw("cpus")
    if value is None:
        return None
    if not isinstance(value, str):
        r.warn("cpus", "per-vCPU pinning lists have no <vcpu cpuset> equivalent; ignored")
        return None
    if value.strip() in ("", "all"):
        return None
    return format_cpuset(parse_cpuset(r, value))


def parse_cpuset(r: ConfigReader, text: str) -> set[int]:
    """libvirt's cpuset syntax: "0-3,^2,5"; exclusions apply after inclusions."""
    include: set[int] = set()
    exclude: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\^)?([0-9]{1,4})(?:-([0-9]{1,4}))?", part)
        if match is None:
            raise r.error("cpus", f"malformed cpu set {text!r}")
        low = int(match.group(2))
        high = int(match.group(3) or low)
        if high < low or high >= 4096:
            raise r.error("cpus", f"cpu range {part!r} out of bounds")
        (exclude if match.group(1) else include).update(range(low, high + 1))
    return include - exclude


def format_cpuset(cpus: set[int]) -> str | None:
    if not cpus:
        return None
    ranges: list[str] = []
    ordered = sorted(cpus)
    start = prev = ordered[0]
    for cpu in [*ordered[1:], -2]:
        if cpu != prev + 1:
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = cpu
        prev = cpu
    return ",".join(ranges)


def read_xen_features(r: ConfigReader, features: etree._Element) -> None:
    """<features><xen>: e820_host (PV) and PCI passthrough mode."""
    xen = etree.Element("xen")
    if r.flag("e820_host", False):
        sub(xen, "e820_host", state="on")
    passthrough = r.text("passthrough")
    if passthrough is not None:
        modes = {"enabled": ("on", None), "disabled": ("off", None),
                 "sync_pt": ("on", "sync_pt"), "share_pt": ("on", "share_pt")}
        if passthrough not in modes:
            raise r.error("passthrough", f"unknown mode {passthrough!r}")
        state, mode = modes[passthrough]
        sub(xen, "passthrough", state=state, mode=mode)
    if len(xen):
        features.append(xen)


_TSC_MODES = {"always_emulate": "emulate", "native": "native",
              "native_paravirt": "paravirt", "default": "auto"}


def read_timers(r: ConfigReader, clock: etree._Element, *, hvm: bool) -> None:
    tsc = r.text("tsc_mode")
    if tsc is not None:
        sub(clock, "timer", name="tsc", present="yes", mode=_TSC_MODES.get(tsc, "auto"))
    if hvm and r.has("hpet"):
        sub(clock, "timer", name="hpet", present="yes" if r.flag("hpet", False) else "no")
    elif r.has("hpet"):
        warn_only_for(r, ("hpet",), "HVM guests")


# -- writing context -----------------------------------------------------------------------

@dataclass(slots=True)
class Writer:
    """Collects cfg keys from domain XML and remembers which XML parts were used.

    Every element or attribute not marked as used ends up as a warning, so XML with no
    xm/xl equivalent is reported instead of dropped silently.
    """

    kind: Kind
    flavor: str
    pairs: list[tuple[str, Value]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _used: set[etree._Element] = field(default_factory=set)
    _used_attrs: set[tuple[etree._Element, str]] = field(default_factory=set)

    @property
    def hvm(self) -> bool:
        return self.kind is Kind.HVM

    def put(self, key: str, value: Value) -> None:
        self.pairs.append((key, value))

    def mark(self, el: etree._Element, *attrs: str) -> None:
        self._used.add(el)
        self._used_attrs.update((el, a) for a in attrs)

    def mark_tree(self, el: etree._Element) -> None:
        for node in el.iter():
            if isinstance(node.tag, str):
                self.mark(node, *node.attrib.keys())

    def attr(self, el: etree._Element, name: str) -> str | None:
        self.mark(el, name)
        value: str | None = el.get(name)
        return value

    def child(self, el: etree._Element, tag: str) -> etree._Element | None:
        found = el.find(tag)
        if found is not None:
            self.mark(found)
        return found

    def children(self, el: etree._Element, tag: str) -> list[etree._Element]:
        found: list[etree._Element] = el.findall(tag)
        for child in found:
            self.mark(child)
        return found

    def text(self, el: etree._Element, tag: str) -> str | None:
        found = self.child(el, tag)
        return None if found is None else (found.text or "").strip()

    def warn_xml(self, el: etree._Element | None, attr: str | None, message: str) -> None:
        if el is None:
            return
        where = _path(el) + (f"/@{attr}" if attr else "")
        self.warnings.append(f"{where}: {message}")
        self.mark_tree(el) if attr is None else self.mark(el, attr)

    def warn_unhandled(self, root: etree._Element) -> None:
        for child in root:
            self._check(child)

    def _check(self, el: etree._Element) -> None:
        if not isinstance(el.tag, str):
            return
        if el not in self._used:
            if not is_implicit(el, self.kind):
                self.warnings.append(f"{_path(el)}: no {self.flavor} equivalent; dropped")
            return
        for name in el.attrib:
            if (el, name) not in self._used_attrs and \
                    DEFAULT_ATTRS.get((el.tag, name)) != el.get(name):
                self.warnings.append(f"{_path(el)}/@{name}: no {self.flavor} equivalent; "
                                     "dropped")
        for child in el:
            self._check(child)


#: Attributes whose value is libvirt's own default: dropping them loses nothing.
DEFAULT_ATTRS = {("loader", "format"): "raw"}


def _path(el: etree._Element) -> str:
    return str(el.getroottree().getpath(el)).removeprefix("/domain/")


def is_implicit(el: etree._Element, kind: Kind) -> bool:
    """Parts libvirt adds by itself on define, so dropping them loses nothing."""
    tag, parent = el.tag, el.getparent()
    if tag in ("address", "alias"):
        return True
    if parent is None or parent.tag != "devices":
        return False
    if tag == "memballoon":
        return el.get("model") in (None, "xen")
    if tag == "video":
        return el.find("model") is None or el.find("model").get("type") in ("cirrus", "xen")
    if tag == "controller":
        return el.get("type") in ("ide", "pci") or (
            el.get("type") == "xenbus" and not set(el.attrib) - {"type", "index"})
    if tag == "input":
        return el.get("bus") in ("ps2", "xen")
    if tag == "console":
        target = el.find("target")
        target_type = target.get("type") if target is not None else None
        return target_type == "serial" or (kind is not Kind.HVM and el.get("type") == "pty")
    return False


def kib(w: Writer, el: etree._Element | None) -> int | None:
    """A memory size element in KiB, whatever its unit attribute says."""
    if el is None:
        return None
    units = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000,
             "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
             "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
             "t": 1024**4, "tib": 1024**4, "tb": 1000**4}
    unit = (w.attr(el, "unit") or "KiB").lower()
    if unit not in units:
        raise SpecError(f"{_path(el)}: unknown unit {unit!r}", code=ErrorCode.INVALID_SPEC,
                        domain=ErrorDomain.CONVERTER)
    number = xml_int(w, el, (el.text or "").strip(), _path(el))
    return -(-number * units[unit] // 1024)


def xml_int(w: Writer, el: etree._Element, text: str | None, what: str) -> int:
    if text is None or not re.fullmatch(r"-?[0-9]+", text.strip()):
        raise SpecError(f"{what}: expected an integer, got {text!r}",
                        code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER)
    return int(text)


def write_xen_features(w: Writer, features: etree._Element) -> None:
    xen = w.child(features, "xen")
    if xen is None:
        return
    e820 = w.child(xen, "e820_host")
    if e820 is not None and w.attr(e820, "state") == "on":
        w.put("e820_host", 1)
    passthrough = w.child(xen, "passthrough")
    if passthrough is not None:
        state, mode = w.attr(passthrough, "state"), w.attr(passthrough, "mode")
        w.put("passthrough", mode or ("enabled" if state == "on" else "disabled"))


def write_timers(w: Writer, clock: etree._Element) -> None:
    modes = {xml: cfg for cfg, xml in _TSC_MODES.items()}
    for timer in w.children(clock, "timer"):
        name, present = w.attr(timer, "name"), w.attr(timer, "present")
        if name == "hpet" and w.hvm:
            w.put("hpet", int(present != "no"))
        elif name == "tsc":
            w.put("tsc_mode", modes.get(w.attr(timer, "mode") or "auto", "default"))
        else:
            w.warn_xml(timer, None, f"timer {name!r} has no {w.flavor} equivalent")


class Flavor(StrEnum):
    XM = "xm"
    XL = "xl"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between xm and xl; everything else is shared."""

    flavor: Flavor
    read_os: Callable[[ConfigReader, Guest], None]
    read_disk: Callable[[ConfigReader, int, str, Guest], etree._Element | None]
    read_extras: Callable[[ConfigReader, Guest], None]
    write_os: Callable[[Writer, etree._Element], None]
    write_vcpus: Callable[[Writer, int, int], None]
    write_disk: Callable[[Writer, etree._Element], str | None]
    write_extras: Callable[[Writer, etree._Element], None]
