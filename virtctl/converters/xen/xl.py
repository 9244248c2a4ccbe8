"""The xl dialect: what today's Xen toolstack adds to the xm format, both directions.

Called through `virtctl.converters.xen.xm.xm_to_xml(..., flavor="xl")` / `xml_to_xm(...,
flavor="xl")`, or xm's `xl_to_xml` / `xml_to_xl` wrappers. xl is a superset of xm,
so everything shared lives in `xm` (with `xmread`, `xmwrite`), `xmbase` and the device
modules (`xmdisk`, `xmvif`, `xmchardev`, `xmdev`). xl's differences: here the
`type=`/`cmdline=`/`bios=` boot keys, HVM direct kernel boot and `maxvcpus`, and the
dialect itself; the xl disk syntax in `xldisk`; the keys only xl knows (channel,
usbctrl, usbdev, vnuma, spice, the xenbus limits, `device_model_args`) in `xlextras`.
Pure: no I/O.
"""

from __future__ import annotations

from lxml import etree

from . import xldisk, xlextras, xmread, xmwrite
from .xmbase import HVMLOADER, Dialect, Flavor, Guest, Kind, Writer, sub
from .xmparse import ConfigReader

OVMF = "/usr/lib/xen/boot/ovmf.bin"


# -- boot ------------------------------------------------------------------------------------

def _read_os(r: ConfigReader, guest: Guest) -> None:
    if guest.kind is not Kind.HVM:
        xmread.read_common_os(r, guest, cmdline_key="cmdline")
        return
    bios = r.text("bios")
    path = r.text("bios_path_override")
    if bios == "ovmf":
        sub(guest.os, "loader", path or OVMF, readonly="yes", type="pflash")
    else:
        if bios not in (None, "seabios", "rombios"):
            r.warn("bios", f"unknown firmware {bios!r}; using hvmloader")
        if path is not None:
            r.warn("bios_path_override", 'only bios = "ovmf" maps to a loader path; ignored')
        sub(guest.os, "loader", HVMLOADER, type="rom")
    # xl HVM guests may boot a kernel directly; kernel= is not the loader as in xm.
    for key, tag in (("kernel", "kernel"), ("ramdisk", "initrd")):
        value = r.text(key)
        if value is not None:
            sub(guest.os, tag, value)
    cmdline = xmread.read_cmdline(r, "cmdline")
    if cmdline is not None:
        sub(guest.os, "cmdline", cmdline)
    # Xen loads acpi_firmware as a raw set of tables: libvirt's type='rawset'.
    acpi = r.text("acpi_firmware")
    if acpi is not None:
        sub(sub(guest.os, "acpi"), "table", acpi, type="rawset")
    xmread.read_boot_order(r, guest.os)


def _write_os(w: Writer, root: etree._Element) -> None:
    os_el = root.find("os")
    if os_el is None:
        return
    if w.kind is not Kind.HVM:
        xmwrite.write_pv_os(w, root, os_el, cmdline_key="cmdline")
        return
    loader = w.child(os_el, "loader")
    if loader is not None:
        w.mark(loader, "type", "readonly")
        path = (loader.text or "").strip()
        if loader.get("type") == "pflash":
            w.put("bios", "ovmf")
            if path and path != OVMF:
                w.put("bios_path_override", path)
        elif path != HVMLOADER:
            w.warn_xml(loader, None, "xl always uses its own hvmloader")
    xmwrite.write_pv_os(w, root, os_el, cmdline_key="cmdline")
    acpi = w.child(os_el, "acpi")
    if acpi is not None:
        for table in w.children(acpi, "table"):
            if w.attr(table, "type") not in ("rawset", "slic"):
                w.warn_xml(table, "type", "only rawset (or slic) tables map to acpi_firmware")
                continue
            w.put("acpi_firmware", (table.text or "").strip())
    xmwrite.write_boot_order(w, os_el)


XL = Dialect(
    flavor=Flavor.XL,
    read_os=_read_os,
    read_disk=xldisk.read_disk,
    read_extras=xlextras.read_extras,
    write_os=_write_os,
    write_vcpus=xmwrite.write_xm_vcpus,
    write_disk=xldisk.write_disk,
    write_extras=xlextras.write_extras,
)


# Keys only the xl toolstack knows. Their presence decides how a file is read, which
# matters: `kernel=` on an HVM guest is the firmware loader in xm but a kernel in xl.
# (`device_model_override` is not one: libvirt writes it for xm files too.)
XL_ONLY_KEYS = frozenset({
    "type", "cmdline", "bios", "bios_path_override", "channel", "usbctrl", "usbdev", "vnuma",
    "max_event_channels", "max_grant_frames", "e820_host",
})


def guess_flavor(text: str, *, source: str = "<xen>") -> str:
    """'xl' when the file uses any xl-only key or an xl disk string (four positional
    fields, `target,format,vdev,access`, or `key=value` ones: xm's have three), else
    'xm'. Read as xm, `/img,raw,hda,w` would be a disk on target 'raw'."""
    from .xmparse import parse_config

    config = parse_config(text, source=source)
    if set(config.keys()) & XL_ONLY_KEYS:
        return "xl"
    disks = config.get("disk")
    value = disks.value if disks is not None else ()
    items = value if isinstance(value, tuple) else (value,)
    return "xl" if any(isinstance(d, str) and ("=" in d or d.count(",") >= 3)
                       for d in items) else "xm"
