"""`kind: DomainSet`: many guests from one declaration, expanded into Domain documents.

Pure: a DomainSet document becomes one Domain document per instance (and a Volume
document per instance with `volumeTemplate`), plus the DHCP host entries its network
must gain. Everything an instance gets is derived from the set's name and the
instance's name (and, with `perHost`, its host), never from its position among the
others, so scaling down and up again gives the same instances their same MACs, uuids
and addresses back.

Placeholders in the template's strings: `{name}`, `{index}` (`{index:02}` pads),
`{host}`, `{set}`, `{ip}` and `{vars.KEY}` (an explicit instance's `vars`). Only
these are replaced (a regular expression, never `str.format`: a spec is data), so
other braces (Jinja in cloud-init user data) pass through untouched.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .placement import ROUND_ROBIN, Want, place

#: The namespace of the uuids of perHost instances (one name on many hosts).
_UUID_NAMESPACE = uuid.UUID("6f1c3b1e-6a43-5a35-9d1e-3f0b5b0e2a24")
_PLACEHOLDER = re.compile(r"\{(name|index|host|set|ip|vars\.[A-Za-z_][A-Za-z0-9_-]*)"
                          r"(?::(0?[1-9]))?\}")
_INDEX = re.compile(r"\{index(?::0?[1-9])?\}")


class SetProblem(Exception):
    """A problem in a DomainSet document, at a key path of the document."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    index: int  # 1-based: the replica number, the position in `instances`, the host's
    host: str | None  # the Hosts alias (or URI) it goes to; None: the command line's
    host_path: str  # the key that decided the host (for errors naming it)
    vars: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class DhcpEntry:
    """A DHCP host entry the set's network must hold for one instance."""

    network: str
    host: str | None
    mac: str
    name: str
    ip: str
    path: str  # the set's key that declared it (network.range)


@dataclass(frozen=True, slots=True)
class Expansion:
    set_name: str
    instances: tuple[Instance, ...]
    documents: tuple[tuple[str, dict[str, Any]], ...]  # (instance name, document)
    dhcp: tuple[DhcpEntry, ...]
    hosts: tuple[tuple[str, str], ...]  # (host named, key path naming it)
    per_host: bool


def substitute(text: str, values: Mapping[str, str | int]) -> str:
    def one(match: re.Match[str]) -> str:
        key, width = match.group(1), match.group(2)
        if key.startswith("vars."):
            vars_ = values.get("vars")
            value = vars_.get(key[5:]) if isinstance(vars_, Mapping) else None
            if value is None:
                return match.group(0)
        elif key not in values or values[key] is None:
            return match.group(0)
        else:
            value = values[key]
        if width and isinstance(value, int):
            return f"{value:0{int(width)}d}"
        return str(value)

    return _PLACEHOLDER.sub(one, text)


def _walk(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return substitute(value, values)
    if isinstance(value, list):
        return [_walk(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, values) for k, v in value.items()}
    return value


def derived_mac(set_name: str, name: str, host: str | None, nic: int) -> str:
    """A locally administered unicast MAC in QEMU's 52:54:00 prefix, from the set, the
    instance (and its host when names repeat across hosts) and the NIC's position."""
    digest = hashlib.sha256(f"{set_name}\0{host or ''}\0{name}\0{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def derived_uuid(set_name: str, name: str, host: str | None) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{set_name}\0{host or ''}\0{name}"))


def _instances(doc: Mapping[str, Any], placed: Mapping[str, str] | None) -> list[Instance]:
    """The set's instances with their hosts: perHost and declared hosts as written, the
    others from `placed` (placement.py with the hosts' facts), else as placement puts
    them on empty hosts (round-robin by index)."""
    set_name = doc["name"]
    hosts: list[str] = list(doc.get("hosts") or [])
    if doc.get("perHost"):
        if not hosts:
            raise SetProblem("perHost needs the hosts to put one instance on", "perHost")
        if "placement" in doc:
            raise SetProblem("placement does not apply to perHost (one instance on every "
                             "host)", "placement")
        pattern = doc.get("pattern", set_name)
        return [Instance(substitute(pattern, {"host": h, "set": set_name, "index": i}),
                         i, h, f"hosts[{i - 1}]")
                for i, h in enumerate(hosts, start=1)]
    if "placement" in doc and not hosts:
        raise SetProblem("placement needs the hosts to choose from", "placement")
    if "instances" in doc:
        named = [(item["name"], item.get("host"), dict(item.get("vars") or {}))
                 for item in doc["instances"]]
    else:
        pattern = doc.get("pattern")
        if pattern is None:
            raise SetProblem("replicas needs a name pattern, e.g. pattern: "
                             "\"web-{index:02}\"", "pattern")
        if not _INDEX.search(pattern):
            raise SetProblem(f"pattern {pattern!r} has no {{index}}: every replica would "
                             "have the same name", "pattern")
        named = [(substitute(pattern, {"index": i, "set": set_name}), None, {})
                 for i in range(1, int(doc["replicas"]) + 1)]
    if hosts and placed is None:
        placed = place(set_name, ROUND_ROBIN, hosts,
                       [Want(name, pinned) for name, pinned, _ in named], None)
    out = []
    for i, (name, pinned, vars_) in enumerate(named, start=1):
        if pinned is not None:
            host, path = pinned, f"instances[{i - 1}].host"
        elif hosts:
            assert placed is not None
            host = placed[name]
            path = f"hosts[{hosts.index(host)}]" if host in hosts else "hosts"
        else:
            host, path = None, "hosts"
        out.append(Instance(name, i, host, path, vars_))
    return out


