"""`virtctl export -o ansible-inventory`: the guests as an Ansible inventory, in the
JSON `ansible-inventory --list` prints (and a script inventory returns): a `_meta`
with each guest's `hostvars` (`ansible_host`: its first address), `all.children`,
and groups with `hosts` lists:

- `host_<libvirt host>`: the guests of each libvirt host (the URI made a group name);
- `set_<apply set>`: managed guests by the apply set that applied them;
- `<key>_<value>`: managed guests by label (`role_web`).

Group names keep letters, digits and `_` only (Ansible warns about others). Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import Live
from .reach import Address, first_ip
from ..selectors import parse_selector


def group_name(prefix: str, text: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")


def inventory(lives: Mapping[str, Live], selector: str | None,
              addresses: Mapping[str, Mapping[str, Sequence[Address]]]) -> dict[str, Any]:
    chosen = parse_selector(selector) if selector else None
    hostvars: dict[str, dict[str, Any]] = {}
    groups: dict[str, set[str]] = {}
    for uri in sorted(lives):
        live = lives[uri]
        for name, dom in sorted(live.domains.items()):
            labels = dict(dom.owner.labels) if dom.owner is not None else {}
            if chosen is not None and (dom.owner is None or not chosen.matches(labels)):
                continue
            # Names are unique per host only: a name on several hosts is NAME@HOST.
            key = name if sum(name in other.domains for other in lives.values()) == 1 \
                else f"{name}@{group_name('', uri)}"
            found = addresses.get(uri, {}).get(name, ())
            vars_: dict[str, Any] = {"virtctl_host": uri, "virtctl_name": name,
                                     "virtctl_state": str(dom.state)}
            ip = first_ip(found)
            if ip is not None:
                vars_["ansible_host"] = ip
            if labels:
                vars_["virtctl_labels"] = labels
            groups.setdefault(group_name("host_", uri), set()).add(key)
            if dom.owner is not None:
                vars_["virtctl_set"] = dom.owner.apply_set
                if dom.owner.apply_set:
                    groups.setdefault(group_name("set_", dom.owner.apply_set), set()).add(key)
                for k, v in labels.items():
                    groups.setdefault(group_name("", f"{k}_{v}"), set()).add(key)
            hostvars[key] = vars_
    doc: dict[str, Any] = {"_meta": {"hostvars": hostvars}}
    grouped = set().union(*groups.values()) if groups else set()
    ungrouped = sorted(set(hostvars) - grouped)
    doc["all"] = {"children": ["ungrouped", *sorted(groups)]}
    doc["ungrouped"] = {"hosts": ungrouped} if ungrouped else {}
    for name in sorted(groups):
        doc[name] = {"hosts": sorted(groups[name])}
    return doc


def inventory_json(lives: Mapping[str, Live], selector: str | None,
                   addresses: Mapping[str, Mapping[str, Sequence[Address]]]) -> str:
    return json.dumps(inventory(lives, selector, addresses), indent=2, sort_keys=False)
