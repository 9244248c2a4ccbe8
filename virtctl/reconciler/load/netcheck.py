"""What libvirt refuses in a network definition beyond its schema, checked before the
first action so that a bad network fails validation instead of half an apply. Pure.

The rules are the failures libvirt's own network tests expect (networkxml2xmltest:
its parse and validate errors), each said in virtctl's words with the path it is about:

- a disabled DNS (`<dns enable='no'>`) with hosts, TXT or SRV records or forwarders;
- `<forward mode='open'>` with a forward device; nat and route with more than one;
- networks that hand guests a host device (forward modes bridge, private, vepa,
  passthrough, hostdev) route nothing, so they take no `<ip>`, DNS records, `<domain>`
  or `<mac>`; only mode bridge names a `<bridge>`, and then no forward device;
- passthrough, private, vepa and bridge forwarding name host interfaces by device, not by
  PCI address (addresses are for mode='hostdev'), with at most one `<pf>`;
- a forward interface or PCI address listed twice;
- a bridge's MAC (`<mac address>`) or a DHCP host's MAC that is malformed or multicast
  (libvirt: "Invalid multicast bridge mac address", "expected unicast mac address");
- a bandwidth rate (network, port group) or MTU that is no whole number;
- a bridge name (`<bridge name>`, `%d` counted as one digit) or forward device Linux
  cannot have: over 15 bytes, '/', ':' or spaces (the define passes, the start fails).

Older libvirt releases accepted some of these (the reference corpus' passthrough-pf pair,
from such a release, has an `<ip>`); libvirt 11.3 refuses them, and so does virtctl.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from .domcheck import bandwidth_problems
from ...limits import ifname_problem, mac_problem

#: Forward modes that hand guests a host interface directly (macvtap).
_DIRECT = ("passthrough", "private", "vepa", "bridge")
#: ... and with PCI passthrough: none of these route.
_UNROUTED = (*_DIRECT, "hostdev")


def network_problems(root: etree._Element) -> Iterator[tuple[str, str]]:
    """(path, message) for each thing libvirt would refuse in this <network>."""
    for _, path, message in network_element_problems(root):
        yield path, message


def network_element_problems(
    root: etree._Element,
) -> Iterator[tuple[etree._Element | None, str, str]]:
    """(element if known, path, message) for each thing libvirt would refuse."""
    for path, message in _schema_beyond(root):
        yield None, path, message
    yield from _names_and_macs(root)


def _schema_beyond(root: etree._Element) -> Iterator[tuple[str, str]]:
    dns = root.find("dns")
    if dns is not None and (dns.get("enable") or "").lower() == "no":
        extra = sorted({child.tag for child in dns if isinstance(child.tag, str)})
        if extra:
            yield ("dns", f"DNS is disabled (enable='no') but lists {', '.join(extra)}; "
                          "remove them or enable DNS")
    forward = root.find("forward")
    if forward is not None:
        yield from _unrouted_problems(root, forward)
        yield from _forward_problems(forward)


def _names_and_macs(
    root: etree._Element,
) -> Iterator[tuple[etree._Element | None, str, str]]:
    for path in ("mac/@address", "ip/dhcp/host/@mac"):
        element, attr = path.rsplit("/@", 1)
        for elem in root.iterfind(element):
            mac = elem.get(attr)
            problem = mac_problem(mac) if mac is not None else None
            if problem is not None:
                yield (elem, path, problem)
    for holder in (root, *root.iterfind("portgroup")):
        where = "" if holder is root else "portgroup/"
        for way, attr, problem in bandwidth_problems(holder):
            yield (way, f"{where}bandwidth/{way.tag}/@{attr}", problem)
    mtu = root.find("mtu")
    size = (mtu.get("size") or "").strip() if mtu is not None else None
    if mtu is not None and not (size and size.isascii() and size.isdigit()):
        yield (mtu, "mtu/@size", f"an MTU is a whole number, not {size!r}")
    bridge = root.find("bridge")
    name = bridge.get("name") if bridge is not None else None
    if name is not None:
        problem = ifname_problem(name.replace("%d", "0"))
        if problem is not None:
            yield (bridge, "bridge/@name",
                   problem.replace(repr(name.replace("%d", "0")), repr(name)))
    for path in ("forward/@dev", "forward/interface/@dev", "forward/pf/@dev"):
        element, attr = path.rsplit("/@", 1)
        for elem in root.iterfind(element):
            dev = elem.get(attr)
            problem = ifname_problem(dev) if dev is not None else None
            if problem is not None:
                yield (elem, path, problem)


def _unrouted_problems(root: etree._Element,
                       forward: etree._Element) -> Iterator[tuple[str, str]]:
    mode = forward.get("mode") or "nat"
    if mode not in _UNROUTED:
        return
    why = f"a network with forward mode '{mode}' routes nothing"
    for tag in ("ip", "domain", "mac"):
        if root.find(tag) is not None:
            yield (tag, f"{why}: remove <{tag}>")
    dns = root.find("dns")
    if dns is not None and any(dns.find(t) is not None for t in ("host", "txt", "srv")):
        yield ("dns", f"{why}: remove the DNS records")
    bridge = root.find("bridge")
    if bridge is not None and bridge.get("name"):
        if mode != "bridge":
            yield ("bridge", f"forward mode '{mode}' uses no bridge: remove <bridge>")
        elif forward.get("dev") or forward.find("interface") is not None:
            yield ("bridge", "forward mode 'bridge' takes a bridge name or a forward "
                             "device, not both")


def _forward_problems(forward: etree._Element) -> Iterator[tuple[str, str]]:
    mode = forward.get("mode") or "nat"
    interfaces = forward.findall("interface")
    devices = [i.get("dev") or "" for i in interfaces]
    named = len({*devices, *([forward.get("dev")] if forward.get("dev") else [])})
    if mode == "open" and named:
        yield ("forward/@dev", "forward mode 'open' connects to no host device; remove "
                               "dev and the <interface> entries")
    if mode in ("nat", "route") and named > 1:
        yield ("forward/interface", f"forward mode '{mode}' uses at most one host device, "
                                    f"{named} are named")
    pfs = forward.findall("pf")
    if mode in _DIRECT:
        if forward.find("address") is not None:
            yield ("forward/address", f"forward mode '{mode}' names host interfaces by "
                                      "device (<interface dev=...>); PCI addresses are "
                                      "for mode 'hostdev'")
        if len(pfs) > 1:
            yield ("forward/pf", "only one <pf> may be given")
    seen: set[str] = set()
    for dev in devices:
        if dev and dev in seen:
            yield ("forward/interface", f"forward interface {dev!r} is listed twice")
        seen.add(dev)
    addresses: set[tuple[int, ...]] = set()
    for address in forward.findall("address"):
        key = _pci(address)
        if key is None:
            continue  # the schema reports malformed addresses
        if key in addresses:
            where = "{:04x}:{:02x}:{:02x}.{:x}".format(*key)
            yield ("forward/address", f"PCI device {where} is listed twice")
        addresses.add(key)


def _pci(address: etree._Element) -> tuple[int, ...] | None:
    try:
        return tuple(int(address.get(part) or "0", 0)
                     for part in ("domain", "bus", "slot", "function"))
    except ValueError:
        return None
