"""Loading `kind: DomainSet` documents (domainset.py expands them, purely).

Each instance's Domain (and overlay Volume) document is loaded like any other spec, its
errors pointing at the set's own keys (`template.memory`, `volumeTemplate.pool`). What
needs every file read first is done by `finish_sets`: the hosts a set names must be
declared in a `kind: Hosts` document, and the DHCP host entries go into the set's
network declared for the instance's host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from ...errors import ErrorCode, Source, SpecError, SpecErrors
from ...model import DomainSpec, HostAlias, NetworkSpec, ObjectKey, PoolSpec, VolumeSpec
from ...xmlutil import parse, tostring
from .domainset import Expansion, SetProblem, expand
from .schema import line_for_path, schema_error, validator

AnySpec = DomainSpec | NetworkSpec | PoolSpec | VolumeSpec
#: load.py's loader of one document: (doc, source, index, line, text, extra) -> spec.
SpecFromDoc = Callable[[dict[str, Any], str, int, int | None, str, list[Any]], AnySpec]
#: The label every instance carries: its set's name (selectors, inventory groups).
SET_LABEL = "domainset"


@dataclass(frozen=True, slots=True)
class LoadedSet:
    name: str
    file: str
    index: int  # the document's position in its file
    line: int | None
    text: str  # the file's text, for lines of keys named in errors found later
    expansion: Expansion
    specs: tuple[AnySpec, ...]

    def at(self, path: str) -> Source:
        return Source(self.file, line_for_path(self.text, self.index, path) or self.line,
                      path)


def specs_from_set(doc: dict[str, Any], source: str, index: int, line: int | None,
                   text: str, *, spec_from_doc: SpecFromDoc) -> LoadedSet:
    """The set's instances, each document loaded by `spec_from_doc` (load.py's, passed in
    so this module never imports load.py, which imports it)."""
    problems = sorted(validator("DomainSet").iter_errors(doc),
                      key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if problems:
        raise SpecErrors([schema_error(e, source, index, line, text) for e in problems[:20]])
    try:
        expansion = expand(doc)
    except SetProblem as exc:
        raise SpecError(f"DomainSet {doc['name']}: {exc.message}", code=ErrorCode.INVALID_SPEC,
                        source=Source(source, line_for_path(text, index, exc.path) or line,
                                      exc.path)) from None
    specs: list[AnySpec] = []
    errors: list[SpecError] = []
    seen: set[tuple[str | None, str]] = set()  # a template mistake: said once, not per instance

    def once(found: list[SpecError]) -> None:
        for error in found:
            key = (error.source.path if error.source else None,
                   error.message.split(": ", 1)[-1])
            if key not in seen:
                seen.add(key)
                errors.append(error)

    for instance, sub in expansion.documents:
        sub = dict(sub)
        sub.setdefault("labels", {})
        sub["labels"] = {**sub["labels"], SET_LABEL: expansion.set_name}
        prefix = "volumeTemplate" if sub["kind"] == "Volume" else "template"
        try:
            extra: list[AnySpec] = []
            spec = spec_from_doc(sub, source, index, line, text, extra)
            specs.extend([_at_set(spec, source, line, doc["name"], instance), *extra])
        except SpecErrors as many:
            once([_moved(e, prefix, source, index, line, text, doc["name"], instance)
                  for e in many.errors])
        except SpecError as exc:
            once([_moved(exc, prefix, source, index, line, text, doc["name"], instance)])
        if len(errors) >= 20:  # one mistake in a template repeats for every instance
            break
    if errors:
        raise SpecErrors(errors)
    return LoadedSet(doc["name"], source, index, line, text, expansion, tuple(specs))


def set_members(desired: Any) -> dict[ObjectKey, str]:
    """The DomainSet of each declared object that is an instance (its `domainset` label),
    for plans to name; a name two hosts give to different sets is left out."""
    found: dict[ObjectKey, str] = {}
    clash: set[ObjectKey] = set()
    for spec in [*desired, *desired.volumes.values()]:
        name = dict(spec.labels).get(SET_LABEL)
        if name is None:
            continue
        if found.setdefault(spec.key, name) != name:
            clash.add(spec.key)
    return {k: v for k, v in found.items() if k not in clash}


def _at_set(spec: AnySpec, source: str, line: int | None, set_name: str,
            instance: str) -> AnySpec:
    return replace(spec, source=Source(source, line, f"DomainSet {set_name}[{instance}]"))


def _moved(exc: SpecError, prefix: str, source: str, index: int, line: int | None,
           text: str, set_name: str, instance: str) -> SpecError:
    field = exc.source.path if exc.source else None
    path = f"{prefix}.{field}" if field and field not in ("name", "kind") else prefix
    return SpecError(f"DomainSet {set_name}, instance {instance}: {exc.message}",
                     code=exc.code,
                     source=Source(source, line_for_path(text, index, path) or line, path))


def finish_sets(specs: list[AnySpec], sets: list[LoadedSet],
                aliases: Mapping[str, HostAlias], errors: list[SpecError]) -> list[AnySpec]:
    """`specs` with the sets' DHCP host entries in their networks; problems to `errors`."""
    for loaded in sets:
        for host, path in dict.fromkeys(loaded.expansion.hosts):
            if host not in aliases and "://" not in host:
                errors.append(SpecError(
                    f"DomainSet {loaded.name}: host {host!r} is not declared in a "
                    "'kind: Hosts' document", code=ErrorCode.UNKNOWN_REFERENCE,
                    source=loaded.at(path)))
    networks = {(s.name, s.connect): i for i, s in enumerate(specs)
                if isinstance(s, NetworkSpec)}
    wanted: dict[int, list[tuple[LoadedSet, Any]]] = {}
    for loaded in sets:
        for entry in loaded.expansion.dhcp:
            at = networks.get((entry.network, entry.host))
            if at is None:
                where = f" for host {entry.host}" if entry.host else ""
                errors.append(SpecError(
                    f"DomainSet {loaded.name}: network {entry.network!r} is not declared"
                    f"{where} (the set writes its DHCP host entries there)",
                    code=ErrorCode.UNKNOWN_REFERENCE, source=loaded.at("network.name")))
                continue
            wanted.setdefault(at, []).append((loaded, entry))
    out = list(specs)
    for at, entries in wanted.items():
        net = out[at]
        assert isinstance(net, NetworkSpec)
        root = parse(net.xml)
        for loaded, entry in entries:
            problem = _add_host(root, entry.mac, entry.name, entry.ip)
            if problem:
                errors.append(SpecError(f"DomainSet {loaded.name}, instance {entry.name}: "
                                        f"{problem}", code=ErrorCode.INVALID_SPEC,
                                        source=loaded.at("network.range")))
        out[at] = replace(net, xml=tostring(root))
    return out


def _add_host(root: etree._Element, mac: str, name: str, ip: str) -> str | None:
    address = ipaddress.ip_address(ip)
    for elem in root.iterfind("ip"):
        net_addr = elem.get("address")
        if net_addr is None:
            continue
        prefix = elem.get("prefix") or elem.get("netmask") or (
            "64" if ":" in net_addr else "24")
        try:
            subnet = ipaddress.ip_network(f"{net_addr}/{prefix}", strict=False)
        except ValueError:
            continue
        if address not in subnet:
            continue
        dhcp = elem.find("dhcp")
        if dhcp is None:
            dhcp = etree.SubElement(elem, "dhcp")
        for host in dhcp.iterfind("host"):
            if host.get("ip") == ip and (host.get("mac") or "").lower() != mac:
                return f"address {ip} is already given to {host.get('mac')} in network " \
                    f"{root.findtext('name')}"
            if (host.get("mac") or "").lower() == mac:
                return None if host.get("ip") == ip else (
                    f"MAC {mac} already has another address in network "
                    f"{root.findtext('name')}")
        etree.SubElement(dhcp, "host", mac=mac, name=name, ip=ip)
        return None
    return f"address {ip} is in no subnet of network {root.findtext('name')}"
