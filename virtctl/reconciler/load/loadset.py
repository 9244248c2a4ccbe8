"""Loading `kind: DomainSet` documents (domainset.py expands them, purely).

Each instance's Domain (and overlay Volume) document is loaded like any other spec, its
errors pointing at the set's own keys (`template.memory`, `volumeTemplate.pool`). What
needs every file read first is done by `finish_sets`: the hosts a set names must be
declared in a `kind: Hosts` document, and the DHCP host entries go into the set's
network declared for the instance's host. Before that, `place_sets` places the
instances with the facts of their hosts (placement.py), when the caller can read them:
load_specs for apply and the rest, and the watcher's Catalog, which loads files one by
one and places each reading's sets in one go (`facts_wanted`, then `place_sets` per
file; virtctl/watch/placing.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from ...errors import ErrorCode, Source, SpecError, SpecErrors
from ...model import (
    SET_LABEL,
    DomainSpec,
    HostAlias,
    NetworkSpec,
    ObjectKey,
    PoolSpec,
    VolumeSpec,
)
from ...xmlutil import parse, tostring
from ...converters.sizes import unit_bytes
from .domainset import Expansion, SetProblem, expand
from .placement import MEMORY, ROUND_ROBIN, HostFacts, NoRoom, Want, place
from .schema import line_for_path, schema_error, validator
from ..trees import carry, private, replaced, spec_tree

#: Facts per host URI for placement (or why that host could not be read), given the
#: URIs and whether each one's node facts (memory, cpus) are needed.
FactsReader = Callable[[Mapping[str, bool]], Mapping[str, "HostFacts | str"]]

AnySpec = DomainSpec | NetworkSpec | PoolSpec | VolumeSpec
__all__ = ["SET_LABEL", "ExpandPlaced", "FactsReader", "LoadedSet", "facts_wanted", "finish_sets",
           "add_dhcp_entries", "needs_every_file", "place_sets", "placing", "set_members",
           "specs_from_set"]

#: load.py's loader of one document: (doc, source, index, line, text, extra) -> spec.
SpecFromDoc = Callable[[dict[str, Any], str, int, int | None, str, list[Any]], AnySpec]
#: A set expanded again with its instances' hosts (loaded, instance -> host).
ExpandPlaced = Callable[["LoadedSet", Mapping[str, str]], "LoadedSet"]


@dataclass(frozen=True, slots=True)
class LoadedSet:
    name: str
    file: str
    index: int  # the document's position in its file
    line: int | None
    text: str  # the file's text, for lines of keys named in errors found later
    expansion: Expansion
    specs: tuple[AnySpec, ...]
    doc: Mapping[str, Any]  # the DomainSet document, to expand again once placed

    def at(self, path: str) -> Source:
        return Source(self.file, line_for_path(self.text, self.index, path) or self.line,
                      path)


def specs_from_set(doc: dict[str, Any], source: str, index: int, line: int | None,
                   text: str, placed: Mapping[str, str] | None = None, *,
                   spec_from_doc: SpecFromDoc) -> LoadedSet:
    """The set's instances, each document loaded by `spec_from_doc` (load.py's, passed in
    so this module never imports load.py, which imports it); `placed`: the instances'
    hosts, when the document was validated when first loaded."""
    if placed is None:
        problems = sorted(validator("DomainSet").iter_errors(doc),
                          key=lambda e: (len(list(e.absolute_path)), str(e.message)))
        if problems:
            raise SpecErrors([schema_error(e, source, index, line, text)
                              for e in problems[:20]])
    try:
        expansion = expand(doc, placed)
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
    return LoadedSet(doc["name"], source, index, line, text, expansion, tuple(specs), doc)


def _wants(loaded: LoadedSet) -> list[Want]:
    """The set's instances for placement.place: declared hosts, memory and vcpus."""
    pinned = {item["name"]: item.get("host") for item in loaded.doc.get("instances") or ()}
    need: dict[str, tuple[int, int]] = {}
    for spec in loaded.specs if loaded.doc.get("placement") == MEMORY else ():
        if isinstance(spec, DomainSpec):
            root = parse(spec.xml)
            vcpu = (root.findtext("vcpu") or "1").strip()
            need[spec.name] = (_memory_kib(root), int(vcpu) if vcpu.isdigit() else 1)
    return [Want(i.name, pinned.get(i.name), *need.get(i.name, (0, 1)))
            for i in loaded.expansion.instances]


def placing(loaded: LoadedSet) -> bool:
    """Whether any of the set's instances is placed (not perHost, not all pinned)."""
    doc = loaded.doc
    if doc.get("perHost") or not doc.get("hosts"):
        return False
    return "instances" not in doc or any("host" not in i for i in doc["instances"])


