"""Stable identity for what a spec leaves out: uuid, MAC addresses, a network's bridge.

A redefinition must keep the object's identity: the uuid and MACs the host already
has, for every device the spec does not pin down. An object that does not exist yet gets
an identity derived from the spec itself (its name; an interface's type, source and
occurrence), so re-creating a deleted object gives it the same uuid and MACs and adding
a NIC never renumbers the others. Called by the planner. Pure.
"""

from __future__ import annotations

import copy
import hashlib
import uuid as uuidlib
from collections import Counter, defaultdict

from lxml import etree

from ...capabilities import HostCapabilities
from ...xmlutil import first_children, set_uuid, text_of
from .essence import child_keys

# Namespace for uuid5 identities of objects virtctl creates without a declared uuid.
_UUID_NAMESPACE = uuidlib.UUID("5b0f7a4e-2f0e-4c4b-9d6c-766972746374")
_NAMESPACE_BYTES = _UUID_NAMESPACE.bytes


def derived_uuid(kind: str, name: str) -> str:
    """`str(uuid.uuid5(_UUID_NAMESPACE, f"{kind}/{name}"))`, computed directly (RFC 4122,
    4.3) without building two UUID objects: every object created gets one. The text must
    never change, or re-created objects would get new identities."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{kind}/{name}".encode(),
                                 usedforsecurity=False).digest()[:16])
    raw[6] = raw[6] & 0x0F | 0x50  # version 5
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_mac(dom_type: str, *parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    # Xen guests use Xensource's OUI, the rest QEMU's, as libvirt would.
    prefix = "00:16:3e" if dom_type == "xen" else "52:54:00"
    return prefix + "".join(f":{b:02x}" for b in digest[:3])


def _iface_source(iface: etree._Element) -> str:
    source = iface.find("source")
    if source is None:
        return ""
    return "|".join(f"{k}={v}" for k, v in sorted(source.attrib.items()))


def _set_mac(iface: etree._Element, address: str) -> None:
    mac = etree.SubElement(iface, "mac", address=address)  # made in iface's document
    iface.insert(0, mac)


def fill_domain_identity(root: etree._Element, live: etree._Element | None) -> None:
    """Give `root` (a declared domain, edited in place) a uuid and a MAC on every NIC."""
    top = first_children(root, "name", "uuid")
    name = text_of(top.get("name")) or ""
    if not text_of(top.get("uuid")):
        live_uuid = (live.findtext("uuid") or "").strip() if live is not None else ""
        set_uuid(root, live_uuid or derived_uuid("domain", name), found=top)
    declared = [i for d in root.iterchildren("devices") for i in d.iterchildren("interface")]
    missing = [i for i in declared if i.find("mac") is None]
    if not missing:
        return
    claimed = {
        (m.get("address") or "").lower() for i in declared if (m := i.find("mac")) is not None
    }
    _fill_macs(root, name, missing, _spare_macs(live, claimed))


def _fill_macs(
    root: etree._Element, name: str, missing: list[etree._Element],
    spare: dict[tuple[str, str], list[str]],
) -> None:
    """A MAC for each NIC in `missing`: a spare live one, else one derived from the spec."""
    nics = [(iface, iface.get("type") or "", _iface_source(iface)) for iface in missing]
    # Two passes: every NIC whose type and source still match a live one keeps its MAC
    # before any edited NIC may take a leftover MAC of its type.
    exact = [_take(spare, kind, source, exact=True) for _, kind, source in nics]
    seen: Counter[tuple[str, str]] = Counter()
    dom_type = root.get("type", "")
    for (iface, kind, source), kept in zip(nics, exact, strict=True):
        occurrence = seen[(kind, source)]
        seen[(kind, source)] += 1
        address = kept or _take(spare, kind, source, exact=False) or derived_mac(
            dom_type, name, kind, source, str(occurrence))
        _set_mac(iface, address)


def _spare_macs(
    live: etree._Element | None, claimed: set[str]
) -> dict[tuple[str, str], list[str]]:
    """The live NICs' MACs no declared NIC claims, by (type, source) in live order."""
    spare: dict[tuple[str, str], list[str]] = defaultdict(list)
    if live is None:
        return spare
    for iface in live.iterfind("devices/interface"):
        mac = iface.find("mac")
        address = (mac.get("address") or "").lower() if mac is not None else ""
        if address and address not in claimed:
            spare[(iface.get("type") or "", _iface_source(iface))].append(address)
    return spare


def _take(
    spare: dict[tuple[str, str], list[str]], kind: str, source: str, *, exact: bool
) -> str | None:
    """A live MAC for a declared NIC: one of the same type and source (`exact`), else
    one of the same type whose source no declared NIC has (the source was edited)."""
    same = spare.get((kind, source))
    if same:
        return same.pop(0)
    if exact:
        return None
    for (have_kind, _), pool in sorted(spare.items()):
        if have_kind == kind and pool:
            return pool.pop(0)
    return None


