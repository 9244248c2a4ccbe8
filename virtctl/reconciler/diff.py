"""Field-level differences between a declared definition and a live one.

Scoped to what was declared (kopf's DiffScope.LEFT, nmstate's state_match): every
attribute, text and child present on the desired side must be present and equal on the
live side; whatever libvirt added (addresses, aliases, controllers, defaults) is not a
difference. Paths read like `devices/disk[hdb]/source/@file`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .essence import Node


class ChangeOp(StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class FieldChange:
    op: ChangeOp
    path: str
    old: str | None = None
    new: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"op": str(self.op), "path": self.path, "old": self.old, "new": self.new}


def _join(path: str, part: str) -> str:
    return f"{path}/{part}" if path else part


def summarize(node: Node) -> str:
    """A short human label for an added or removed element."""
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


def removed(previous: Node, desired: Node, path: str = "") -> list[FieldChange]:
    """What an earlier declaration had that the current one no longer declares."""
    out: list[FieldChange] = []
    current = dict(desired.attrs)
    for name, value in previous.attrs:
        if name not in current:
            out.append(FieldChange(ChangeOp.REMOVE, _join(path, f"@{name}"), value, None))
    if previous.text is not None and desired.text is None:
        out.append(FieldChange(ChangeOp.REMOVE, path or previous.tag, previous.text, None))
    now = dict(desired.children)
    for key, child in previous.children:
        other = now.get(key)
        if other is None:
            out.append(FieldChange(ChangeOp.REMOVE, _join(path, key), summarize(child), None))
        else:
            out.extend(removed(child, other, _join(path, key)))
    return out