def _memory_kib(root: etree._Element) -> int:
    """An instance's <memory> in KiB, for the capacity check (0 when unreadable: the
    loader's own checks refuse such a spec)."""
    memory = root.find("memory")
    factor = unit_bytes(memory.get("unit") or "KiB") if memory is not None else None
    try:
        return -(-int((memory.text or "").strip()) * factor // 1024) if factor else 0
    except (ValueError, AttributeError):
        return 0


def facts_wanted(sets: Sequence[LoadedSet], aliases: Mapping[str, HostAlias]
                 ) -> dict[str, bool]:
    """The hosts (URIs) whose facts placing `sets` needs, and whether each one's node
    facts (memory, cpus) are needed too: none for a set that places nothing."""
    asked: dict[str, bool] = {}
    for loaded in sets:
        if placing(loaded):
            for host in loaded.doc["hosts"]:
                uri = aliases[host].uri if host in aliases else host
                if "://" in uri:  # (an undeclared host: finish_sets says so)
                    need = loaded.doc.get("placement") == MEMORY
                    asked[uri] = asked.get(uri, False) or need
    return asked


def needs_every_file(loaded: LoadedSet) -> SpecError | None:
    """Why a set cannot be loaded from its file alone (load_text without `sets`): its
    DHCP host entries go into a network another file may declare. Every command loads
    all files together (load_specs; the watcher's Catalog per reading)."""
    if not loaded.expansion.dhcp:
        return None
    return SpecError(f"DomainSet {loaded.name}: network: needs all spec files loaded "
                     "together (its DHCP host entries go into the network another file "
                     "may declare)", code=ErrorCode.UNSUPPORTED, source=loaded.at("network"))


def place_sets(specs: list[AnySpec], sets: list[LoadedSet],
               aliases: Mapping[str, HostAlias], read: FactsReader,
               errors: list[SpecError], *, spec_from_doc: SpecFromDoc,
               expand_placed: ExpandPlaced | None = None,
               ) -> tuple[list[AnySpec], list[LoadedSet]]:
    """The sets placed with their hosts' facts (`read`: facts per host URI, or why a host
    could not be read), each set whose placement differs from the provisional one
    (placement on empty hosts) expanded again (by `expand_placed` when given: the
    watcher keeps the last expansion of each placement); `specs` with their instances
    swapped."""
    asked = facts_wanted(sets, aliases)
    if not asked:
        return specs, sets
    found = read(asked)
    out_sets: list[LoadedSet] = []
    swapped: dict[int, tuple[AnySpec, ...]] = {}
    for loaded in sets:
        if not placing(loaded):
            out_sets.append(loaded)
            continue
        hosts: list[str] = list(loaded.doc["hosts"])
        facts: dict[str, HostFacts] = {}
        unreadable = False
        for i, host in enumerate(hosts):
            got = found.get(aliases[host].uri if host in aliases else host)
            if isinstance(got, str):
                errors.append(SpecError(
                    f"DomainSet {loaded.name}: cannot read host {host!r} to find where the "
                    f"set's instances live ({got}); placement is stable only when every "
                    "host of the set answers", code=ErrorCode.OPERATION_FAILED,
                    source=loaded.at(f"hosts[{i}]")))
                unreadable = True
            elif got is not None:
                facts[host] = got
        if unreadable:
            out_sets.append(loaded)
            continue
        try:
            placed = place(loaded.name, str(loaded.doc.get("placement", ROUND_ROBIN)), hosts,
                           _wants(loaded), facts)
        except NoRoom as exc:
            errors.append(SpecError(f"DomainSet {loaded.name}: {exc}",
                                    code=ErrorCode.INVALID_SPEC,
                                    source=loaded.at("placement")))
            out_sets.append(loaded)
            continue
        if all(placed.get(i.name, i.host) == i.host for i in loaded.expansion.instances):
            out_sets.append(loaded)
            continue
        try:
            again = (expand_placed(loaded, placed) if expand_placed is not None else
                     specs_from_set(dict(loaded.doc), loaded.file, loaded.index,
                                    loaded.line, loaded.text, placed,
                                    spec_from_doc=spec_from_doc))
        except SpecErrors as many:
            errors.extend(many.errors)
            out_sets.append(loaded)
            continue
        except SpecError as exc:
            errors.append(exc)
            out_sets.append(loaded)
            continue
        for spec in loaded.specs:
            swapped[id(spec)] = ()
        first = loaded.specs[0] if loaded.specs else None
        if first is not None:
            swapped[id(first)] = again.specs
        out_sets.append(again)
    if not swapped:
        return specs, out_sets
    out: list[AnySpec] = []
    for spec in specs:
        out.extend(swapped.get(id(spec), (spec,)))
    return out, out_sets


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
    return replaced(spec, source=Source(source, line, f"DomainSet {set_name}[{instance}]"))


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
    return add_dhcp_entries(specs, sets, errors)


def add_dhcp_entries(specs: list[AnySpec], sets: Sequence[LoadedSet],
                     errors: list[SpecError]) -> list[AnySpec]:
    """`specs` with each set's DHCP host entries in the network declared (among `specs`)
    for the instance's host; each problem, naming the set's file and key, to `errors`.
    load_specs calls it once for every file (finish_sets); the watcher once per reading,
    with every valid file's specs (watch/placing.py), so both write the same entries."""
    networks = {(s.name, s.connect): i for i, s in enumerate(specs)
                if isinstance(s, NetworkSpec)}
    wanted: dict[int, list[tuple[LoadedSet, Any]]] = {}
    missing: set[tuple[str, str | None]] = set()  # said once per set and host, not per instance
    for loaded in sets:
        missing.clear()
        for entry in loaded.expansion.dhcp:
            at = networks.get((entry.network, entry.host))
            if at is None and (entry.network, entry.host) not in missing:
                missing.add((entry.network, entry.host))
                where = f" for host {entry.host}" if entry.host else ""
                errors.append(SpecError(
                    f"DomainSet {loaded.name}: network {entry.network!r} is not declared"
                    f"{where} (the set writes its DHCP host entries there)",
                    code=ErrorCode.UNKNOWN_REFERENCE, source=loaded.at("network.name")))
            if at is None:
                continue
            wanted.setdefault(at, []).append((loaded, entry))
    out = list(specs)
    for at, entries in wanted.items():
        net = out[at]
        assert isinstance(net, NetworkSpec)
        root = private(spec_tree(net))
        for loaded, entry in entries:
            problem = _add_host(root, entry.mac, entry.name, entry.ip)
            if problem:
                errors.append(SpecError(f"DomainSet {loaded.name}, instance {entry.name}: "
                                        f"{problem}", code=ErrorCode.INVALID_SPEC,
                                        source=loaded.at("network.range")))
        out[at] = carry(replace(net, xml=tostring(root)), root)
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
