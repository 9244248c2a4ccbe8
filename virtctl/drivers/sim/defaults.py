"""What the `sim` hypervisor fills into a definition on define, as libvirt does.

libvirt rewrites what it is given: units become KiB, a uuid and MAC addresses appear,
currentMemory, the machine type and lifecycle actions get defaults, networks get a
bridge name and MAC. The sim does the same, so a reconciler that compared naively would
show phantom diffs against it just as it would against libvirt. Pure apart from the
random identity that `fill_*` is handed by its caller.
"""

from __future__ import annotations

from lxml import etree

from ...capabilities import HostCapabilities
from ...converters.sizes import unit_bytes
from ...xmlutil import set_uuid
from .caps import DEFAULT_MACHINE



class DefaultsError(ValueError):
    """The definition is invalid in a way libvirt would refuse at define."""


def to_kib(elem: etree._Element) -> int:
    factor = unit_bytes(elem.get("unit") or "KiB")
    if factor is None:
        raise DefaultsError(f"unknown memory unit '{elem.get('unit')}'")
    try:
        value = int((elem.text or "").strip())
    except ValueError:
        raise DefaultsError(f"invalid memory value '{elem.text}'") from None
    # libvirt rounds up to whole KiB.
    return -(-value * factor // 1024)


def _set_kib(elem: etree._Element, kib: int) -> None:
    elem.text = str(kib)
    elem.set("unit", "KiB")


def fill_domain(
    root: etree._Element, *, uuid: str, mac_suffixes: list[str], caps: HostCapabilities
) -> None:
    """Fill libvirt's defaults into a domain definition, in place."""
    dom_type = root.get("type", "")
    set_uuid(root, uuid)
    memory = root.find("memory")
    if memory is None:
        raise DefaultsError("missing <memory> element")
    kib = to_kib(memory)
    _set_kib(memory, kib)
    current = root.find("currentMemory")
    if current is None:
        current = etree.Element("currentMemory")
        memory.addnext(current)
        _set_kib(current, kib)
    else:
        _set_kib(current, min(to_kib(current), kib))
    if root.find("vcpu") is None:
        vcpu = etree.Element("vcpu", placement="static")
        vcpu.text = "1"
        current.addnext(vcpu)
    _fill_os(root, dom_type, caps)
    for tag, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                         ("on_crash", "destroy")):
        if root.find(tag) is None:
            elem = etree.SubElement(root, tag)
            elem.text = default
    _fill_macs(root, dom_type, mac_suffixes)


def _fill_os(root: etree._Element, dom_type: str, caps: HostCapabilities) -> None:
    os_elem = root.find("os")
    if os_elem is None:
        os_elem = etree.SubElement(root, "os")
    type_elem = os_elem.find("type")
    if type_elem is None:
        type_elem = etree.Element("type")
        type_elem.text = "xen" if dom_type == "xen" else "hvm"
        os_elem.insert(0, type_elem)
    os_type = (type_elem.text or "").strip()
    if not type_elem.get("arch"):
        type_elem.set("arch", caps.host_arch or "x86_64")
    machine = type_elem.get("machine") or DEFAULT_MACHINE.get((dom_type, os_type))
    if machine:
        type_elem.set("machine", caps.canonical_machine(machine))


def _fill_macs(root: etree._Element, dom_type: str, suffixes: list[str]) -> None:
    # Xen guests get Xensource's OUI, everything else QEMU's, like libvirt.
    prefix = "00:16:3e" if dom_type == "xen" else "52:54:00"
    for iface in root.iterfind("devices/interface"):
        mac = iface.find("mac")
        if mac is None:
            mac = etree.Element("mac")
            iface.insert(0, mac)
            mac.set("address", f"{prefix}:{suffixes.pop()}")
        else:
            mac.set("address", (mac.get("address") or "").lower())


def fill_network(
    root: etree._Element, *, uuid: str, bridge: str, mac_suffix: str
) -> None:
    set_uuid(root, uuid)
    forward = root.find("forward")
    mode = forward.get("mode", "nat") if forward is not None else None
    if mode in (None, "nat", "route", "open"):
        # libvirt gives every network it bridges itself a bridge name and a MAC.
        br = root.find("bridge")
        if br is None:
            br = etree.SubElement(root, "bridge")
        if not br.get("name"):
            br.set("name", bridge)
        br.set("stp", br.get("stp", "on"))
        br.set("delay", br.get("delay", "0"))
        if root.find("mac") is None:
            mac = etree.Element("mac", address=f"52:54:00:{mac_suffix}")
            br.addnext(mac)