def _check_names(instances: list[Instance], explicit: bool) -> None:
    seen: dict[tuple[str | None, str], int] = {}
    for inst in instances:
        key = (inst.host, inst.name)
        if key in seen:
            where = f" on host {inst.host}" if inst.host else ""
            raise SetProblem(f"two instances are named {inst.name!r}{where} "
                             f"(instances {seen[key]} and {inst.index}); a name is unique "
                             "per host", f"instances[{inst.index - 1}].name" if explicit
                             else "pattern")
        seen[key] = inst.index


def _addresses(doc: Mapping[str, Any], instances: list[Instance]) -> list[Instance]:
    net = doc.get("network")
    if not net:
        return instances
    rng = net["range"]
    try:
        start = ipaddress.ip_address(rng["start"])
        end = ipaddress.ip_address(rng["end"])
    except ValueError as exc:
        raise SetProblem(f"not an IP address: {exc}", "network.range") from None
    if start.version != end.version or int(end) < int(start):
        raise SetProblem(f"range {start} - {end} is empty", "network.range")
    size = int(end) - int(start) + 1
    highest = max((i.index for i in instances), default=0)
    if highest > size:
        raise SetProblem(f"range {start} - {end} holds {size} address(es), too few for "
                         f"{highest} instance(s)", "network.range")
    # The address follows the index, so an instance gets its own address back.
    return [Instance(i.name, i.index, i.host, i.host_path, i.vars,
                     str(ipaddress.ip_address(int(start) + i.index - 1)))
            for i in instances]


def expand(doc: Mapping[str, Any], placed: Mapping[str, str] | None = None) -> Expansion:
    """The set's instances as Domain documents; raises SetProblem. `placed`: the host
    of each instance to be placed (placement.place with the hosts' facts)."""
    set_name = doc["name"]
    per_host = bool(doc.get("perHost"))
    instances = _addresses(doc, _instances(doc, placed))
    _check_names(instances, "instances" in doc and not per_host)
    template = doc["template"]
    net = doc.get("network")
    documents: list[tuple[str, dict[str, Any]]] = []
    dhcp: list[DhcpEntry] = []
    labels = dict(doc.get("labels") or {})
    for inst in instances:
        values = {"name": inst.name, "index": inst.index, "host": inst.host,
                  "set": set_name, "ip": inst.ip, "vars": inst.vars}
        dom: dict[str, Any] = _walk(copy.deepcopy(dict(template)), values)
        dom = {"kind": "Domain", "name": inst.name, **dom}
        if inst.host is not None:
            dom["connect"] = inst.host
        if labels or dom.get("labels"):
            dom["labels"] = {**labels, **dict(dom.get("labels") or {})}
        if per_host and "uuid" not in dom:
            dom["uuid"] = derived_uuid(set_name, inst.name, inst.host)
        key_host = inst.host if per_host else None
        for n, nic in enumerate(dom.get("interfaces") or []):
            if isinstance(nic, dict) and "mac" not in nic:
                nic["mac"] = derived_mac(set_name, inst.name, key_host, n)
        if net:
            nic = next((x for x in dom.get("interfaces") or [] if isinstance(x, dict)
                        and (x.get("source") or {}).get("network") == net["name"]), None)
            if nic is None:
                raise SetProblem(f"the template has no interface on network "
                                 f"{net['name']!r}", "network.name")
            dhcp.append(DhcpEntry(net["name"], inst.host, nic["mac"].lower(), inst.name,
                                  inst.ip or "", "network.range"))
        cloud = dom.get("cloudInit")
        if isinstance(cloud, dict):
            meta = cloud.get("metaData")
            if meta is None or isinstance(meta, dict) and "file" not in meta:
                meta = dict(meta or {})
                meta.setdefault("instance-id", inst.name)
                meta.setdefault("local-hostname", inst.name)
                cloud["metaData"] = meta
        vt = doc.get("volumeTemplate")
        if vt:
            vol_name = f"{inst.name}.{vt.get('format', 'qcow2')}"
            vol: dict[str, Any] = {
                "kind": "Volume", "name": vol_name, "pool": vt["pool"],
                "capacity": vt["capacity"], "format": vt.get("format", "qcow2"),
                "backingStore": {"volume": vt["backingVolume"],
                                 "format": vt.get("backingFormat", "qcow2")}}
            if "deletePolicy" in vt:
                vol["deletePolicy"] = vt["deletePolicy"]
            if inst.host is not None:
                vol["connect"] = inst.host
            if dom.get("labels"):
                vol["labels"] = dict(dom["labels"])
            disk = {"type": "volume", "device": "disk",
                    "driver": {"name": "qemu", "type": vol["format"]},
                    "source": {"pool": vt["pool"], "volume": vol_name},
                    "target": vt.get("target", "vda")}
            dom["disks"] = [disk, *(dom.get("disks") or [])]
            documents.append((inst.name, vol))
        documents.append((inst.name, dom))
    hosts = tuple((h, f"hosts[{i}]") for i, h in enumerate(doc.get("hosts") or [])) + tuple(
        (i.host, i.host_path) for i in instances
        if i.host is not None and i.host_path.startswith("instances"))
    return Expansion(set_name, tuple(instances), tuple(documents), tuple(dhcp), hosts,
                     per_host)