def fill_network_identity(root: etree._Element, live: etree._Element | None) -> None:
    """Give a declared network a uuid, and keep the bridge name and MAC the host assigned."""
    name = (root.findtext("name") or "").strip()
    if not (root.findtext("uuid") or "").strip():
        live_uuid = (live.findtext("uuid") or "").strip() if live is not None else ""
        set_uuid(root, live_uuid or derived_uuid("network", name))
    if live is None:
        return
    forward = root.find("forward")
    mode = forward.get("mode", "nat") if forward is not None else None
    live_bridge = live.find("bridge")
    bridge = root.find("bridge")
    live_name = live_bridge.get("name") if live_bridge is not None else None
    # Only networks whose bridge libvirt creates itself get a name assigned on define.
    if live_name and mode in (None, "nat", "route", "open"):
        if bridge is None:
            bridge = etree.SubElement(root, "bridge")
        if not bridge.get("name"):
            bridge.set("name", live_name)
    live_mac = live.find("mac")
    if root.find("mac") is None and live_mac is not None and bridge is not None:
        bridge.addnext(etree.Element("mac", address=live_mac.get("address", "")))


def keep_host_machine(
    root: etree._Element, live: etree._Element | None, caps: HostCapabilities | None
) -> None:
    """A declared machine alias ('pc') matches the versioned machine the host stored for it
    ('pc-i440fx-7.2'): keep the stored one, so a redefinition never moves a guest to a
    newer machine type behind the user's back."""
    if live is None or caps is None:
        return
    declared = root.find("os/type")
    stored = live.find("os/type")
    if declared is None or stored is None:
        return
    want, have = declared.get("machine"), stored.get("machine")
    if want and have and want != have and caps.canonical_machine(want) == have:
        declared.set("machine", have)


# What libvirt assigns on define and a guest can see, kept from the live definition when
# the spec leaves it out (see keep_assigned).
_KEPT_TOP = ("seclabel", "resource")


def keep_assigned(root: etree._Element, live: etree._Element | None) -> None:
    """Keep what libvirt assigned and the spec leaves out, so that redefining (adopting
    an export, or any update) changes nothing the guest sees: each declared device
    without an `<address>` keeps the live device's (its identity key matched: disk
    target, NIC MAC, controller type and index...), and a spec without `<seclabel>` or
    `<resource>` keeps the live ones. Without this, libvirt would hand out PCI slots again
    on the next define, and a guest's NIC names would change at its next boot."""
    if live is None:
        return
    declared_devices, live_devices = root.find("devices"), live.find("devices")
    if declared_devices is not None and live_devices is not None:
        assigned = {key: dev for key, dev in child_keys(live_devices)}
        for key, dev in child_keys(declared_devices):
            if dev.find("address") is not None:
                continue
            found = assigned.get(key)
            address = found.find("address") if found is not None else None
            if address is not None and found is not None and found.tag == dev.tag:
                dev.append(copy.deepcopy(address))
    for tag in _KEPT_TOP:
        if root.find(tag) is None:
            for elem in live.iterchildren(tag):
                root.append(copy.deepcopy(elem))
    # The balloon libvirt adds to a spec without one: kept where it is, or the next
    # define would give its PCI slot to a new device and move it (the guest would see
    # the change at its next boot, and a hot-plug would find the slot taken).
    balloon = live.find("devices/memballoon")
    if (declared_devices is not None and declared_devices.find("memballoon") is None
            and balloon is not None and balloon.get("model") != "none"):
        kept = copy.deepcopy(balloon)
        for alias in kept.findall("alias"):
            kept.remove(alias)
        declared_devices.append(kept)


def _pci_slots(root: etree._Element) -> set[int]:
    """Slots on PCI bus 0 that devices of `root` take."""
    used = set()
    for address in root.iterfind("devices/*/address[@type='pci']"):
        try:
            if int(address.get("domain", "0"), 0) or int(address.get("bus", "0"), 0):
                continue
            used.add(int(address.get("slot", "0"), 0))
        except ValueError:
            continue
    return used


def place_hot_plugged(
    root: etree._Element, keys: list[str], live: etree._Element, running: etree._Element
) -> None:
    """Give each device about to be hot-plugged (by identity key) that declares no address
    a PCI slot free in the persistent definition (`live`), the running one and the new
    one: libvirt then defines it where the attach puts it, in one call. Otherwise the
    new definition may get a slot the running guest uses for something else, the attach
    is refused ("Attempted double use of PCI Address"), and the guest gets the device
    at another slot than its next boot will. Only on a QEMU/KVM guest with a legacy PCI
    root bus (i440fx: bus 0, slots 3 to 31; slot 2 is where libvirt puts video); on PCIe
    machines each device needs its own root port, which libvirt chooses."""
    if not keys or running.get("type") not in ("qemu", "kvm"):
        return
    if running.find("devices/controller[@model='pci-root']") is None:
        return
    used = _pci_slots(root) | _pci_slots(live) | _pci_slots(running)
    declared = dict(child_keys(root.find("devices"))) if root.find("devices") is not None else {}
    for key in keys:
        device = declared.get(key.removeprefix("devices/"))
        if device is None or device.find("address") is not None or not _on_pci(device):
            continue
        slot = next((n for n in range(3, 32) if n not in used), None)
        if slot is None:
            return
        used.add(slot)
        etree.SubElement(device, "address", type="pci", domain="0x0000", bus="0x00",
                         slot=f"0x{slot:02x}", function="0x0")


def _on_pci(device: etree._Element) -> bool:
    if device.tag == "disk":
        target = device.find("target")
        return target is not None and target.get("bus") == "virtio"
    if device.tag == "interface":
        model = device.find("model")
        return model is None or model.get("type") != "netfront"
    return False
