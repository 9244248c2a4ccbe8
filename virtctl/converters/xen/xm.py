"""Xen xm config files <-> libvirt domain XML, following libvirt's own Xen converter.

Called by `virtctl.converters.convert` (the `convert` command) and the spec loader
(`.cfg` files as specs). `xm_to_xml` and `xml_to_xm` are pure: text in, `Conversion`
out, no I/O, no clock, no randomness (a missing uuid stays missing; libvirt fills it).

The same engine serves xl files: a `Dialect` names what differs (how the OS keys,
disks and the paravirtual NIC keyword read and write, and which extra keys exist);
`virtctl.converters.xen.xl` defines the xl dialect. This module holds the two entry points
(with their xl wrappers `xl_to_xml`, `xml_to_xl`) and xm's dialect; the shared keys are
read in `xmread` and written in `xmwrite`, devices in `xmdisk`, `xmvif`, `xmchardev` and
`xmdev` (the rest). Key-by-key mapping and the decisions taken are in
docs/xen-conversion.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ErrorCode, ErrorDomain, SpecError
from ...xmlutil import tostring
from . import xmbase, xmdisk
from .xl import XL
from .xmbase import Dialect, Flavor, Writer
from .xmparse import ConfigReader, format_config, looks_like_xen_config, parse_config
from .xmread import read_guest, read_xm_extras, read_xm_os
from .xmwrite import (
    parse_domain,
    write_guest,
    write_kind,
    write_xm_extras,
    write_xm_os,
    write_xm_vcpus,
)

__all__ = ["Conversion", "Dialect", "looks_like_xen_config", "xl_to_xml", "xm_to_xml", "xml_to_xl",
           "xml_to_xm"]


@dataclass(frozen=True, slots=True)
class Conversion:
    """The converted text and what could not be carried over."""

    text: str
    warnings: tuple[str, ...] = ()


def _dialect(flavor: str) -> Dialect:
    if flavor == Flavor.XM:
        return XM
    if flavor == Flavor.XL:
        return XL
    raise SpecError(f"unknown Xen config flavor {flavor!r} (expected xm or xl)",
                    code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER)


# -- xm file -> domain XML -----------------------------------------------------------------

def xm_to_xml(text: str, *, source: str = "<xm>", flavor: str = "xm",
              arch: str = "x86_64") -> Conversion:
    """Convert an xm (or, with flavor="xl", xl) config file to libvirt domain XML."""
    dialect = _dialect(flavor)
    reader = ConfigReader(parse_config(text, source=source))
    guest = read_guest(reader, dialect, arch)
    xmbase.sort_children(guest.dom)
    warnings = [*reader.warnings, *reader.unused_warnings()]
    return Conversion(tostring(guest.dom), tuple(warnings))


# -- domain XML -> xm file -----------------------------------------------------------------

def xml_to_xm(xml: str, *, flavor: str = "xm", source: str = "<xml>") -> Conversion:
    """Convert libvirt domain XML to an xm (or, with flavor="xl", xl) config file."""
    dialect = _dialect(flavor)
    root = parse_domain(xml, source)
    writer = Writer(kind=write_kind(root, source), flavor=dialect.flavor.value)
    write_guest(writer, root, dialect)
    writer.warn_unhandled(root)
    return Conversion(format_config(writer.pairs), tuple(writer.warnings))


def xl_to_xml(text: str, *, source: str = "<xl>", arch: str = "x86_64") -> Conversion:
    return xm_to_xml(text, source=source, flavor="xl", arch=arch)


def xml_to_xl(xml: str, *, source: str = "<xml>") -> Conversion:
    return xml_to_xm(xml, flavor="xl", source=source)


XM = Dialect(
    flavor=Flavor.XM,
    read_os=read_xm_os,
    read_disk=xmdisk.read_xm_disk,
    read_extras=read_xm_extras,
    write_os=write_xm_os,
    write_vcpus=write_xm_vcpus,
    write_disk=xmdisk.write_xm_disk,
    write_extras=write_xm_extras,
)
