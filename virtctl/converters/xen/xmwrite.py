"""libvirt domain XML -> Xen xm/xl config: the keys both dialects share, and xm's own.

Called by `virtctl.converters.xen.xm` (`xml_to_xm`), whose `Dialect` supplies what differs;
xl's own writers (`virtctl.converters.xen.xl`) use the shared ones here. Pure.
"""

from __future__ import annotations

from lxml import etree

from ...errors import ErrorCode, ErrorDomain, Source, SpecError
from ...xmlutil import parse
from . import xmbase, xmchardev, xmdev, xmvif
from .xmbase import Dialect, Flavor, Kind, Writer
from .xmparse import Value


def parse_domain(xml: str, source: str) -> etree._Element:
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


def write_kind(root: etree._Element, source: str) -> Kind:
    os_type = root.findtext("os/type")
    kinds = {"hvm": Kind.HVM, "xen": Kind.PV, "linux": Kind.PV, "xenpvh": Kind.PVH}
    if os_type is None or os_type.strip() not in kinds:
        raise SpecError(f"<os><type> {os_type!r} has no Xen equivalent "
                        "(expected hvm, xen, linux or xenpvh)",
                        code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER,
                        source=Source(source, None, path="os/type"))
    return kinds[os_type.strip()]


def write_guest(w: Writer, root: etree._Element, dialect: Dialect) -> None:
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


def write_xm_vcpus(w: Writer, maximum: int, current: int) -> None:
    """`maxvcpus` = maximum (when above current), `vcpus` = current: what libvirt 11.3
    writes for xm and xl alike (`vcpu_avail` is still read, never written)."""
    if current < maximum:
        w.put("maxvcpus", maximum)
    w.put("vcpus", current)


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


def write_xm_os(w: Writer, root: etree._Element) -> None:
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
        # xl ignores the old `device_model`; libvirt writes the override for xm too.
        w.put("device_model_override", emulator)
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


def write_xm_extras(w: Writer, root: etree._Element) -> None:
    """xm has nothing beyond the shared keys."""
