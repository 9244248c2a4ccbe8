"""Xen xm config files <-> libvirt domain XML, following libvirt's own Xen converter.

Called by `virtctl.converters.convert` (the `convert` command) and the spec loader
(`.cfg` files as specs). `xm_to_xml` and `xml_to_xm` are pure: text in, `Conversion`
out, no I/O, no clock, no randomness (a missing uuid stays missing; libvirt fills it).

The same engine serves xl files: a `Dialect` names what differs (how the OS keys,
disks and the paravirtual NIC keyword read and write, and which extra keys exist);
`virtctl.converters.xl` defines the xl dialect. Key-by-key mapping and the decisions
taken are in docs/xen-conversion.md. Device parsers live in `xmdisk`, `xmvif`,
`xmchardev` and `xmdev` (the rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from lxml import etree

from ..errors import ErrorCode, ErrorDomain, Source, SpecError
from ..xmlutil import parse, tostring
from . import xmbase, xmchardev, xmdev, xmdisk, xmvif
from .xmbase import Guest, Kind, Writer, sub
from .xmparse import ConfigReader, Value, format_config, looks_like_xen_config, parse_config

__all__ = ["Conversion", "Dialect", "looks_like_xen_config", "xm_to_xml", "xml_to_xm"]


@dataclass(frozen=True, slots=True)
class Conversion:
    """The converted text and what could not be carried over."""

    text: str
    warnings: tuple[str, ...] = ()


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


def _dialect(flavor: str) -> Dialect:
    if flavor == Flavor.XM:
        return XM
    if flavor == Flavor.XL:
        # Imported here because xl builds on this module (xl -> xm, never xm -> xl at load).
        from .xl import XL

        return XL
    raise SpecError(f"unknown Xen config flavor {flavor!r} (expected xm or xl)",
                    code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER)


# -- xm file -> domain XML -----------------------------------------------------------------

def xm_to_xml(text: str, *, source: str = "<xm>", flavor: str = "xm",
              arch: str = "x86_64") -> Conversion:
    """Convert an xm (or, with flavor="xl", xl) config file to libvirt domain XML."""
    dialect = _dialect(flavor)
    reader = ConfigReader(parse_config(text, source=source))
    guest = _read_guest(reader, dialect, arch)
    xmbase.sort_children(guest.dom)
    warnings = [*reader.warnings, *reader.unused_warnings()]
    return Conversion(tostring(guest.dom), tuple(warnings))


def _read_guest(r: ConfigReader, dialect: Dialect, arch: str) -> Guest:
    dom = etree.Element("domain", type="xen")
    guest = Guest(dom=dom, devices=etree.Element("devices"), kind=_read_kind(r),
                  arch=arch, pv_nic_type="vif" if dialect.flavor == Flavor.XL else "netfront")
    _read_identity(r, dom)
    _read_memory(r, dom)
    _read_vcpus(r, dom)
    dialect.read_os(r, guest)
    _read_features(r, guest)
    _read_clock(r, guest)
    _read_lifecycle(r, dom)
    _read_devices(r, guest, dialect)
    dialect.read_extras(r, guest)
    if len(guest.devices):
        dom.append(guest.devices)
    return guest


def _read_kind(r: ConfigReader) -> Kind:
    # `type` (newer libvirt) wins over `builder`.
    if r.has("type"):
        value = r.text("type")
        kinds = {"pv": Kind.PV, "pvh": Kind.PVH, "hvm": Kind.HVM}
        if value not in kinds:
            raise r.error("type", f"unknown guest type {value!r} (expected pv, pvh or hvm)")
        r.raw("builder")
        return kinds[value]
    return Kind.HVM if r.text("builder", "linux") == "hvm" else Kind.PV


def _read_identity(r: ConfigReader, dom: etree._Element) -> None:
    name = r.text("name")
    if not name:
        raise xmbase.missing(r, "name")
    sub(dom, "name", name)
    uuid = r.text("uuid")
    if uuid is not None:
        sub(dom, "uuid", xmbase.normalize_uuid(r, uuid))


def _read_memory(r: ConfigReader, dom: etree._Element) -> None:
    # MiB in the file, KiB in the XML; memory defaults to 128 MiB, maxmem to memory.
    current = xmbase.positive(r, "memory", 128)
    maximum = xmbase.positive(r, "maxmem", current)
    if maximum < current:
        r.warn("maxmem", f"{maximum} MiB is below memory ({current} MiB); using {current}")
        maximum = current
    sub(dom, "memory", str(maximum * 1024), unit="KiB")
    sub(dom, "currentMemory", str(current * 1024), unit="KiB")


def _read_vcpus(r: ConfigReader, dom: etree._Element) -> None:
    vcpus = xmbase.positive(r, "vcpus", 1)
    maximum, current = vcpus, vcpus
    if r.has("maxvcpus"):
        maximum = xmbase.positive(r, "maxvcpus", vcpus)
        if maximum < vcpus:
            raise r.error("maxvcpus", f"{maximum} is below vcpus ({vcpus})")
    avail = r.integer("vcpu_avail")
    if avail is not None:
        current = min(current, (avail & ((1 << 64) - 1)).bit_count())
    vcpu = sub(dom, "vcpu", str(maximum))
    if current != maximum:
        vcpu.set("current", str(current))
    cpuset = xmbase.read_cpuset(r)
    if cpuset:
        vcpu.set("cpuset", cpuset)


def read_common_os(r: ConfigReader, guest: Guest, *, cmdline_key: str | None) -> None:
    """PV/PVH boot keys, shared by xm and xl; xl passes cmdline_key="cmdline"."""
    dom, os_el = guest.dom, guest.os
    bootloader = r.text("bootloader")
    if bootloader is not None:
        sub(dom, "bootloader", bootloader)
        args = r.text("bootargs")
        if args is not None:
            sub(dom, "bootloader_args", args)
    for key, tag in (("kernel", "kernel"), ("ramdisk", "initrd")):
        value = r.text(key)
        if value is not None:
            sub(os_el, tag, value)
    cmdline = read_cmdline(r, cmdline_key)
    if cmdline is not None:
        sub(os_el, "cmdline", cmdline)


def read_cmdline(r: ConfigReader, cmdline_key: str | None) -> str | None:
    """`root=` folds into the command line (libvirt since 2014); xl's `cmdline=` wins."""
    if cmdline_key is not None and r.has(cmdline_key):
        for ignored in ("root", "extra"):
            if r.has(ignored):
                r.raw(ignored)
                r.warn(ignored, f"ignored because {cmdline_key}= is set")
        return r.text(cmdline_key)
    root, extra = r.text("root"), r.text("extra")
    if root is not None:
        return f"root={root} {extra}" if extra else f"root={root}"
    return extra


