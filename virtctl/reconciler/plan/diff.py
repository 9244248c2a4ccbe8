"""Field-level differences between a declared definition and a live one.

Scoped to what was declared (kopf's DiffScope.LEFT, nmstate's state_match): every
attribute, text and child present on the desired side must be present and equal on the
live side; whatever libvirt added (addresses, aliases, controllers, defaults) is not a
difference. Paths read like `devices/disk[hdb]/source/@file`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from lxml import etree

from ...model import ChangeClass
from .essence import Node, child_keys, essence, ignored_attr, norm_attr, norm_text


class ChangeOp(StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"


class Origin(StrEnum):
    """Why a field differs, told apart with the last-applied record."""

    SPEC = "spec"  # the spec changed since virtctl last applied it
    DRIFT = "drift"  # the spec did not change: the object was changed outside virtctl
    UNKNOWN = "unknown"  # no last-applied record (adopted, or marked by an older virtctl)


@dataclass(frozen=True, slots=True)
class FieldChange:
    op: ChangeOp
    path: str
    old: str | None = None
    new: str | None = None
    change_class: ChangeClass | None = None  # set by the planner (classify.py)
    origin: Origin | None = None
    operation: str | None = None  # live changes: what applies it ('attach disk vdb')

    def to_dict(self) -> dict[str, str | None]:
        out = {"op": str(self.op), "path": self.path, "old": self.old, "new": self.new}
        if self.change_class is not None:
            out["class"] = str(self.change_class)
        if self.origin is not None:
            out["origin"] = str(self.origin)
        if self.operation is not None:
            out["operation"] = self.operation
        return out


# Containers that mean nothing when empty: libvirt drops an empty <features/> or
# <devices/>, so a declared empty one is not a difference when the host has none.
_CONTAINERS = frozenset({"devices", "features", "metadata", "cputune", "memtune", "blkiotune",
                         "numatune", "pm", "memoryBacking", "resource", "clock", "dns"})


def _empty_container(elem: etree._Element) -> bool:
    return (elem.tag in _CONTAINERS and not len(elem) and not elem.attrib
            and not (elem.text or "").strip())


def _join(path: str, part: str) -> str:
    return f"{path}/{part}" if path else part


def summarize(node: Node) -> str:
    """A short human label for an added or removed element: a leaf holding one value
    (`<link state='down'/>`, `<source file='/x.iso'/>`, `<serial>S1</serial>`) is that
    value, since its path already names the element; others are the tag and what
    identifies them (`disk type=file target=vdb`)."""
    if not node.children:
        if len(node.attrs) == 1 and node.text is None:
            return node.attrs[0][1]
        if not node.attrs and node.text is not None:
            return node.text
    label = node.tag
    for attr in ("type", "dev", "file", "network", "bridge", "address", "name"):
        value = node.attr(attr)
        if value:
            label += f" {attr}={value}"
            break
    target = node.child("target")
    if target is not None and target.attr("dev"):
        label += f" target={target.attr('dev')}"
    return label


def diff(desired: Node, live: Node, path: str = "") -> list[FieldChange]:
    """Differences that would make `live` match what `desired` declares."""
    changes: list[FieldChange] = []
    _diff(desired, live, path, changes)
    return changes


def diff_xml(desired: etree._Element, live: etree._Element) -> list[FieldChange]:
    """`diff` straight over two parsed definitions, without building essences.

    The same result as `diff(essence(desired), essence(live))`, in a fraction of the time:
    only the declared side is walked, and live children are keyed only where the
    declared element has children of its own.
    """
    dom_type = desired.get("type", "") if desired.tag == "domain" else ""
    changes: list[FieldChange] = []
    _diff_xml(desired, live, "", None, dom_type, changes)
    return changes


def _diff_xml(
    desired: etree._Element,
    live: etree._Element,
    path: str,
    parent_tag: str | None,
    dom_type: str,
    out: list[FieldChange],
) -> None:
    tag = str(desired.tag)
    for raw_name, raw_value in desired.attrib.items():
        name = str(raw_name)
        if ignored_attr(tag, name, parent_tag):
            continue
        value = norm_attr(tag, name, str(raw_value), desired.get("unit"))
        have_raw = live.get(name)
        if have_raw is None and tag == "vcpu" and name == "current":
            # libvirt drops current= when every vcpu runs: the count is the maximum.
            have_raw = (live.text or "").strip() or None
        have = (norm_attr(tag, name, str(have_raw), live.get("unit"))
                if have_raw is not None else None)
        if have != value:
            op = ChangeOp.ADD if have is None else ChangeOp.CHANGE
            out.append(FieldChange(op, _join(path, f"@{name}"), have, value))
    text = norm_text(desired, parent_tag, dom_type)
    if text is not None:
        have_text = norm_text(live, parent_tag, dom_type)
        if text != have_text:
            op = ChangeOp.ADD if have_text is None else ChangeOp.CHANGE
            out.append(FieldChange(op, path or tag, have_text, text))
    if not len(desired):
        return
    live_children = dict(child_keys(live))
    for key, child in child_keys(desired):
        other = live_children.get(key)
        if other is None:
            if not _empty_container(child):
                out.append(FieldChange(ChangeOp.ADD, _join(path, key), None,
                                       summarize(essence(child))))
        else:
            _diff_xml(child, other, _join(path, key), tag, dom_type, out)


def _diff(desired: Node, live: Node, path: str, out: list[FieldChange]) -> None:
    live_attrs = dict(live.attrs)
    for name, value in desired.attrs:
        have = live_attrs.get(name)
        if have != value:
            op = ChangeOp.ADD if have is None else ChangeOp.CHANGE
            out.append(FieldChange(op, _join(path, f"@{name}"), have, value))
    if desired.text is not None and desired.text != live.text:
        op = ChangeOp.ADD if live.text is None else ChangeOp.CHANGE
        out.append(FieldChange(op, path or desired.tag, live.text, desired.text))
    live_children = dict(live.children)
    for key, child in desired.children:
        other = live_children.get(key)
        if other is None:
            out.append(FieldChange(ChangeOp.ADD, _join(path, key), None, summarize(child)))
        else:
            _diff(child, other, _join(path, key), out)


def removed(
    previous: Node, desired: Node, path: str = "", *, live: Node | None = None
) -> list[FieldChange]:
    """What an earlier declaration had that the current one no longer declares. With
    `live`, only what the live object still has (the value shown is the live one)."""
    out: list[FieldChange] = []
    current = dict(desired.attrs)
    live_attrs = dict(live.attrs) if live is not None else {}
    for name, value in previous.attrs:
        if name not in current and (live is None or name in live_attrs):
            have = live_attrs.get(name, value)
            out.append(FieldChange(ChangeOp.REMOVE, _join(path, f"@{name}"), have, None))
    if previous.text is not None and desired.text is None:
        have_text = previous.text if live is None else live.text
        if have_text is not None:
            out.append(FieldChange(ChangeOp.REMOVE, path or previous.tag, have_text, None))
    now = dict(desired.children)
    live_children = dict(live.children) if live is not None else {}
    for key, child in previous.children:
        other = now.get(key)
        there = live_children.get(key) if live is not None else child
        if there is None:
            continue
        if other is None and child.children and not child.attrs and child.text is None:
            # A bare container (<devices>, <features>) no longer declared at all: what it
            # held is what was removed, one item each, so each is compared on its own
            # (with the running guest too: a revert to what runs restarts nothing).
            out.extend(removed(child, replace(child, children=()), _join(path, key),
                               live=there if live is not None else None))
        elif other is None:
            out.append(FieldChange(ChangeOp.REMOVE, _join(path, key), summarize(there), None))
        else:
            out.extend(removed(child, other, _join(path, key),
                               live=there if live is not None else None))
    return out
