"""YAML domain model <-> libvirt `<domain>` XML.

Called through virtctl.converters.yaml.yamlxml by the spec loader (YAML specs), by
`virtctl convert --to yaml` and by `virtctl export`. The YAML model renames libvirt's
structure into friendly camelCase keys and adds nothing of its own: a key is present in
YAML exactly when its XML is present, so both directions round-trip. What the model does
not cover is carried verbatim in `extraXML` (top level) and `extraDevices` (<devices>).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from ...errors import ErrorCode, SpecError
from ..sizes import format_size, parse_size, scaled_kib
from .xmlmap import (
    Element,
    Fragment,
    Section,
    Type,
    Unmodelled,
    append_extra_xml,
    attr,
    camel,
    leaf_attr,
    only_children,
    order_children,
    parse_extra,
    read_attrs,
    read_list,
    read_sections,
    single,
    spec_error,
    sub,
    text_only,
    verbatim,
    write_attrs,
)
from .yaml_devices import DEVICE_KINDS, DEVICE_ORDER, MEMBALLOON

RUNTIME_KEYS = frozenset({"kind", "apiVersion", "state", "autostart"})

#: The order in which libvirt formats a domain's top-level elements.
DOMAIN_ORDER = (
    "name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory",
    "currentMemory", "blkiotune", "memtune", "memoryBacking", "vcpu", "vcpus", "iothreads",
    "iothreadids", "defaultiothread", "cputune", "numatune", "resource", "sysinfo",
    "bootloader", "bootloader_args", "os", "idmap", "features", "cpu", "clock",
    "on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm", "perf", "devices",
    "seclabel", "keywrap", "launchSecurity",
)
#: Features that are an empty element, and features that also take state='on|off'.
FLAG_FEATURES = ("acpi", "apic", "pae", "viridian", "privnet")
STATE_FEATURES = ("hap", "pvspinlock", "vmport", "vmcoreinfo", "htm", "pmu", "nested-hv",
                  "ccf-assist", "smm")

_LIFECYCLE = {"on_poweroff": "onPoweroff", "on_reboot": "onReboot", "on_crash": "onCrash"}
_TEXT = {"name": "name", "uuid": "uuid", "title": "title", "description": "description",
         "bootloader": "bootloader", "bootloader_args": "bootloaderArgs", **_LIFECYCLE}


# simple top-level elements ---------------------------------------------------------------

def _text_section(tag: str, key: str) -> Section:
    def read(elem: Element) -> Fragment:
        return {key: text_only(elem)}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        elem = etree.Element(tag)
        elem.text = str(doc[key])
        return elem

    return Section(tag, (key,), read, write)


def _memory_section(tag: str) -> Section:
    def read(elem: Element) -> Fragment:
        only_children(elem, ())
        if set(elem.attrib) - {"unit"}:
            raise Unmodelled(tag)
        return {tag: format_size(scaled_kib(elem.text or "", elem.get("unit"), path=tag))}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        elem = etree.Element(tag, unit="KiB")
        kib = parse_size(doc[tag], path=tag)
        if tag == "memory" and kib == 0:
            raise spec_error("a guest needs some memory; 0 is refused", tag)
        elem.text = str(kib)
        return elem

    # Units are normalised to KiB, so compare meaning, not text.
    return Section(tag, (tag,), read, write, exact=False)


_VCPU = (attr("placement"), attr("cpuset"), attr("current", Type.INT))


def _read_vcpu(elem: Element) -> Fragment:
    only_children(elem, ())
    count = int((elem.text or "").strip())
    details = read_attrs(elem, _VCPU)
    return {"vcpus": {"count": count, **details} if details else count}


def _write_vcpu(doc: Mapping[str, Any], path: str) -> Element:
    value = doc["vcpus"]
    details = value if isinstance(value, Mapping) else {"count": value}
    if details.get("current", 0) > details["count"]:
        raise spec_error("vcpus.current exceeds vcpus.count", "vcpus.current")
    elem = write_attrs(etree.Element("vcpu"), details, _VCPU)
    elem.text = str(details["count"])
    return elem


# os --------------------------------------------------------------------------------------

_OS_TEXT = ("kernel", "initrd", "cmdline", "dtb", "root")
_LOADER = (attr("readonly", Type.YESNO), attr("secure", Type.YESNO), attr("type"))
_OS_TYPE = (attr("arch"), attr("machine"))
_BOOTMENU = (attr("enable", Type.YESNO), attr("timeout", Type.INT))


def _read_os(elem: Element) -> Fragment:
    only_children(elem, ("type", "loader", "boot", "bootmenu", *_OS_TEXT))
    out: Fragment = {}
    type_ = single(elem, "type")
    if type_ is not None:
        only_children(type_, ())
        out["type"] = type_.text or ""
        out.update(read_attrs(type_, _OS_TYPE))
    loader = single(elem, "loader")
    if loader is not None:
        only_children(loader, ())
        details = read_attrs(loader, _LOADER)
        out["loader"] = {"path": loader.text or "", **details} if details else loader.text or ""
    boots = elem.findall("boot")
    if boots:
        out["boot"] = [leaf_attr(boot, "dev") for boot in boots]
    bootmenu = single(elem, "bootmenu")
    if bootmenu is not None:
        only_children(bootmenu, ())
        out["bootmenu"] = read_attrs(bootmenu, _BOOTMENU)
    for tag in _OS_TEXT:
        found = single(elem, tag)
        if found is not None:
            out[tag] = text_only(found)
    return {"os": out}



def _write_os(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["os"]
    elem = etree.Element("os")
    if "type" in data:
        write_attrs(sub(elem, "type", data["type"]), data, _OS_TYPE)
    elif "arch" in data or "machine" in data:
        raise spec_error("os.arch and os.machine need os.type", "os.type")
    loader = data.get("loader")
    if isinstance(loader, Mapping):
        write_attrs(sub(elem, "loader", loader["path"]), loader, _LOADER)
    elif loader is not None:
        sub(elem, "loader", loader)
    for tag in _OS_TEXT:
        if tag in data:
            sub(elem, tag, data[tag])
    for dev in data.get("boot", ()):
        sub(elem, "boot", dev=dev)
    if "bootmenu" in data:
        write_attrs(sub(elem, "bootmenu"), data["bootmenu"], _BOOTMENU)
    return elem


# features and clock -------------------------------------------------------------------------

def _read_features(elem: Element) -> Fragment:
    only_children(elem, (*FLAG_FEATURES, *STATE_FEATURES))
    out: Fragment = {}
    for child in elem:
        only_children(child, ())
        allowed = (attr("state"),) if child.tag in STATE_FEATURES else ()
        state = read_attrs(child, allowed).get("state")
        if state not in (None, "on", "off"):
            raise Unmodelled(str(child.tag))
        out[camel(str(child.tag))] = True if state is None else state
    return {"features": out}


def _write_features(doc: Mapping[str, Any], path: str) -> Element:
    elem = etree.Element("features")
    names = {camel(n): n for n in (*FLAG_FEATURES, *STATE_FEATURES)}
    for key, value in doc["features"].items():
        child = sub(elem, names[key])
        if value is False or value == "off":
            child.set("state", "off")
        elif value == "on":
            child.set("state", "on")
    return elem


_CLOCK = (attr("offset"), attr("adjustment", Type.SCALAR), attr("basis"), attr("timezone"))
_TIMER = (attr("name"), attr("present", Type.YESNO), attr("tickpolicy", key="tickPolicy"),
          attr("track"), attr("frequency", Type.INT), attr("mode"))


def _read_clock(elem: Element) -> Fragment:
    only_children(elem, ("timer",))
    out = read_attrs(elem, _CLOCK)
    timers = []
    for timer in elem.findall("timer"):
        only_children(timer, ())
        timers.append(read_attrs(timer, _TIMER))
    if timers:
        out["timers"] = timers
    return {"clock": out}


def _write_clock(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["clock"]
    elem = write_attrs(etree.Element("clock"), data, _CLOCK)
    for timer in data.get("timers", ()):
        write_attrs(sub(elem, "timer"), timer, _TIMER)
    return elem


# devices ---------------------------------------------------------------------------------

_DEVICE_KEYS = (*(k.key for k in DEVICE_KINDS), "emulator", MEMBALLOON.key, "extraDevices")


def _read_devices(elem: Element) -> Fragment:
    out: Fragment = {}
    extras: list[Element] = []
    emulators = elem.findall("emulator")
    if len(emulators) == 1 and not emulators[0].attrib and not len(emulators[0]):
        out["emulator"] = emulators[0].text or ""
    else:
        extras.extend(emulators)
    for kind in (*DEVICE_KINDS, MEMBALLOON):
        found = elem.findall(kind.tag)
        if kind is MEMBALLOON and len(found) != 1:
            extras.extend(found)
            continue
        items, rest = read_list(found, kind.read, kind.write)
        if items:
            out[kind.key] = items[0] if kind is MEMBALLOON else items
        extras.extend(rest)
    known = {k.tag for k in (*DEVICE_KINDS, MEMBALLOON)} | {"emulator"}
    extras.extend(c for c in elem if not isinstance(c.tag, str) or c.tag not in known)
    # Writing sorts devices into libvirt's order; list the extras that way too.
    rank = {tag: i for i, tag in enumerate(DEVICE_ORDER)}
    position = {id(c): (rank.get(str(c.tag), len(rank)), i) for i, c in enumerate(elem)}
    if extras:
        out["extraDevices"] = [verbatim(c) for c in sorted(extras, key=lambda c: position[id(c)])]
    return out


def _write_devices(doc: Mapping[str, Any], path: str) -> Element:
    elem = etree.Element("devices")
    if "emulator" in doc:
        sub(elem, "emulator", doc["emulator"])
    for kind in DEVICE_KINDS:
        for i, item in enumerate(doc.get(kind.key, ())):
            elem.append(kind.write(item, f"{path}{kind.key}[{i}]"))
    if MEMBALLOON.key in doc:
        elem.append(MEMBALLOON.write(doc[MEMBALLOON.key], f"{path}{MEMBALLOON.key}"))
    for i, text in enumerate(doc.get("extraDevices", ())):
        where = f"{path}extraDevices[{i}]"
        extra = parse_extra(text, path=where)
        if extra.tag in ("emulator", "memballoon") and extra.tag in doc:
            raise spec_error(f"<{extra.tag}> is also given as key {extra.tag!r}", where)
        elem.append(extra)
    order_children(elem, DEVICE_ORDER)
    _check_unique(doc, "disks", "target", path)
    _check_unique(doc, "interfaces", "mac", path)
    return elem


def _check_unique(doc: Mapping[str, Any], key: str, field: str, path: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(doc.get(key, ())):
        value = str(item.get(field, "")).lower()
        if value and value in seen:
            raise spec_error(f"duplicate {field} {item[field]!r}", f"{path}{key}[{i}].{field}")
        seen.add(value)


# the section table and the two directions ------------------------------------------------

SECTIONS = (
    *(_text_section(tag, key) for tag, key in _TEXT.items()),
    _memory_section("memory"),
    _memory_section("currentMemory"),
    Section("vcpu", ("vcpus",), _read_vcpu, _write_vcpu),
    Section("os", ("os",), _read_os, _write_os),
    Section("features", ("features",), _read_features, _write_features),
    Section("clock", ("clock",), _read_clock, _write_clock),
    Section("devices", _DEVICE_KEYS, _read_devices, _write_devices),
)

KEY_ORDER = (
    "kind", "name", "type", "uuid", "title", "description", "memory", "currentMemory",
    "vcpus", "bootloader", "bootloaderArgs", "os", "features", "clock", "onPoweroff",
    "onReboot", "onCrash", "emulator", *(k.key for k in DEVICE_KINDS), MEMBALLOON.key,
    "extraDevices", "extraXML",
)


def domain_to_xml(doc: Mapping[str, Any]) -> Element:
    """A schema-valid YAML domain mapping -> `<domain>`; runtime keys are ignored."""
    root = etree.Element("domain")
    if "type" in doc:
        root.set("type", doc["type"])
    for section in SECTIONS:
        if any(key in doc for key in section.keys):
            root.append(section.write(doc, ""))
    _check_memory(doc)
    append_extra_xml(root, doc, SECTIONS)
    order_children(root, DOMAIN_ORDER)
    return root


def _check_memory(doc: Mapping[str, Any]) -> None:
    if "memory" in doc and "currentMemory" in doc:
        current = parse_size(doc["currentMemory"], path="currentMemory")
        if current > parse_size(doc["memory"], path="memory"):
            raise spec_error("currentMemory exceeds memory", "currentMemory")


def domain_from_xml(root: Element) -> dict[str, Any]:
    """`<domain>` -> YAML mapping, starting with kind and name; nothing is dropped
    except virtctl's own metadata and the runtime domain id."""
    if root.tag != "domain":
        raise SpecError(f"expected <domain>, found <{root.tag}>", code=ErrorCode.PARSE_ERROR)
    extra_attrs = set(root.attrib) - {"type", "id"}
    if extra_attrs:
        raise SpecError(f"unsupported <domain> attributes: {sorted(extra_attrs)}",
                        code=ErrorCode.CONFIG_UNSUPPORTED)
    out: Fragment = {"kind": "Domain"}
    if "type" in root.attrib:
        out["type"] = root.get("type")
    read_sections(root, SECTIONS, out, order=DOMAIN_ORDER)
    return {key: out[key] for key in KEY_ORDER if key in out}


