"""Stable identity for what a spec leaves out: uuid, MAC addresses, a network's bridge.

A redefinition must keep the object's identity: the uuid and MACs the host already
has, for every device the spec does not pin down. An object that does not exist yet gets
an identity derived from the spec itself (its name; an interface's type, source and
occurrence), so re-creating a deleted object gives it the same uuid and MACs and adding
a NIC never renumbers the others. Called by the planner. Pure.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections import Counter, defaultdict

from lxml import etree

from ..capabilities import HostCapabilities
from ..xmlutil import set_uuid

# Namespace for uuid5 identities of objects virtctl creates without a declared uuid.
_UUID_NAMESPACE = uuidlib.UUID("5b0f7a4e-2f0e-4c4b-9d6c-766972746374")


def derived_uuid(kind: str, name: str) -> str:
    return str(uuidlib.uuid5(_UUID_NAMESPACE, f"{kind}/{name}"))


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
    mac = etree.Element("mac", address=address)
    iface.insert(0, mac)


def fill_domain_identity(root: etree._Element, live: etree._Element | None) -> None:
    """Give `root` (a declared domain, edited in place) a uuid and a MAC on every NIC."""
    name = (root.findtext("name") or "").strip()
    if not (root.findtext("uuid") or "").strip():
        live_uuid = (live.findtext("uuid") or "").strip() if live is not None else ""
        set_uuid(root, live_uuid or derived_uuid("domain", name))
    declared = root.findall("devices/interface")
    claimed = {
        (m.get("address") or "").lower() for i in declared if (m := i.find("mac")) is not None
    }
    spare = _spare_macs(live, claimed)
    missing = [i for i in declared if i.find("mac") is None]
    # Two passes: every NIC whose type and source still match a live one keeps its MAC
    # before any edited NIC may take a leftover MAC of its type.
    exact = {id(i): _take(spare, i.get("type") or "", _iface_source(i), exact=True)
             for i in missing}
    seen: Counter[tuple[str, str]] = Counter()
    dom_type = root.get("type", "")
    for iface in missing:
        kind = iface.get("type") or ""
        source = _iface_source(iface)
        occurrence = seen[(kind, source)]
        seen[(kind, source)] += 1
        address = exact[id(iface)] or _take(spare, kind, source, exact=False) or derived_mac(
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