def read_boot_order(r: ConfigReader, os_el: etree._Element) -> None:
    order = r.text("boot", "c") or "c"
    seen: list[str] = []
    for letter in order[:4]:
        dev = xmbase.BOOT_DEVICES.get(letter)
        if dev is None:
            r.warn("boot", f"unknown boot device {letter!r}; treated as hard disk")
            dev = "hd"
        if dev not in seen:
            seen.append(dev)
    for dev in seen:
        sub(os_el, "boot", dev=dev)


def _read_xm_os(r: ConfigReader, guest: Guest) -> None:
    if guest.kind is Kind.HVM:
        # In xm, an HVM guest's kernel= is the firmware loader.
        loader = r.text("kernel", xmbase.HVMLOADER) or xmbase.HVMLOADER
        sub(guest.os, "loader", loader, type="rom")
        read_boot_order(r, guest.os)
        return
    read_common_os(r, guest, cmdline_key=None)


def _read_features(r: ConfigReader, guest: Guest) -> None:
    features = etree.Element("features")
    if guest.kind is Kind.HVM:
        for key in ("acpi", "apic", "pae"):
            if r.flag(key, True):
                sub(features, key)
        if not r.flag("hap", True):
            sub(features, "hap", state="off")
        if r.flag("viridian", False):
            sub(features, "viridian")
    else:
        xmbase.warn_only_for(r, ("acpi", "apic", "pae", "hap", "viridian"), "HVM guests")
    xmbase.read_xen_features(r, features)
    if len(features):
        guest.dom.append(features)


