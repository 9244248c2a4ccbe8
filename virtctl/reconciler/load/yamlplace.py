"""Where in a YAML document an element of its converted XML was declared. Pure.

The loader checks every definition as libvirt XML (domcheck, netcheck), whatever its
format; a problem found there names an element. For a YAML spec the error should point
at the key the user wrote (`disks[1].bootOrder`), not at the document's first line, so
`yaml_path` walks back from the element: devices to the item of their list
(`disks[i]`, `interfaces[i]`, or the `extraDevices[i]` text they came from, or the
`cloudInit` block for the seed's CD-ROM), a network's `<ip>` to `ips[i]`, top-level
elements to their key (or `extraXML[i]`), and a few children to their key. The
converters write each YAML list in order and sort devices stably (xmlmap.order_children),
so the n-th `<disk>` of the YAML part is `disks[n]`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lxml import etree

_TAG = re.compile(r"\s*<([A-Za-z_][\w.:-]*)")
#: Device list keys of the YAML domain model, by element tag.
_DEVICE_KEYS = {"disk": "disks", "controller": "controllers", "interface": "interfaces",
                "serial": "serials", "parallel": "parallels", "console": "consoles",
                "channel": "channels", "input": "inputs", "graphics": "graphics",
                "sound": "sounds", "video": "videos", "hostdev": "hostdevs"}
#: A device's child element and the item key that writes it.
_CHILD_KEYS = {"boot": "bootOrder", "mac": "mac", "target": "target", "source": "source",
               "model": "model", "alias": "alias", "address": "address", "driver": "driver",
               "mtu": "mtu", "link": "link"}
#: Top-level elements whose key differs from the tag.
_TOP_KEYS = {"vcpu": "vcpus", "on_poweroff": "onPoweroff", "on_reboot": "onReboot",
             "on_crash": "onCrash", "ip": "ips"}


def _tag_of(text: Any) -> str | None:
    match = _TAG.match(text) if isinstance(text, str) else None
    return match.group(1) if match else None


def yaml_path(doc: Mapping[str, Any], root: etree._Element, elem: etree._Element | None,
              attr: str | None = None) -> str | None:
    """The YAML key path that declared `elem` (a descendant of `root`), or None; with
    `attr`, the key of that attribute when the element's YAML is a mapping holding it."""
    path = _element_path(doc, root, elem)
    if path is None or attr is None:
        return path
    node: Any = doc
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if token.startswith("[") and isinstance(node, list):
            node = node[int(token[1:-1])]
        elif isinstance(node, Mapping) and token in node:
            node = node[token]
        else:
            return path
    return f"{path}.{attr}" if isinstance(node, Mapping) and attr in node else path


def _element_path(doc: Mapping[str, Any], root: etree._Element,
                  elem: etree._Element | None) -> str | None:
    if elem is None:
        return None
    chain: list[etree._Element] = []
    node: etree._Element | None = elem
    while node is not None and node is not root:
        chain.append(node)
        node = node.getparent()
    if node is not root or not chain:
        return None
    chain.reverse()
    top = chain[0]
    if top.tag == "devices" and len(chain) > 1:
        return _device_path(doc, top, chain[1], chain[2:])
    if top.tag == "ip" and "ips" in doc:
        return _ip_path(root, top, chain[1:])
    key = _TOP_KEYS.get(str(top.tag), str(top.tag))
    if key in doc:
        if len(chain) > 1 and isinstance(doc[key], Mapping) and chain[1].tag in doc[key]:
            return f"{key}.{chain[1].tag}"
        return key
    return _extra(doc, "extraXML", [e for e in root if e.tag == top.tag], top)


def _device_path(doc: Mapping[str, Any], devices: etree._Element, device: etree._Element,
                 below: Sequence[etree._Element]) -> str | None:
    key = _DEVICE_KEYS.get(str(device.tag))
    same = [d for d in devices if d.tag == device.tag]
    position = same.index(device)
    items = doc.get(key, ()) if key else ()
    if position < len(items):
        prefix = f"{key}[{position}]"
        item = items[position]
        child = _CHILD_KEYS.get(str(below[0].tag)) if below else None
        if child and isinstance(item, Mapping) and child in item:
            return f"{prefix}.{child}"
        return prefix
    extra = _extra(doc, "extraDevices", same[len(items):], device)
    if extra is not None:
        return extra
    if device.tag == "disk" and "cloudInit" in doc and device is same[-1]:
        block = doc["cloudInit"]
        return "cloudInit.target" if isinstance(block, Mapping) and "target" in block \
            else "cloudInit"
    return None


def _extra(doc: Mapping[str, Any], key: str, candidates: Sequence[etree._Element],
           elem: etree._Element) -> str | None:
    """`key[i]`: the i-th verbatim XML text of that tag is the n-th candidate element."""
    texts = [i for i, text in enumerate(doc.get(key, ()) or ()) if _tag_of(text) == elem.tag]
    if elem not in candidates:
        return None
    position = list(candidates).index(elem)
    return f"{key}[{texts[position]}]" if position < len(texts) else None


def _ip_path(root: etree._Element, ip: etree._Element,
             below: Sequence[etree._Element]) -> str:
    prefix = f"ips[{[e for e in root if e.tag == 'ip'].index(ip)}]"
    if len(below) >= 2 and below[0].tag == "dhcp" and below[1].tag in ("host", "range"):
        same = [e for e in below[0] if e.tag == below[1].tag]
        key = "hosts" if below[1].tag == "host" else "ranges"
        return f"{prefix}.dhcp.{key}[{same.index(below[1])}]"
    return prefix
