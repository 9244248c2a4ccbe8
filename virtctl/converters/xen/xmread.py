"""Xen xm/xl config -> libvirt domain XML: the keys both dialects share, and xm's own.

Called by `virtctl.converters.xen.xm` (`xm_to_xml`), whose `Dialect` supplies what differs;
xl's own readers (`virtctl.converters.xen.xl`) use the shared ones here. Pure.
"""

from __future__ import annotations

from lxml import etree

from . import xmbase, xmchardev, xmdev, xmdisk, xmvif
from .xmbase import Dialect, Flavor, Guest, Kind, sub
from .xmparse import ConfigReader


def read_guest(r: ConfigReader, dialect: Dialect, arch: str) -> Guest:
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


def read_xm_os(r: ConfigReader, guest: Guest) -> None:
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
    _read_emulator(r, guest)
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


def _read_emulator(r: ConfigReader, guest: Guest) -> None:
    """`device_model_override` (what libvirt writes, xm and xl alike); the old
    `device_model` key is still read when the override is absent."""
    emulator = r.text("device_model_override")
    old = r.text("device_model")
    if emulator is None:
        emulator = old
    elif old is not None and old != emulator:
        r.warn("device_model", "ignored because device_model_override= is set")
    if emulator is not None:
        sub(guest.devices, "emulator", emulator)


def read_xm_extras(r: ConfigReader, guest: Guest) -> None:
    """xm has nothing beyond the shared keys."""