def _read_clock(r: ConfigReader, guest: Guest) -> None:
    localtime = r.flag("localtime", False)
    if guest.kind is Kind.HVM:
        # Modern libvirt: HVM guests have an emulated RTC with a variable offset.
        offset = r.integer("rtc_timeoffset", 0) or 0
        clock = sub(guest.dom, "clock", offset="variable", adjustment=str(offset),
                    basis="localtime" if localtime else "utc")
    else:
        xmbase.warn_only_for(r, ("rtc_timeoffset",), "HVM guests")
        clock = sub(guest.dom, "clock", offset="localtime" if localtime else "utc",
                    adjustment="reset")
    xmbase.read_timers(r, clock, hvm=guest.kind is Kind.HVM)


def _read_lifecycle(r: ConfigReader, dom: etree._Element) -> None:
    for key, default, allowed in xmbase.LIFECYCLE:
        value = r.text(key, default) or default
        if value not in allowed:
            raise r.error(key, f"unknown action {value!r} (expected one of "
                               f"{', '.join(sorted(allowed))})")
        sub(dom, key, value)


def _read_devices(r: ConfigReader, guest: Guest, dialect: Dialect) -> None:
    emulator = r.text("device_model")
    if emulator is not None:
        sub(guest.devices, "emulator", emulator)
    for index, spec in r.strings("disk"):
        disk = dialect.read_disk(r, index, spec, guest)
        if disk is not None:
            guest.devices.append(disk)
    xmdisk.read_legacy_cdrom(r, guest)
    xmvif.read_vifs(r, guest)
    xmdev.read_graphics(r, guest)
    xmchardev.read_chardevs(r, guest)
    xmdev.read_inputs(r, guest)
    xmdev.read_sound(r, guest)
    xmdev.read_pci(r, guest)


def _read_xm_extras(r: ConfigReader, guest: Guest) -> None:
    """xm has nothing beyond the shared keys."""


# -- domain XML -> xm file -----------------------------------------------------------------

def xml_to_xm(xml: str, *, flavor: str = "xm", source: str = "<xml>") -> Conversion:
    """Convert libvirt domain XML to an xm (or, with flavor="xl", xl) config file."""
    dialect = _dialect(flavor)
    root = _parse_domain(xml, source)
    writer = Writer(kind=_write_kind(root, source), flavor=dialect.flavor.value)
    _write_guest(writer, root, dialect)
    writer.warn_unhandled(root)
    return Conversion(format_config(writer.pairs), tuple(writer.warnings))


def _parse_domain(xml: str, source: str) -> etree._Element:
    try:
        root = parse(xml, source=source)
    except SpecError as exc:
        raise SpecError(exc.message, code=ErrorCode.PARSE_ERROR, domain=ErrorDomain.CONVERTER,
                        source=exc.source) from None
    if root.tag != "domain":
        raise SpecError(f"expected a <domain> document, got <{root.tag}>",
                        code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER,
                        source=Source(source, root.sourceline))
    return root


def _write_kind(root: etree._Element, source: str) -> Kind:
    os_type = root.findtext("os/type")
    kinds = {"hvm": Kind.HVM, "xen": Kind.PV, "linux": Kind.PV, "xenpvh": Kind.PVH}
    if os_type is None or os_type.strip() not in kinds:
        raise SpecError(f"<os><type> {os_type!r} has no Xen equivalent "
                        "(expected hvm, xen, linux or xenpvh)",
                        code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER,
                        source=Source(source, None, path="os/type"))
    return kinds[os_type.strip()]


