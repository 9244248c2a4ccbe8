"""The essence of a libvirt definition: what it means, with libvirt's spelling removed.

Desired and live XML differ in ways that carry no meaning: units (`512 MiB` vs
`524288 KiB`), MAC case, uuid forms, element order among devices, the `id` of a running
guest, virtctl's own metadata. `essence()` turns an element into a `Node` tree where
those are gone, and children carry an identity key (disks by target, interfaces by MAC
or by position among interfaces of their type, ...) so they can be matched regardless of
order. Called by diff.py and by the planner's identity merge. Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from ...converters.sizes import unit_bytes
from ...xmlutil import NS

# Elements whose text is an amount of memory with an optional unit= (KiB by default).
_MEMORY_TAGS = frozenset({"memory", "currentMemory", "maxMemory", "hard_limit", "soft_limit",
                          "swap_hard_limit", "min_guarantee", "size", "requested", "block"})
# Attributes that are an amount of memory scaled by the element's unit= attribute.
_MEMORY_ATTRS = {("cell", "memory"), ("page", "size"), ("hugepages", "size")}
_MEMORY_ATTR_TAGS = frozenset(tag for tag, _ in _MEMORY_ATTRS)
_NS_PREFIX = f"{{{NS}}}"


@dataclass(frozen=True, slots=True)
class Node:
    tag: str
    attrs: tuple[tuple[str, str], ...]
    text: str | None
    children: tuple[tuple[str, Node], ...]  # (identity key, child)

    def attr(self, name: str) -> str | None:
        for key, value in self.attrs:
            if key == name:
                return value
        return None

    def child(self, key: str) -> Node | None:
        for k, node in self.children:
            if k == key:
                return node
        return None


def memory_kib(text: str, unit: str | None) -> str:
    """A memory amount in KiB, as text; unparseable input is returned unchanged."""
    factor = unit_bytes(unit or "KiB")
    try:
        value = int(text.strip())
    except ValueError:
        return text.strip()
    if factor is None:
        return text.strip()
    return str(-(-value * factor // 1024))


_PCI_FIELDS = frozenset({"domain", "bus", "slot", "function", "controller", "target", "unit"})


def _number(value: str) -> str:
    """libvirt writes device address numbers in hex ('0x01'); a spec may write '1'."""
    try:
        return str(int(value, 0))
    except ValueError:
        return value


def norm_attr(tag: str, name: str, value: str, unit: str | None = None) -> str:
    """An attribute's value with libvirt's spelling removed. `unit` is the element's
    unit= attribute, for attributes that are memory amounts (numa cells, page sizes).

    Boolean spellings are deliberately left alone: every libvirt attribute takes exactly
    one pair (yes/no or on/off, see basictypes.rng virYesNo/virOnOff) and refuses the
    other, so 'true' and 'yes' are not the same there. virtctl's own runtime element,
    which accepts yes/no/on/off/true/false/1/0, is read by the loader, never diffed."""
    value = value.strip()
    if (name == "address" and tag == "mac") or name == "mac":
        return value.lower()
    if tag == "address" and name in _PCI_FIELDS:
        return _number(value)
    if tag in _MEMORY_ATTR_TAGS and (tag, name) in _MEMORY_ATTRS:
        return f"{memory_kib(value, unit)} KiB"
    if tag == "uuid" or (name == "uuid" and len(value) in (32, 36)):
        return value.replace("-", "").lower()
    return value


def norm_text(elem: etree._Element, parent_tag: str | None, dom_type: str) -> str | None:
    text = (elem.text or "").strip()
    if not text:
        return None
    tag = elem.tag
    if tag in _MEMORY_TAGS:
        return f"{memory_kib(text, elem.get('unit'))} KiB"
    if tag == "uuid":
        return text.replace("-", "").lower()
    if tag == "type" and parent_tag == "os" and dom_type == "xen" and text == "linux":
        return "xen"  # libvirt's Xen driver reports paravirt guests as 'xen'
    return text


def ignored_attr(tag: str, name: str, parent_tag: str | None) -> bool:
    """Attributes that carry no meaning once normalised: memory units (the value is in
    KiB) and the runtime id of a running guest (`parent_tag` None means the root)."""
    if name == "unit" and (tag in _MEMORY_TAGS or tag in _MEMORY_ATTR_TAGS):
        return True
    return parent_tag is None and tag == "domain" and name == "id"


def _attr_of(child: str, attr: str) -> Callable[[etree._Element], str | None]:
    def get(elem: etree._Element) -> str | None:
        found = elem.find(child) if child else elem
        return found.get(attr) if found is not None else None

    return get


def _pci_source(elem: etree._Element) -> str | None:
    addr = elem.find("source/address")
    if addr is None or addr.get("bus") is None:
        vendor, product = elem.find("source/vendor"), elem.find("source/product")
        if vendor is not None and product is not None:
            return f"{vendor.get('id')}:{product.get('id')}"
        return None
    return ":".join(str(int(addr.get(p) or "0", 0)) for p in ("domain", "bus", "slot", "function"))


# Identity of a child element among its siblings, by tag: the libvirt field that names
# it. Order among such siblings means nothing to libvirt. Absent a value, the child is
# keyed by its position among siblings of its group (_position_group).
_IDENTITY: dict[str, Callable[[etree._Element], str | None]] = {
    "disk": _attr_of("target", "dev"),
    "filesystem": _attr_of("target", "dir"),
    "hostdev": _pci_source,
    "channel": _attr_of("target", "name"),
    "timer": _attr_of("", "name"),
    "feature": _attr_of("", "name"),  # cpu/feature
    "cell": _attr_of("", "id"),  # numa cells
    "vcpupin": _attr_of("", "vcpu"),
    "entry": _attr_of("", "name"),  # sysinfo
    "portgroup": _attr_of("", "name"),  # networks
    "txt": _attr_of("", "name"),  # network DNS TXT records
    "ip": _attr_of("", "address"),
    "range": _attr_of("", "start"),
    "route": _attr_of("", "address"),
    "shmem": _attr_of("", "name"),
    "seclabel": _attr_of("", "model"),
}
# Children keyed by their type= (or model=) and their position among that type.
_TYPED = frozenset({"graphics", "sound", "video", "input", "redirdev", "smartcard", "rng",
                    "tpm", "panic"})
_PORTED = frozenset({"serial", "parallel", "console"})


def _key(elem: etree._Element, position: int) -> str:
    """Identity of a child among its siblings; `position` counts its group (see below)."""
    tag = str(elem.tag)
    if tag == "interface" and elem.get("type") is None and elem.get("dev"):
        return f"interface[{elem.get('dev')}]"  # a network's forward interface
    if tag == "interface":
        mac = elem.find("mac")
        if mac is not None and mac.get("address"):
            return f"interface[{(mac.get('address') or '').lower()}]"
        return f"interface[{elem.get('type')}#{position}]"
    if tag == "controller":
        return f"controller[{elem.get('type') or ''}:{elem.get('index', '0')}]"
    if tag in _PORTED:
        # libvirt numbers serial/parallel/console ports in order when they are omitted.
        port = elem.find("target")
        return f"{tag}[{port.get('port') if port is not None and port.get('port') else position}]"
    if tag in _TYPED:
        kind = elem.get("type") or elem.get("model") or ""
        if tag == "input":
            kind = f"{kind}:{elem.get('bus', '')}"
        return f"{tag}[{kind}#{position}]" if position else f"{tag}[{kind}]"
    if tag == "host" and elem.get("mac"):  # dhcp hosts by MAC, dns hosts by ip
        return f"host[{(elem.get('mac') or '').lower()}]"
    identity = _IDENTITY.get(tag)
    value = identity(elem) if identity is not None else None
    if tag == "host" and elem.get("ip"):
        value = elem.get("ip")
    if value:
        return f"{tag}[{value}]"
    return f"{tag}[{position}]" if position else tag


def _position_group(elem: etree._Element) -> tuple[str, str | None]:
    if elem.tag == "interface":
        has_mac = elem.find("mac") is not None
        return ("interface", None if has_mac else elem.get("type"))
    if elem.tag in _TYPED:
        return (str(elem.tag), elem.get("type") or elem.get("model"))
    return (str(elem.tag), None)


def child_keys(elem: etree._Element) -> list[tuple[str, etree._Element]]:
    """Each element child of `elem` with its identity key (virtctl metadata excluded)."""
    if not len(elem):
        return []
    seen: dict[tuple[str, str | None], int] = {}
    out: list[tuple[str, etree._Element]] = []
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str) or tag.startswith(_NS_PREFIX):
            continue
        group = _position_group(child)
        count = seen.get(group, 0)
        out.append((_key(child, count), child))
        seen[group] = count + 1
    return out


def essence(root: etree._Element) -> Node:
    """The comparable essence of a domain or network definition."""
    return _node(root, None, root.get("type", "") if root.tag == "domain" else "")


def _node(elem: etree._Element, parent_tag: str | None, dom_type: str) -> Node:
    tag = str(elem.tag)
    attrs = sorted(
        (str(k), norm_attr(tag, str(k), str(v), elem.get("unit")))
        for k, v in elem.attrib.items()
        if not ignored_attr(tag, str(k), parent_tag or "")
    )
    if parent_tag is None:
        attrs = [(k, v) for k, v in attrs if not ignored_attr(tag, k, None)]
    children = tuple(
        (key, _node(child, tag, dom_type)) for key, child in child_keys(elem)
    )
    return Node(tag=tag, attrs=tuple(attrs), text=norm_text(elem, parent_tag, dom_type),
                children=children)
