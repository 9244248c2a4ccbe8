"""Each definition parsed once per run: the tree of a spec's or a live object's XML,
carried on the object itself (its `parsed` slot, model.py), with what checks derive
from it.

Loading parses a spec's file (or builds a YAML spec's tree) and hands that tree over
(`carry`); a spec read back from the spec cache is parsed the first time something asks.
The host checks (ownership, capabilities, devices), the planner and the pruning rules
then all read the same tree, where each used to parse the text again (five times per
domain on a no-op plan).

Trees handed out are shared: read them, never edit them. A caller that edits (the
planner fills in identity and addresses) takes `private(tree)`, a copy, which costs
about half a parse. A spec or live object made anew (`dataclasses.replace`) starts with
nothing parsed, so a tree can never describe other XML than the object's own.
Pure: no I/O.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, TypeVar

from lxml import etree

from virtctl.capabilities import GuestRequest, guest_request
from virtctl.model import DomainSpec, LiveDomain, LiveNetwork, NetworkSpec
from virtctl.xmlutil import parse

S = TypeVar("S", DomainSpec, NetworkSpec)


def _tree(obj: Any, slot: str, text: str) -> etree._Element:
    found = obj.parsed.get(slot)
    if found is None:
        found = obj.parsed[slot] = parse(text)
    return found


def spec_tree(spec: DomainSpec | NetworkSpec) -> etree._Element:
    """The declared definition's tree (shared: read only)."""
    return _tree(spec, "xml", spec.xml)


def live_tree(obj: LiveDomain | LiveNetwork) -> etree._Element:
    """The host's persistent definition's tree (shared: read only)."""
    return _tree(obj, "xml", obj.xml)


def running_tree(obj: LiveDomain | LiveNetwork) -> etree._Element | None:
    """The running definition's tree, when the host reports one apart (shared)."""
    if obj.running_xml is None:
        return None
    if obj.running_xml == obj.xml:  # a network runs what it defines, most often
        return live_tree(obj)
    return _tree(obj, "running", obj.running_xml)


def running_or_live_tree(obj: LiveDomain) -> etree._Element:
    """What the guest runs: the running definition, else the persistent one."""
    running = running_tree(obj) if obj.running_xml else None
    return running if running is not None else live_tree(obj)


def private(tree: etree._Element) -> etree._Element:
    """A copy of a shared tree for a caller that edits it."""
    return copy.deepcopy(tree)


def carry(spec: S, root: etree._Element) -> S:
    """`spec` with `root`, the tree its XML was serialised from, as its parsed tree:
    the caller no longer edits `root`."""
    spec.parsed["xml"] = root
    return spec


def guest_of(spec: DomainSpec) -> GuestRequest:
    """What the domain asks of the host (capabilities.guest_request), derived once."""
    found = spec.parsed.get("guest")
    if found is None:
        found = spec.parsed["guest"] = guest_request(spec_tree(spec))
    return found


def replaced(obj: Any, **changes: Any) -> Any:
    """`dataclasses.replace(obj, **changes)`, keeping what was parsed from `obj`'s XML
    when the XML stays the same (a spec given its lines, labels or host)."""
    new = dataclasses.replace(obj, **changes)
    if "xml" not in changes and isinstance(new, DomainSpec | NetworkSpec):
        new.parsed.update(obj.parsed)
    return new
