"""YAML volume model <-> libvirt `<volume>` XML, and storage runtime keys.

Called through virtctl.converters.yaml.yamlxml by the spec loader and `virtctl convert`. Same
rules as yaml_domain. Runtime keys (a volume's `pool`, `content`, `deletePolicy`; a
pool's `active`, `autostart`, `build`) are not definition: the loader reads them from the
YAML document or from the `virtctl:runtime` element of an XML file; `runtime_attrs` and
`runtime_keys` convert between the two forms (`virtctl convert` keeps them that way).

A backing store named by volume (`backingStore: {volume: base}`) cannot be a path yet:
only the live pool knows its target directory. It is written
`<backingStore><path>virtctl-volume:base</path>...`, and the planner resolves it
(`backing_volume`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from ...errors import ErrorCode, SpecError
from ..sizes import format_bytes, parse_bytes
from .xmlmap import (
    Element,
    Fragment,
    Section,
    Unmodelled,
    append_extra_xml,
    only_children,
    order_children,
    read_sections,
    single,
    spec_error,
    sub,
    text_only,
)
from .yaml_storage import attr_value, read_permissions, text_section, write_permissions

#: The text of `<backingStore><path>` for a backing volume of the same pool.
BACKING_VOLUME = "virtctl-volume:"

VOLUME_ORDER = ("name", "key", "metadata", "source", "capacity", "allocation", "physical",
                "target", "backingStore")


def _size_section(tag: str) -> Section:
    def read(elem: Element) -> Fragment:
        only_children(elem, ())
        if set(elem.attrib) - {"unit"}:
            raise Unmodelled(tag)
        count = parse_bytes(f"{(elem.text or '').strip()}{elem.get('unit') or ''}", path=tag)
        return {tag: format_bytes(count)}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        return sub(etree.Element("x"), tag, str(parse_bytes(doc[tag], path=tag)), unit="bytes")

    return Section(tag, (tag,), read, write, exact=False)


def _read_vol_target(elem: Element) -> Fragment:
    only_children(elem, ("format", "permissions"))
    if elem.attrib or not len(elem):
        raise Unmodelled("target")
    out: Fragment = {}
    fmt = attr_value(elem, "format", "type")
    if fmt is not None:
        out["format"] = fmt
    permissions = single(elem, "permissions")
    if permissions is not None:
        out["permissions"] = read_permissions(permissions)
    return out


def _write_vol_target(doc: Mapping[str, Any], path: str) -> Element:
    elem = etree.Element("target")
    if "format" in doc:
        sub(elem, "format", type=str(doc["format"]))
    if "permissions" in doc:
        write_permissions(elem, doc["permissions"])
    return elem


def _read_backing(elem: Element) -> Fragment:
    only_children(elem, ("path", "format"))
    path_elem = single(elem, "path")
    if elem.attrib or path_elem is None:
        raise Unmodelled("backingStore")
    path = text_only(path_elem).strip()
    out: Fragment = ({"volume": path[len(BACKING_VOLUME):]} if path.startswith(BACKING_VOLUME)
                     else {"path": path})
    fmt = attr_value(elem, "format", "type")
    if fmt is not None:
        out["format"] = fmt
    return {"backingStore": out}


def _write_backing(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["backingStore"]
    elem = etree.Element("backingStore")
    if "volume" in data:
        if data["volume"] == doc.get("name"):
            raise spec_error("a volume cannot be its own backing store",
                             "backingStore.volume")
        sub(elem, "path", BACKING_VOLUME + str(data["volume"]))
    else:
        sub(elem, "path", str(data["path"]))
    if "format" in data:
        sub(elem, "format", type=str(data["format"]))
    return elem


VOLUME_SECTIONS = (
    text_section("name"),
    _size_section("capacity"),
    _size_section("allocation"),
    Section("target", ("format", "permissions"), _read_vol_target, _write_vol_target),
    Section("backingStore", ("backingStore",), _read_backing, _write_backing),
)
VOLUME_KEYS = ("kind", "name", "pool", "type", "capacity", "allocation", "format",
               "permissions", "backingStore", "extraXML", "content", "deletePolicy",
               "connect")


def volume_to_xml(doc: Mapping[str, Any]) -> Element:
    """A schema-valid YAML volume mapping -> `<volume>`; runtime keys are ignored."""
    root = etree.Element("volume")
    if "type" in doc:
        root.set("type", str(doc["type"]))
    for section in VOLUME_SECTIONS:
        if any(key in doc for key in section.keys):
            root.append(section.write(doc, ""))
    if "capacity" in doc and "allocation" in doc and (
            parse_bytes(doc["allocation"], path="allocation")
            > parse_bytes(doc["capacity"], path="capacity")):
        raise spec_error("allocation exceeds capacity", "allocation")
    append_extra_xml(root, doc, VOLUME_SECTIONS)
    order_children(root, VOLUME_ORDER)
    return root


def volume_from_xml(root: Element) -> dict[str, Any]:
    """`<volume>` -> YAML mapping (without `pool`, which is not in libvirt's XML: see
    `runtime_keys`); only virtctl's own metadata is left out."""
    if root.tag != "volume":
        raise SpecError(f"expected <volume>, found <{root.tag}>", code=ErrorCode.PARSE_ERROR)
    if set(root.attrib) - {"type"}:
        raise SpecError(f"unsupported <volume> attributes: {sorted(set(root.attrib))}",
                        code=ErrorCode.CONFIG_UNSUPPORTED)
    out: Fragment = {"kind": "Volume"}
    if "type" in root.attrib:
        out["type"] = root.get("type")
    read_sections(root, VOLUME_SECTIONS, out, order=VOLUME_ORDER)
    return {key: out[key] for key in VOLUME_KEYS if key in out}


def backing_volume(root: Element) -> str | None:
    """The volume name a `<volume>`'s backing store names (`virtctl-volume:NAME`), if it
    names one rather than a path."""
    path = (root.findtext("backingStore/path") or "").strip()
    return path[len(BACKING_VOLUME):] if path.startswith(BACKING_VOLUME) else None


# runtime keys <-> the virtctl:runtime element ----------------------------------------------

#: (YAML key, runtime attribute, boolean?) per kind; a volume's content is flattened.
_RUNTIME = {
    "pool": (("active", "active", True), ("autostart", "autostart", True),
             ("build", "build", True), ("updatePolicy", "update-policy", False),
             ("connect", "connect", False)),
    "volume": (("pool", "pool", False), ("deletePolicy", "delete-policy", False),
               ("connect", "connect", False)),
}
_CONTENT = (("file", "content-file"), ("url", "content-url"), ("checksum", "checksum"))


def runtime_attrs(tag: str, doc: Mapping[str, Any]) -> dict[str, str]:
    """The runtime element's attributes for a YAML pool or volume's runtime keys."""
    out = {}
    for key, name, flag in _RUNTIME[tag]:
        if key in doc:
            out[name] = ("yes" if doc[key] else "no") if flag else str(doc[key])
    for key, name in _CONTENT:
        if key in doc.get("content", {}):
            out[name] = str(doc["content"][key])
    return out


def runtime_keys(tag: str, attrs: Mapping[str, str]) -> dict[str, Any]:
    """The YAML runtime keys for a runtime element's attributes (`runtime_attrs` undone)."""
    out: dict[str, Any] = {}
    for key, name, flag in _RUNTIME[tag]:
        if name in attrs:
            out[key] = attrs[name].lower() in ("yes", "true", "on", "1") if flag else attrs[name]
    content = {key: attrs[name] for key, name in _CONTENT if name in attrs}
    if content:
        out["content"] = content
    return out
