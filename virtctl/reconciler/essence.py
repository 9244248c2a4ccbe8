"""The essence of a libvirt definition: what it means, with libvirt's spelling removed.

Desired and live XML differ in ways that carry no meaning: units (`512 MiB` vs
`524288 KiB`), MAC case, uuid forms, element order among devices, the `id` of a running
guest, virtctl's own metadata. `essence()` turns an element into a `Node` tree where
those are gone, and children carry an identity key (disks by target, interfaces by MAC
or by position among interfaces of their type, ...) so they can be matched regardless of
order. Called by diff.py and by the planner's identity merge. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from ..xmlutil import NS

_UNITS = {
    "b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mib": 1024**2,
    "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3, "t": 1024**4,
    "tib": 1024**4, "tb": 1000**4, "p": 1024**5, "pib": 1024**5, "pb": 1000**5,
    "e": 1024**6, "eib": 1024**6, "eb": 1000**6,
}
_MEMORY_TAGS = frozenset({"memory", "currentMemory", "maxMemory"})
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
    factor = _UNITS.get((unit or "KiB").lower())
    try:
        value = int(text.strip())
    except ValueError:
        return text.strip()
    if factor is None:
        return text.strip()
    return str(-(-value * factor // 1024))


def norm_attr(tag: str, name: str, value: str) -> str:
    value = value.strip()
    if name == "address" and tag == "mac":
        return value.lower()
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
    if name == "unit" and tag in _MEMORY_TAGS:
        return True
    return parent_tag is None and tag == "domain" and name == "id"


def _key(elem: etree._Element, position: int) -> str:
    """Identity of a child among its siblings; `position` counts same-tag (and type) siblings."""
    tag = str(elem.tag)
    target = elem.find("target")
    if tag == "disk" and target is not None and target.get("dev"):
        return f"disk[{target.get('dev')}]"
    if tag == "interface":
        mac = elem.find("mac")
        if mac is not None and mac.get("address"):
            return f"interface[{(mac.get('address') or '').lower()}]"
        return f"interface[{elem.get('type')}#{position}]"
    if tag in ("graphics", "sound", "video", "input", "hostdev", "controller", "channel"):
        kind = elem.get("type") or elem.get("model") or ""
        if tag == "controller":
            return f"controller[{kind}:{elem.get('index', '0')}]"
        if tag == "input":
            kind = f"{kind}:{elem.get('bus', '')}"
        return f"{tag}[{kind}#{position}]" if position else f"{tag}[{kind}]"
    if tag in ("serial", "parallel", "console") and target is not None and target.get("port"):
        return f"{tag}[{target.get('port')}]"
    if tag == "timer":
        return f"timer[{elem.get('name')}]"
    return f"{tag}[{position}]" if position else tag


def _position_group(elem: etree._Element) -> tuple[str, str | None]:
    if elem.tag == "interface":
        has_mac = elem.find("mac") is not None
        return ("interface", None if has_mac else elem.get("type"))
    if elem.tag in ("graphics", "sound", "video", "input", "hostdev", "channel"):
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
        (str(k), norm_attr(tag, str(k), str(v)))
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
