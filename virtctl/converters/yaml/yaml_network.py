"""YAML network model <-> libvirt `<network>` XML.

Called through virtctl.converters.yaml.yamlxml by the spec loader, `virtctl convert` and
`virtctl export`. Same rules as yaml_domain: a key is present exactly when its XML is,
and what the model does not cover stays verbatim in `extraXML`. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

from lxml import etree

from ...errors import ErrorCode, SpecError
from .xmlmap import (
    Attr,
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
    read_attrs,
    read_list,
    read_sections,
    single,
    spec_error,
    sub,
    text_only,
    write_attrs,
)

RUNTIME_KEYS = frozenset({"kind", "apiVersion", "active", "autostart"})

#: The order in which libvirt formats a network's top-level elements.
NETWORK_ORDER = (
    "name", "uuid", "title", "description", "metadata", "forward", "bridge", "mtu", "mac",
    "domain", "dns", "virtualport", "vlan", "bandwidth", "port", "portgroup", "ip", "route",
)
_ROOT = (attr("ipv6", Type.YESNO), attr("trustGuestRxFilters", Type.YESNO))


def _attrs_section(tag: str, table: tuple[Attr, ...]) -> Section:
    """An element that is only attributes, as a mapping under key `tag`."""

    def read(elem: Element) -> Fragment:
        only_children(elem, ())
        return {tag: read_attrs(elem, table)}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        return write_attrs(etree.Element(tag), doc[tag], table)

    return Section(tag, (tag,), read, write)


def _one_attr_section(tag: str, name: str, type_: Type = Type.STR) -> Section:
    """An element with one attribute, as a scalar under key `tag` (<mtu size=>)."""

    def read(elem: Element) -> Fragment:
        only_children(elem, ())
        values = read_attrs(elem, (attr(name, type_, key="v"),))
        if "v" not in values:
            raise Unmodelled(tag)
        return {tag: values["v"]}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        return write_attrs(etree.Element(tag), {"v": doc[tag]}, (attr(name, type_, key="v"),))

    return Section(tag, (tag,), read, write)


def _text_section(tag: str) -> Section:
    def read(elem: Element) -> Fragment:
        return {tag: text_only(elem)}

    def write(doc: Mapping[str, Any], path: str) -> Element:
        return sub(etree.Element("x"), tag, str(doc[tag]))

    return Section(tag, (tag,), read, write)


# forward ---------------------------------------------------------------------------------

_FORWARD = (attr("mode"), attr("dev"))
_RANGE = (attr("start"), attr("end"))
_PORTS = (attr("start", Type.INT), attr("end", Type.INT))


def _read_forward(elem: Element) -> Fragment:
    only_children(elem, ("nat", "interface"))
    out = read_attrs(elem, _FORWARD)
    nat = single(elem, "nat")
    if nat is not None:
        only_children(nat, ("address", "port"))
        found = read_attrs(nat, (attr("ipv6", Type.YESNO),))
        for tag, table in (("address", _RANGE), ("port", _PORTS)):
            child = single(nat, tag)
            if child is not None:
                only_children(child, ())
                found[tag] = read_attrs(child, table)
        out["nat"] = found
    interfaces = [leaf_attr(i, "dev") for i in elem.findall("interface")]
    if interfaces:
        out["interfaces"] = interfaces
    return {"forward": out}



def _write_forward(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["forward"]
    elem = write_attrs(etree.Element("forward"), data, _FORWARD)
    if "nat" in data:
        nat = write_attrs(sub(elem, "nat"), data["nat"], (attr("ipv6", Type.YESNO),))
        for tag, table in (("address", _RANGE), ("port", _PORTS)):
            if tag in data["nat"]:
                write_attrs(sub(nat, tag), data["nat"][tag], table)
    for dev in data.get("interfaces", ()):
        sub(elem, "interface", dev=dev)
    return elem


# dns -------------------------------------------------------------------------------------

_DNS = (attr("enable", Type.YESNO), attr("forwardPlainNames", Type.YESNO))
_DNS_LISTS = {
    "forwarder": ("forwarders", (attr("addr", key="address"), attr("domain"))),
    "txt": ("txt", (attr("name"), attr("value"))),
    "srv": ("srv", (attr("service"), attr("protocol"), attr("domain"), attr("target"),
                     attr("port", Type.INT), attr("priority", Type.INT),
                     attr("weight", Type.INT))),
}


def _read_leaves(elem: Element, tag: str, table: Sequence[Attr]) -> list[Fragment]:
    """Every `tag` child of `elem`, childless, as its attributes."""
    leaves = elem.findall(tag)
    for leaf in leaves:
        only_children(leaf, ())
    return [read_attrs(leaf, table) for leaf in leaves]


def _read_dns(elem: Element) -> Fragment:
    only_children(elem, ("forwarder", "host", "txt", "srv"))
    out = read_attrs(elem, _DNS)
    for tag, (key, table) in _DNS_LISTS.items():
        if items := _read_leaves(elem, tag, table):
            out[key] = items
    hosts = [_read_dns_host(h) for h in elem.findall("host")]
    if hosts:
        out["hosts"] = hosts
    return {"dns": out}


def _read_dns_host(elem: Element) -> Fragment:
    only_children(elem, ("hostname",))
    out = read_attrs(elem, (attr("ip"),))
    out["hostnames"] = [text_only(h) for h in elem.findall("hostname")]
    return out


def _write_dns(doc: Mapping[str, Any], path: str) -> Element:
    data = doc["dns"]
    elem = write_attrs(etree.Element("dns"), data, _DNS)
    for item in data.get("forwarders", ()):
        write_attrs(sub(elem, "forwarder"), item, _DNS_LISTS["forwarder"][1])
    for host in data.get("hosts", ()):
        found = write_attrs(sub(elem, "host"), host, (attr("ip"),))
        for name in host.get("hostnames", ()):
            sub(found, "hostname", name)
    for tag in ("txt", "srv"):
        key, table = _DNS_LISTS[tag]
        for item in data.get(key, ()):
            write_attrs(sub(elem, tag), item, table)
    return elem


# ip --------------------------------------------------------------------------------------

_IP = (attr("family"), attr("address"), attr("netmask"), attr("prefix", Type.INT),
       attr("localPtr", Type.YESNO))
_DHCP_HOST = (attr("mac"), attr("id"), attr("name"), attr("ip"))
_BOOTP = (attr("file"), attr("server"))


def _read_ip(elem: Element) -> Fragment:
    only_children(elem, ("dhcp", "tftp"))
    out = read_attrs(elem, _IP)
    tftp = single(elem, "tftp")
    if tftp is not None:
        only_children(tftp, ())
        out["tftp"] = read_attrs(tftp, (attr("root"),))["root"]
    dhcp = single(elem, "dhcp")
    if dhcp is not None:
        out["dhcp"] = _read_dhcp(dhcp)
    return out


def _read_dhcp(elem: Element) -> Fragment:
    only_children(elem, ("range", "host", "bootp"))
    out: Fragment = {}
    for tag, key, table in (("range", "ranges", _RANGE), ("host", "hosts", _DHCP_HOST)):
        if items := _read_leaves(elem, tag, table):
            out[key] = items
    bootp = single(elem, "bootp")
    if bootp is not None:
        only_children(bootp, ())
        out["bootp"] = read_attrs(bootp, _BOOTP)
    return out


def _write_ip(data: Mapping[str, Any], path: str) -> Element:
    if "netmask" in data and "prefix" in data:
        raise spec_error("give netmask or prefix, not both", f"{path}.prefix")
    elem = write_attrs(etree.Element("ip"), data, _IP)
    if "tftp" in data:
        sub(elem, "tftp", root=data["tftp"])
    dhcp = data.get("dhcp")
    if dhcp is not None:
        found = sub(elem, "dhcp")
        for key, tag, table in (("ranges", "range", _RANGE), ("hosts", "host", _DHCP_HOST)):
            for item in dhcp.get(key, ()):
                write_attrs(sub(found, tag), item, table)
        if "bootp" in dhcp:
            write_attrs(sub(found, "bootp"), dhcp["bootp"], _BOOTP)
    return elem


def _read_ips(elem: Element) -> Fragment:
    return {"ips": [_read_ip(elem)]}


def _write_ips(doc: Mapping[str, Any], path: str) -> Element:
    (item,) = doc["ips"]
    return _write_ip(item, path)


SECTIONS = (
    _text_section("name"),
    _text_section("uuid"),
    _text_section("title"),
    _text_section("description"),
    Section("forward", ("forward",), _read_forward, _write_forward),
    _attrs_section("bridge", (attr("name"), attr("stp", Type.ONOFF), attr("delay", Type.INT),
                              attr("macTableManager"), attr("zone"))),
    _one_attr_section("mtu", "size", Type.INT),
    _one_attr_section("mac", "address"),
    _attrs_section("domain", (attr("name"), attr("localOnly", Type.YESNO),
                              attr("register", Type.YESNO))),
    Section("dns", ("dns",), _read_dns, _write_dns),
)
#: <ip> repeats, so it is modelled one element at a time (see network_from_xml).
IP_SECTION = Section("ip", ("ips",), _read_ips, _write_ips)

KEY_ORDER = ("kind", "name", "uuid", "title", "description", "ipv6", "trustGuestRxFilters",
             "forward", "bridge", "mtu", "mac", "domain", "dns", "ips", "extraXML")


def network_to_xml(doc: Mapping[str, Any]) -> Element:
    """A schema-valid YAML network mapping -> `<network>`; runtime keys are ignored."""
    root = write_attrs(etree.Element("network"), doc, _ROOT)
    for section in SECTIONS:
        if section.tag in doc:
            root.append(section.write(doc, ""))
    for i, item in enumerate(doc.get("ips", ())):
        root.append(_write_ip(item, f"ips[{i}]"))
    append_extra_xml(root, doc, (*SECTIONS, IP_SECTION))
    order_children(root, NETWORK_ORDER)
    return root


def network_from_xml(root: Element) -> dict[str, Any]:
    """`<network>` -> YAML mapping, starting with kind and name; nothing is dropped
    except virtctl's own metadata and libvirt's runtime `connections` count."""
    if root.tag != "network":
        raise SpecError(f"expected <network>, found <{root.tag}>", code=ErrorCode.PARSE_ERROR)
    attrs = {k: v for k, v in root.attrib.items() if k != "connections"}
    try:
        out: Fragment = {"kind": "Network", **read_attrs(_without(root, attrs), _ROOT)}
    except Unmodelled:
        raise SpecError(f"unsupported <network> attributes: {sorted(attrs)}",
                        code=ErrorCode.CONFIG_UNSUPPORTED) from None
    ips, rest = _split_ips(root)
    read_sections(rest, SECTIONS, out, order=NETWORK_ORDER)
    if ips:
        out["ips"] = ips
    return {key: out[key] for key in KEY_ORDER if key in out}


def _without(root: Element, attrs: Mapping[Any, Any]) -> Element:
    return etree.Element("network", {str(k): str(v) for k, v in attrs.items()})


def _split_ips(root: Element) -> tuple[list[Fragment], Element]:
    """Model the <ip> run like a device list (verbatim from the first that does not
    fit); return the models and a shallow stand-in root holding every other child."""
    ips, rest_ips = read_list(root.findall("ip"), _read_ip, _write_ip)
    rest = etree.Element("network")
    for child in root:
        if child.tag != "ip" or child in rest_ips:
            rest.append(deepcopy(child))
    return ips, rest