def _write_guest(w: Writer, root: etree._Element, dialect: Dialect) -> None:
    w.mark(root, "type", "id")
    _write_identity(w, root)
    _write_memory(w, root)
    _write_vcpus(w, root, dialect)
    _write_kind_keys(w, root)
    dialect.write_os(w, root)
    _write_features(w, root)
    _write_clock(w, root)
    _write_lifecycle(w, root)
    devices = w.child(root, "devices")
    if devices is not None:
        _write_devices(w, devices, dialect)
    dialect.write_extras(w, root)


def _write_identity(w: Writer, root: etree._Element) -> None:
    name = w.text(root, "name")
    if not name:
        raise SpecError("domain XML has no <name>", code=ErrorCode.INVALID_SPEC,
                        domain=ErrorDomain.CONVERTER)
    w.put("name", name)
    uuid = w.text(root, "uuid")
    if uuid:
        w.put("uuid", uuid)


def _write_memory(w: Writer, root: etree._Element) -> None:
    maximum = xmbase.kib(w, w.child(root, "memory"))
    current = xmbase.kib(w, w.child(root, "currentMemory"))
    maximum = maximum or current
    current = current or maximum
    if maximum is None or current is None:
        return
    # KiB in the XML, MiB in the file, rounded up as libvirt does.
    w.put("maxmem", -(-maximum // 1024))
    w.put("memory", -(-current // 1024))


def _write_vcpus(w: Writer, root: etree._Element, dialect: Dialect) -> None:
    vcpu = w.child(root, "vcpu")
    if vcpu is None:
        return
    maximum = xmbase.xml_int(w, vcpu, (vcpu.text or "1").strip(), "vcpu")
    current_attr = w.attr(vcpu, "current")
    current = xmbase.xml_int(w, vcpu, current_attr, "vcpu/@current") if current_attr else maximum
    if w.attr(vcpu, "placement") not in (None, "static"):
        w.warn_xml(vcpu, "placement", "only static placement maps to xm")
    dialect.write_vcpus(w, maximum, current)
    cpuset = w.attr(vcpu, "cpuset")
    if cpuset:
        w.put("cpus", cpuset)


def _write_xm_vcpus(w: Writer, maximum: int, current: int) -> None:
    w.put("vcpus", maximum)
    if current < maximum:
        w.put("vcpu_avail", (1 << current) - 1)


def _write_kind_keys(w: Writer, root: etree._Element) -> None:
    os_el = w.child(root, "os")
    if os_el is None:
        return
    type_el = w.child(os_el, "type")
    if type_el is not None:
        w.mark(type_el, "arch", "machine")
    if w.kind is Kind.HVM:
        w.put("builder", "hvm")
    elif w.kind is Kind.PVH:
        if w.flavor == Flavor.XM:
            w.warnings.append("os/type: xenpvh guests need the xl toolstack; wrote type=\"pvh\"")
        w.put("type", "pvh")


def write_pv_os(w: Writer, root: etree._Element, os_el: etree._Element, *,
                cmdline_key: str) -> None:
    """bootloader/kernel/ramdisk/command line of a PV (or xl HVM direct-boot) guest."""
    for tag, key in (("bootloader", "bootloader"), ("bootloader_args", "bootargs")):
        value = w.text(root, tag)
        if value is not None:
            w.put(key, value)
    for tag, key in (("kernel", "kernel"), ("initrd", "ramdisk"), ("cmdline", cmdline_key)):
        value = w.text(os_el, tag)
        if value is not None:
            w.put(key, value)


def write_boot_order(w: Writer, os_el: etree._Element) -> None:
    letters = {dev: letter for letter, dev in xmbase.BOOT_DEVICES.items()}
    order = ""
    for boot in w.children(os_el, "boot"):
        dev = w.attr(boot, "dev") or ""
        if dev in letters:
            order += letters[dev]
        else:
            w.warn_xml(boot, "dev", f"boot device {dev!r} has no xm letter")
    if order:
        w.put("boot", order)


def _write_xm_os(w: Writer, root: etree._Element) -> None:
    os_el = root.find("os")
    if os_el is None:
        return
    if w.kind is Kind.HVM:
        loader = w.child(os_el, "loader")
        if loader is not None:
            w.mark(loader, "type", "readonly")
            if w.attr(loader, "type") == "pflash":
                w.warn_xml(loader, None, "pflash (UEFI) firmware needs xl's bios=\"ovmf\"")
            else:
                w.put("kernel", (loader.text or "").strip())
        for tag in ("kernel", "initrd", "cmdline"):
            if os_el.find(tag) is not None:
                w.warn_xml(os_el.find(tag), None, "HVM direct kernel boot needs xl")
        write_boot_order(w, os_el)
        return
    write_pv_os(w, root, os_el, cmdline_key="extra")


def _write_features(w: Writer, root: etree._Element) -> None:
    features = w.child(root, "features")
    if w.kind is Kind.HVM:
        for key in ("pae", "acpi", "apic"):
            w.put(key, int(features is not None and w.child(features, key) is not None))
        hap = w.child(features, "hap") if features is not None else None
        if hap is not None and w.attr(hap, "state") == "off":
            w.put("hap", 0)
        viridian = w.child(features, "viridian") if features is not None else None
        w.put("viridian", int(viridian is not None))
    if features is not None:
        xmbase.write_xen_features(w, features)


def _write_clock(w: Writer, root: etree._Element) -> None:
    clock = w.child(root, "clock")
    if clock is None:
        return
    offset = w.attr(clock, "offset") or "utc"
    adjustment = w.attr(clock, "adjustment")
    basis = w.attr(clock, "basis")
    if offset == "variable":
        if w.kind is Kind.HVM:
            w.put("rtc_timeoffset", xmbase.xml_int(w, clock, adjustment or "0", "clock"))
        elif adjustment not in (None, "0"):
            w.warn_xml(clock, "adjustment", "PV guests have no emulated RTC to offset")
        w.put("localtime", int(basis == "localtime"))
    elif offset in ("utc", "localtime"):
        if adjustment not in (None, "reset", "0"):
            w.warn_xml(clock, "adjustment", "only offset='variable' carries an adjustment")
        w.put("localtime", int(offset == "localtime"))
    else:
        w.warn_xml(clock, "offset", f"clock offset {offset!r} has no xm equivalent")
    xmbase.write_timers(w, clock)


def _write_lifecycle(w: Writer, root: etree._Element) -> None:
    for key, _default, _allowed in xmbase.LIFECYCLE:
        value = w.text(root, key)
        if value is not None:
            w.put(key, value)


def _write_devices(w: Writer, devices: etree._Element, dialect: Dialect) -> None:
    emulator = w.text(devices, "emulator")
    if emulator is not None:
        w.put("device_model", emulator)
    disks: list[Value] = []
    for disk in w.children(devices, "disk"):
        spec = dialect.write_disk(w, disk)
        if spec is not None:
            disks.append(spec)
    if disks:
        w.put("disk", tuple(disks))
    xmvif.write_vifs(w, devices)
    xmdev.write_graphics(w, devices)
    xmchardev.write_chardevs(w, devices)
    xmdev.write_inputs(w, devices)
    xmdev.write_sound(w, devices)
    xmdev.write_pci(w, devices)


def _write_xm_extras(w: Writer, root: etree._Element) -> None:
    """xm has nothing beyond the shared keys."""


XM = Dialect(
    flavor=Flavor.XM,
    read_os=_read_xm_os,
    read_disk=xmdisk.read_xm_disk,
    read_extras=_read_xm_extras,
    write_os=_write_xm_os,
    write_vcpus=_write_xm_vcpus,
    write_disk=xmdisk.write_xm_disk,
    write_extras=_write_xm_extras,
)
