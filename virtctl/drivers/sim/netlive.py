"""virNetworkUpdate for the `sim` hypervisor: one entry of a network definition added,
deleted or modified, in place.

Mirrors libvirt's virNetworkDefUpdateSection (src/conf/network_conf.c): what each
section matches on, what it refuses and with which message and kind of error:

- DHCP host: matched on mac, ip or name. Add: refused when any matches; delete: every
  given field must match; modify: the first by mac, else ip, else name.
- DHCP range: start and end. Add refused on a match, delete needs one, no modify.
- DNS host: ip or a shared hostname; DNS TXT: name; DNS SRV: service, protocol and
  whatever else is given. Add refused on a match, delete needs exactly one, no modify.
- port group: name. Add refused on a match; delete and modify need one; one default.
- forward interface: dev. Add refused on a match, delete needs one, no modify.

DHCP sections work on one `<ip>`: `parent_index` >= 0 picks that one; -1 picks the one
`<ip>` with DHCP entries (more than one: refused), else the first IPv4 one, else the
first. Pure: raises simlive.LiveError.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable

from lxml import etree

from ...errors import ErrorCode
from ...model import NetworkCommand, NetworkSection
from .live import LiveError, same

_ROOT_TAG = {
    NetworkSection.DHCP_HOST: "host",
    NetworkSection.DHCP_RANGE: "range",
    NetworkSection.DNS_HOST: "host",
    NetworkSection.DNS_TXT: "txt",
    NetworkSection.DNS_SRV: "srv",
    NetworkSection.PORTGROUP: "portgroup",
    NetworkSection.FORWARD_INTERFACE: "interface",
}
_UNSUPPORTED = ErrorCode.UNSUPPORTED  # libvirt's VIR_ERR_NO_SUPPORT


def network_update(root: etree._Element, command: NetworkCommand, section: NetworkSection,
                   entry: etree._Element, parent_index: int = -1) -> None:
    """Apply one virNetworkUpdate to the network definition `root`."""
    name = root.findtext("name") or ""
    wanted = _ROOT_TAG[section]
    if entry.tag != wanted:
        raise LiveError(f"can't update '{wanted}' section of network '{name}' - unrecognized "
                        f"element <{entry.tag}>", ErrorCode.INVALID_SPEC)
    _HANDLERS[section](root, name, NetworkCommand(command), copy.deepcopy(entry), parent_index)


def _ip_of(root: etree._Element, name: str, parent_index: int) -> etree._Element:
    ips = root.findall("ip")
    if parent_index >= 0:
        if parent_index >= len(ips):
            raise LiveError(f"couldn't update dhcp host entry - no <ip> element found at "
                            f"index {parent_index} in network '{name}'")
        return ips[parent_index]
    with_dhcp = [ip for ip in ips if ip.find("dhcp/range") is not None
                 or ip.find("dhcp/host") is not None]
    if len(with_dhcp) > 1:
        raise LiveError(f"dhcp is enabled on multiple IPv4 addresses in network '{name}', "
                        "you must specify which one")
    if with_dhcp:
        return with_dhcp[0]
    ipv4 = [ip for ip in ips if ip.get("family", "ipv4") == "ipv4"]
    if ipv4 or ips:
        return (ipv4 or ips)[0]
    raise LiveError(f"couldn't update dhcp host entry - no <ip> element found in network "
                    f"'{name}'")


def _child(parent: etree._Element, tag: str) -> etree._Element:
    found = parent.find(tag)
    return found if found is not None else etree.SubElement(parent, tag)


def _append(parent: etree._Element, entry: etree._Element) -> None:
    same_tag = parent.findall(str(entry.tag))
    if same_tag:
        same_tag[-1].addnext(entry)
    else:
        parent.append(entry)


def _drop_if_empty(elem: etree._Element | None) -> None:
    if elem is not None and not len(elem) and not elem.attrib:
        parent = elem.getparent()
        if parent is not None:
            parent.remove(elem)


def _ip_equal(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _mac(elem: etree._Element) -> str | None:
    mac = elem.get("mac")
    return mac.lower() if mac else None


def _describe(entry: etree._Element) -> str:
    attrs = " ".join(f"{k}='{v}'" for k, v in entry.attrib.items())
    return f"<{entry.tag} {attrs}/>" if attrs else f"<{entry.tag}/>"


def _dhcp_host(root: etree._Element, name: str, command: NetworkCommand,
               entry: etree._Element, parent_index: int) -> None:
    ip = _ip_of(root, name, parent_index)
    dhcp = ip.find("dhcp")
    hosts = dhcp.findall("host") if dhcp is not None else []
    mac, addr, host_name = _mac(entry), entry.get("ip"), entry.get("name")

    def any_field(h: etree._Element) -> bool:
        return ((mac is not None and mac == _mac(h)) or _ip_equal(addr, h.get("ip"))
                or (host_name is not None and host_name == h.get("name")))

    if command is NetworkCommand.ADD:
        if mac is None and host_name is None:
            raise LiveError("dhcp host entry needs a mac or a name", ErrorCode.INVALID_SPEC)
        if any(any_field(h) for h in hosts):
            raise LiveError(f"there is an existing dhcp host entry in network '{name}' "
                            f"that matches \"{_describe(entry)}\"")
        _append(_child(ip, "dhcp"), entry)
        return
    if command is NetworkCommand.DELETE:
        match = next((h for h in hosts if (mac is None or _mac(h) is None or mac == _mac(h))
                      and (host_name is None or host_name == h.get("name"))
                      and (addr is None or _ip_equal(addr, h.get("ip")))), None)
        if match is None or dhcp is None:
            raise LiveError(f"couldn't locate a matching dhcp host entry in network '{name}'")
        dhcp.remove(match)
        _drop_if_empty(dhcp)
        return
    tests: list[Callable[[etree._Element], bool]] = [
        lambda h: mac is not None and mac == _mac(h),
        lambda h: _ip_equal(addr, h.get("ip")),
        lambda h: host_name is not None and host_name == h.get("name"),
    ]
    match = next((h for test in tests for h in hosts if test(h)), None)
    if match is None:
        raise LiveError(f"couldn't locate an existing dhcp host entry with "
                        f"\"{_describe(entry)}\" in network '{name}'")
    match.addnext(entry)
    match.getparent().remove(match)  # type: ignore[union-attr]


def _dhcp_range(root: etree._Element, name: str, command: NetworkCommand,
                entry: etree._Element, parent_index: int) -> None:
    if command is NetworkCommand.MODIFY:
        raise LiveError("dhcp ranges cannot be modified, only added or deleted", _UNSUPPORTED)
    ip = _ip_of(root, name, parent_index)
    dhcp = ip.find("dhcp")
    start, end = entry.get("start"), entry.get("end")
    match = next((r for r in (dhcp.findall("range") if dhcp is not None else [])
                  if _ip_equal(start, r.get("start")) and _ip_equal(end, r.get("end"))), None)
    if command is NetworkCommand.ADD:
        if match is not None:
            raise LiveError(f"there is an existing dhcp range entry in network '{name}' "
                            f"that matches \"<range start='{start}' end='{end}'/>\"")
        _append(_child(ip, "dhcp"), entry)
        return
    if match is None or dhcp is None:
        raise LiveError(f"couldn't locate a matching dhcp range entry in network '{name}'")
    dhcp.remove(match)
    _drop_if_empty(dhcp)


def _dns_records(root: etree._Element, name: str, command: NetworkCommand,
                 entry: etree._Element, what: str,
                 matches: Callable[[etree._Element], bool], *, single: bool) -> None:
    """DNS host, TXT and SRV records: add or delete, never modify."""
    if command is NetworkCommand.MODIFY:
        raise LiveError(f"DNS {what} records cannot be modified, only added or deleted",
                        _UNSUPPORTED)
    dns = root.find("dns")
    found = [r for r in (dns.findall(str(entry.tag)) if dns is not None else []) if matches(r)]
    if command is NetworkCommand.ADD:
        if found:
            raise LiveError(f"there is already at least one DNS {what} record with a "
                            f"matching field in network {name}")
        _append(_child(root, "dns"), entry)
        return
    if not found or dns is None:
        raise LiveError(f"couldn't locate a matching DNS {what} record in network {name}")
    if single and len(found) > 1:
        raise LiveError(f"multiple matching DNS {what} records were found in network {name}")
    dns.remove(found[0])
    _drop_if_empty(dns)


def _dns_host(root: etree._Element, name: str, command: NetworkCommand,
              entry: etree._Element, _index: int) -> None:
    names = {(h.text or "").strip() for h in entry.iterfind("hostname")}

    def matches(h: etree._Element) -> bool:
        theirs = {(n.text or "").strip() for n in h.iterfind("hostname")}
        return _ip_equal(entry.get("ip"), h.get("ip")) or bool(names & theirs)

    _dns_records(root, name, command, entry, "HOST", matches, single=True)


def _dns_txt(root: etree._Element, name: str, command: NetworkCommand,
             entry: etree._Element, _index: int) -> None:
    _dns_records(root, name, command, entry, "TXT",
                 lambda t: t.get("name") == entry.get("name"), single=False)


def _dns_srv(root: etree._Element, name: str, command: NetworkCommand,
             entry: etree._Element, _index: int) -> None:
    keys = [k for k in ("service", "protocol", "domain", "target", "port", "priority",
                        "weight") if entry.get(k) is not None]

    def matches(s: etree._Element) -> bool:
        return all(s.get(k) == entry.get(k) for k in keys)

    _dns_records(root, name, command, entry, "SRV", matches, single=True)


def _portgroup(root: etree._Element, name: str, command: NetworkCommand,
               entry: etree._Element, _index: int) -> None:
    group = entry.get("name")
    groups = root.findall("portgroup")
    match = next((g for g in groups if g.get("name") == group), None)
    if command is NetworkCommand.ADD and match is not None:
        raise LiveError(f"there is an existing portgroup entry in network '{name}' that "
                        f"matches \"<portgroup name='{group}'>\"")
    if command is not NetworkCommand.ADD and match is None:
        raise LiveError(f"couldn't find a portgroup entry in network '{name}' matching "
                        f"<portgroup name='{group}'>")
    if command is not NetworkCommand.DELETE and entry.get("default") == "yes" and any(
            g is not match and g.get("default") == "yes" for g in groups):
        raise LiveError(f"a different portgroup entry in network '{name}' is already set "
                        "as the default. Only one default is allowed.")
    if command is NetworkCommand.ADD:
        _append(root, entry)
    elif command is NetworkCommand.DELETE:
        root.remove(match)  # type: ignore[arg-type]
    elif not same(match, entry):
        match.addnext(entry)  # type: ignore[union-attr]
        root.remove(match)  # type: ignore[arg-type]


def _forward_interface(root: etree._Element, name: str, command: NetworkCommand,
                       entry: etree._Element, _index: int) -> None:
    if command is NetworkCommand.MODIFY:
        raise LiveError("forward interface entries cannot be modified, only added or "
                        "deleted", _UNSUPPORTED)
    forward = root.find("forward")
    if forward is None:
        raise LiveError(f"network '{name}' has no <forward> element to hold interfaces")
    dev = entry.get("dev")
    match = next((i for i in forward.findall("interface") if i.get("dev") == dev), None)
    if command is NetworkCommand.ADD:
        if match is not None:
            raise LiveError(f"there is an existing interface entry in network '{name}' that "
                            f"matches \"<interface dev='{dev}'>\"")
        _append(forward, entry)
        return
    if match is None:
        raise LiveError(f"couldn't find an interface entry in network '{name}' matching "
                        f"<interface dev='{dev}'>")
    forward.remove(match)


_Handler = Callable[[etree._Element, str, NetworkCommand, etree._Element, int], None]
_HANDLERS: dict[NetworkSection, _Handler] = {
    NetworkSection.DHCP_HOST: _dhcp_host,
    NetworkSection.DHCP_RANGE: _dhcp_range,
    NetworkSection.DNS_HOST: _dns_host,
    NetworkSection.DNS_TXT: _dns_txt,
    NetworkSection.DNS_SRV: _dns_srv,
    NetworkSection.PORTGROUP: _portgroup,
    NetworkSection.FORWARD_INTERFACE: _forward_interface,
}
