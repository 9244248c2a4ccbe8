"""YAML storage pool model <-> libvirt `<pool>` XML, and what volumes share with it.

Called through virtctl.converters.yaml.yamlxml by the spec loader and `virtctl convert`. Same
rules as yaml_domain: a key is present exactly when its XML is, and what the model does
not cover stays verbatim in `extraXML`. A pool's runtime keys (`active`, `autostart`,
`build`) are not definition (see yaml_volume for the runtime element). Volumes are in
yaml_volume. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

from lxml import etree

from ...errors import ErrorCode, SpecError
from .xmlmap import (
    Element,
    Fragment,
    Section,
    Type,
    Unmodelled,
    append_extra_xml,
    attr,
    leaf_attr,
    only_children,
    order_children,
    parse_extra,
    read_attrs,
    read_sections,
    single,
    spec_error,
    sub,
    text_only,
    write_attrs,
)

POOL_ORDER = ("name", "uuid", "capacity", "allocation", "available", "metadata", "features",
              "source", "target")
#: Read-only sizes libvirt reports for a pool; never part of a definition.
POOL_SIZES = ("capacity", "allocation", "available")


def text_section(tag: str) -> Section:
    def read(elem: Element) -> Fragment:
        return {tag: text_only(elem)}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        return sub(etree.Element("x"), tag, str(doc[tag]))

    return Section(tag, (tag,), read, write)


def attr_value(elem: Element, tag: str, name: str, type_: Type = Type.STR) -> Any:
    """The one attribute `name` of childless child `tag` (None when there is no child)."""
    found = single(elem, tag)
    if found is None:
        return None
    only_children(found, ())
    values = read_attrs(found, (attr(name, type_, key="v"),))
    if "v" not in values:
        raise Unmodelled(tag)
    return values["v"]


# permissions (pool and volume targets) -----------------------------------------------

_PERMISSIONS = {"mode": Type.STR, "owner": Type.INT, "group": Type.INT, "label": Type.STR}


def read_permissions(elem: Element) -> Fragment:
    only_children(elem, tuple(_PERMISSIONS))
    if elem.attrib:
        raise Unmodelled("permissions")
    out: Fragment = {}
    for tag, type_ in _PERMISSIONS.items():
        found = single(elem, tag)
        if found is not None:
            text = text_only(found).strip()
            if type_ is Type.INT and not re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
                raise Unmodelled(tag)
            out[tag] = int(text) if type_ is Type.INT else text
    return out


def write_permissions(parent: Element, data: Mapping[str, Any]) -> None:
    elem = sub(parent, "permissions")
    for tag in _PERMISSIONS:
        if tag in data:
            sub(elem, tag, str(data[tag]))


# pools -----------------------------------------------------------------------------------

_HOST = (attr("name"), attr("port", Type.INT))
_AUTH = (attr("type"), attr("username"))
_SECRET = (attr("usage"), attr("uuid"))


def _read_pool_source(elem: Element) -> Fragment:
    only_children(elem, ("host", "device", "dir", "name", "format", "protocol", "initiator",
                         "auth"))
    if elem.attrib:
        raise Unmodelled("source")
    out: Fragment = {}
    host = single(elem, "host")
    if host is not None:
        only_children(host, ())
        out["host"] = read_attrs(host, _HOST)
    devices = elem.findall("device")
    if devices:
        out["device"] = [leaf_attr(d, "path") for d in devices]
    for tag, key, name, type_ in (("dir", "dir", "path", Type.STR),
                                  ("format", "format", "type", Type.STR),
                                  ("protocol", "protocolVersion", "ver", Type.SCALAR)):
        value = attr_value(elem, tag, name, type_)
        if value is not None:
            out[key] = value
    name_elem = single(elem, "name")
    if name_elem is not None:
        out["name"] = text_only(name_elem)
    initiator = single(elem, "initiator")
    if initiator is not None:
        only_children(initiator, ("iqn",))
        if initiator.attrib or (iqn := attr_value(initiator, "iqn", "name")) is None:
            raise Unmodelled("initiator")
        out["initiator"] = iqn
    auth = single(elem, "auth")
    if auth is not None:
        only_children(auth, ("secret",))
        found = read_attrs(auth, _AUTH)
        secret = single(auth, "secret")
        if secret is not None:
            only_children(secret, ())
            found["secret"] = read_attrs(secret, _SECRET)
        out["auth"] = found
    return {"source": out}



def _write_pool_source(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["source"]
    elem = etree.Element("source")
    if "host" in data:
        write_attrs(sub(elem, "host"), data["host"], _HOST)
    for device in data.get("device", ()):
        sub(elem, "device", path=str(device))
    if "dir" in data:
        sub(elem, "dir", path=str(data["dir"]))
    if "name" in data:
        sub(elem, "name", str(data["name"]))
    if "initiator" in data:
        sub(sub(elem, "initiator"), "iqn", name=str(data["initiator"]))
    if "format" in data:
        sub(elem, "format", type=str(data["format"]))
    if "auth" in data:
        auth = write_attrs(sub(elem, "auth"), data["auth"], _AUTH)
        if "secret" in data["auth"]:
            write_attrs(sub(auth, "secret"), data["auth"]["secret"], _SECRET)
    if "protocolVersion" in data:
        sub(elem, "protocol", ver=str(data["protocolVersion"]))
    return elem


def _read_target(elem: Element) -> Fragment:
    only_children(elem, ("path", "permissions"))
    if elem.attrib:
        raise Unmodelled("target")
    out: Fragment = {}
    path = single(elem, "path")
    if path is not None:
        out["path"] = text_only(path)
    permissions = single(elem, "permissions")
    if permissions is not None:
        out["permissions"] = read_permissions(permissions)
    return {"target": out}


def _write_target(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["target"]
    elem = etree.Element("target")
    if "path" in data:
        sub(elem, "path", str(data["path"]))
    if "permissions" in data:
        write_permissions(elem, data["permissions"])
    return elem


POOL_SECTIONS = (
    text_section("name"),
    text_section("uuid"),
    Section("source", ("source",), _read_pool_source, _write_pool_source),
    Section("target", ("target",), _read_target, _write_target),
)
POOL_KEYS = ("kind", "name", "type", "uuid", "source", "target", "extraXML",
             "active", "autostart", "build", "updatePolicy", "connect")

#: What each pool type needs declared, as YAML paths (libvirt refuses the pool without).
_POOL_NEEDS = {
    "dir": ("target.path",),
    "fs": ("source.device", "target.path"),
    "netfs": ("source.host", "source.dir", "target.path"),
    "iscsi": ("source.host", "source.device"),
    "disk": ("source.device",),
}


def pool_to_xml(doc: Mapping[str, Any]) -> Element:
    """A schema-valid YAML storage pool mapping -> `<pool>`; runtime keys are ignored."""
    for needed in _POOL_NEEDS.get(str(doc.get("type")), ()):
        head, key = needed.split(".")
        if key not in doc.get(head, {}):
            raise spec_error(f"a {doc['type']} pool needs {needed}", needed)
    if doc.get("type") == "logical" and not {"name", "device"} & set(doc.get("source", {})):
        raise spec_error("a logical pool needs source.name (the volume group) or "
                         "source.device", "source.name")
    for i, text in enumerate(doc.get("extraXML", ())):
        where = f"extraXML[{i}]"
        if parse_extra(text, path=where).tag in POOL_SIZES:
            raise spec_error("a pool's sizes are read-only: libvirt reports them", where)
    root = etree.Element("pool", type=str(doc["type"]))
    for section in POOL_SECTIONS:
        if section.tag in doc:
            root.append(section.write(doc, ""))
    append_extra_xml(root, doc, POOL_SECTIONS)
    order_children(root, POOL_ORDER)
    return root


def pool_from_xml(root: Element) -> dict[str, Any]:
    """`<pool>` -> YAML mapping; libvirt's read-only sizes and virtctl's own metadata are
    left out, nothing else."""
    if root.tag != "pool":
        raise SpecError(f"expected <pool>, found <{root.tag}>", code=ErrorCode.PARSE_ERROR)
    if set(root.attrib) != {"type"}:
        raise SpecError(f"<pool> needs exactly a type attribute, not {sorted(root.attrib)}",
                        code=ErrorCode.CONFIG_UNSUPPORTED)
    out: Fragment = {"kind": "StoragePool", "type": root.get("type")}
    rest = etree.Element("pool")
    for child in root:
        if child.tag not in POOL_SIZES:
            rest.append(deepcopy(child))
    read_sections(rest, POOL_SECTIONS, out, order=POOL_ORDER)
    return {key: out[key] for key in POOL_KEYS if key in out}
