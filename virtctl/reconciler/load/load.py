"""Spec loading: `load_specs(paths) -> Desired`.

Reads YAML (multi-document, validated by the packaged JSON Schema), libvirt domain,
network, storage pool and volume XML, and Xen xm/xl config files; turns each object into
a spec whose definition is libvirt XML. Every file is read and every problem collected
before anything is returned, so a run either has a whole valid Desired or a `SpecErrors`
naming each file, line and field path. Reads files and stdin; nothing else.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml
from lxml import etree

from ... import metadata
from ...converters.yaml.yamlstrict import DuplicateKey, StrictLoader
from ...errors import ErrorCode, Source, SpecError, SpecErrors
from ... import fileio
from ...fileio import NotRegularFile, open_regular
from ...model import (
    Desired,
    DomainSpec,
    DomainState,
    HostAlias,
    NetworkSpec,
    PoolSpec,
    VolumeSpec,
)
from ...xmlutil import parse, tostring
from ...limits import (
    MAX_DEFINITION_BYTES,
    MAX_SPEC_BYTES,
    MAX_YAML_VALUES,
    definition_too_large,
    long_text,
    name_problem,
    text_too_long,
    too_many_values,
    unsafe_text,
)
# fields.py and schema.py were split out of this module so loadstorage.py and loadset.py
# need not import it (issue 23); the old local names keep this module's body as it was.
from .fields import connect_of as _connect
from .fields import flag as _flag
from .fields import update_rules as _update_rules
from .loadcloudinit import cloud_init_seed
from .schema import composed as _composed
from .schema import error_rank as _error_rank
from .schema import json_path as _json_path
from .schema import line_for_path as _line_for_path
from .schema import line_of as _line_of
from .schema import schema_error as _schema_error
from .schema import validator as _validator
from ..speccache import SpecCache
from virtctl.reconciler.trees import carry, replaced

if TYPE_CHECKING:

    from .loadset import FactsReader, LoadedSet

# The suffixes and the directory walk live in fileio.py, model-free: the CLI's no-op
# fast path (cli/noop.py) selects the same files without importing the loader.
YAML_SUFFIXES, XML_SUFFIXES, XEN_SUFFIXES = fileio.YAML_SUFFIXES, fileio.XML_SUFFIXES, \
    fileio.XEN_SUFFIXES
SPEC_SUFFIXES = fileio.SPEC_SUFFIXES
_walk = fileio.walk_specs

_DOC_START = re.compile(r"^---(?:\s|$)")
AnySpec = DomainSpec | NetworkSpec | PoolSpec | VolumeSpec


@dataclass(frozen=True, slots=True)
class SpecFile:
    name: str  # path as given, or "<stdin>"
    text: str


def expand(paths: Sequence[str], *, stdin: IO[str] | None = None,
           errors: list[SpecError] | None = None) -> Iterator[SpecFile]:
    """Files named, directories walked recursively in sorted order, hidden entries skipped.
    With `errors`, a file that cannot be read (a FIFO, a socket, a device, a symlink out
    of its directory, not UTF-8...) is added there and the others are still read (the
    watcher goes on with them); without, the first one is raised. A path given that
    does not exist is raised either way."""

    def read(path: Path, name: str) -> Iterator[SpecFile]:
        try:
            yield SpecFile(name, _read(path))
        except SpecError as exc:
            if errors is None:
                raise
            errors.append(exc)

    for given in paths:
        if given == "-":
            text = (stdin or sys.stdin).read(MAX_SPEC_BYTES + 1)
            if len(text) > MAX_SPEC_BYTES:
                raise SpecError("too large for a spec (at most "
                                f"{MAX_SPEC_BYTES // (1024 * 1024)} MiB)",
                                code=ErrorCode.INVALID_SPEC, source=Source("<stdin>"))
            yield SpecFile("<stdin>", text)
            continue
        path = Path(given)
        if path.is_dir():
            for found in _walk(path, path.resolve(), set(), errors):
                yield from read(found, str(found))
        elif path.exists():
            yield from read(path, given)
        else:
            raise SpecError("no such file or directory", code=ErrorCode.INVALID_SPEC,
                            source=Source(given))


def read_spec_file(path: str) -> str:
    """The text of one spec file named by the user (`convert FILE`), as `expand` reads
    each file: SpecError naming it if it is no regular file, too large or not UTF-8."""
    return _read(Path(path))


def _read(path: Path) -> str:
    """A spec file's text. Only a regular file is read (fileio.open_regular): a FIFO,
    a socket or a device is refused by name, never waited on or read without end."""
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_SPEC_BYTES:
                raise SpecError(f"{size} bytes is too large for a spec file (at most "
                                f"{MAX_SPEC_BYTES // (1024 * 1024)} MiB)",
                                code=ErrorCode.INVALID_SPEC, source=Source(str(path)))
            data = handle.read(MAX_SPEC_BYTES + 1)
        # As text mode reads it: universal newlines.
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason})", code=ErrorCode.PARSE_ERROR,
                        source=Source(str(path))) from None
    except NotRegularFile as exc:
        raise SpecError(f"{exc.strerror}; refused (a spec is a regular file)",
                        code=ErrorCode.INVALID_SPEC, source=Source(str(path))) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", source=Source(str(path))) from None


def load_specs(
    paths: Sequence[str], *, stdin: IO[str] | None = None, cache: SpecCache | None = None,
    placement: FactsReader | None = None,
) -> Desired:
    """Load and validate every spec under `paths`; raise SpecErrors listing every problem.
    `placement` reads the facts of the hosts DomainSets place instances on (where their
    instances live, node memory and cpus; loadset.place_sets); without it, instances
    are placed as on empty hosts."""
    errors: list[SpecError] = []
    specs: list[AnySpec] = []
    warnings: list[str] = []
    cache = cache or SpecCache(None)
    unreadable: list[SpecError] = []  # every file that cannot be read, then stop
    try:
        files = list(expand(paths, stdin=stdin, errors=unreadable))
    except SpecError as exc:
        raise SpecErrors([*unreadable, exc]) from None
    if unreadable:
        raise SpecErrors(unreadable)
    aliases: list[HostAlias] = []
    sets: list[LoadedSet] = []
    for spec_file in files:
        hit = cache.get(spec_file.text, spec_file.name)
        if hit is not None:
            specs.extend(hit[0])
            warnings.extend(hit[1])
            continue
        found: list[str] = []
        named: list[HostAlias] = []
        in_file: list[LoadedSet] = []
        try:
            loaded = load_text(spec_file.text, source=spec_file.name, warnings=found,
                               hosts=named, sets=in_file)
        except SpecErrors as many:
            errors.extend(many.errors)
            continue
        except SpecError as exc:
            errors.append(exc)
            continue
        specs.extend(loaded)
        warnings.extend(found)
        aliases.extend(named)
        sets.extend(in_file)
        # The cache holds domains and networks only: files naming hosts are re-read, and
        # so are storage files (a relative content.file depends on where the file is).
        plain = [s for s in loaded if isinstance(s, DomainSpec | NetworkSpec)]
        if not named and not in_file and len(plain) == len(loaded):
            cache.put(spec_file.text, plain, found)
    from .loadstorage import check_storage, with_volume_formats
    from .validate import check_specs

    hosts = _unique_hosts(aliases, errors)
    if sets:
        from .loadset import finish_sets, place_sets

        if placement is not None:
            specs, sets = place_sets(specs, sets, hosts, placement, errors,
                                     spec_from_doc=_spec_from_doc)
        specs = finish_sets(specs, sets, hosts, errors)
    errors.extend(check_specs([s for s in specs if isinstance(s, DomainSpec | NetworkSpec)]))
    errors.extend(check_storage(specs))
    if errors:
        raise SpecErrors(errors)
    volumes = host_keyed(s for s in specs if isinstance(s, VolumeSpec))
    domains = [  # a domain's volumes are those of its own host
        dom for host in dict.fromkeys(s.connect for s in specs if isinstance(s, DomainSpec))
        for dom in with_volume_formats(
            [s for s in specs if isinstance(s, DomainSpec) and s.connect == host],
            {v.key.name: v for v in volumes.values() if v.connect == host})]
    return Desired(
        domains=host_keyed(domains),
        networks=host_keyed(s for s in specs if isinstance(s, NetworkSpec)),
        warnings=tuple(warnings),
        hosts=hosts,
        pools=host_keyed(s for s in specs if isinstance(s, PoolSpec)),
        volumes=volumes,
    )


def place_file_sets(specs: list[AnySpec], sets: list[LoadedSet],
                    aliases: Mapping[str, HostAlias], read: FactsReader,
                    errors: list[SpecError], *,
                    memo: dict[object, tuple[LoadedSet, LoadedSet]] | None = None,
                    ) -> tuple[list[AnySpec], list[LoadedSet]]:
    """loadset.place_sets with this module's document loader, as load_specs places: for
    a caller that loads files one by one (the watcher places each file's sets). `memo`
    keeps each set's expansion for a placement (by the set's loaded object, which the
    caller keeps while its file is unchanged, and the placement), so placing a set of
    1,000 the same way at every reading expands it once."""
    from .loadset import place_sets, specs_from_set

    def expand_placed(loaded: LoadedSet, placed: Mapping[str, str]) -> LoadedSet:
        key = (id(loaded), tuple(sorted(placed.items())))
        found = memo.get(key) if memo is not None else None
        if found is not None and found[0] is loaded:  # (an id outlives its object)
            return found[1]
        again = specs_from_set(dict(loaded.doc), loaded.file, loaded.index, loaded.line,
                               loaded.text, placed, spec_from_doc=_spec_from_doc)
        if memo is not None:
            memo[key] = (loaded, again)
        return again

    return place_sets(specs, sets, aliases, read, errors, spec_from_doc=_spec_from_doc,
                      expand_placed=expand_placed)


def host_keyed(specs: Iterable[Any]) -> dict[str, Any]:
    """Specs by name; a name is unique per host, not across hosts, so a name that
    several hosts declare is keyed NAME@HOST (`connect:` as written) until
    `group_by_host` splits the specs per host (keying them by name again and refusing
    a name twice on one host)."""
    specs = list(specs)
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.key.name] = counts.get(spec.key.name, 0) + 1
    return {(spec.key.name if counts[spec.key.name] == 1 or spec.connect is None
             else f"{spec.key.name}@{spec.connect}"): spec for spec in specs}


def _unique_hosts(aliases: list[HostAlias], errors: list[SpecError]) -> dict[str, HostAlias]:
    hosts: dict[str, HostAlias] = {}
    for alias in aliases:
        first = hosts.get(alias.name)
        if first is not None and first.uri != alias.uri:
            errors.append(SpecError(
                f"host {alias.name!r} is already named {first.uri} at {first.source}",
                code=ErrorCode.DUPLICATE, source=alias.source))
        hosts.setdefault(alias.name, alias)
    return hosts


def detect_format(text: str, source: str) -> str:
    lower = source.lower()
    if lower.endswith(YAML_SUFFIXES):
        return "yaml"
    if lower.endswith(XML_SUFFIXES):
        return "xml"
    if lower.endswith(XEN_SUFFIXES):
        return "xen"
    stripped = text.lstrip()
    if stripped.startswith("<"):
        return "xml"
    from ...converters.xen.xm import looks_like_xen_config

    return "xen" if looks_like_xen_config(text) else "yaml"


def load_text(
    text: str, *, source: str, warnings: list[str] | None = None,
    hosts: list[HostAlias] | None = None, sets: list[LoadedSet] | None = None,
) -> list[AnySpec]:
    """The specs one file declares; conversion warnings are appended to `warnings`, host
    names from `kind: Hosts` documents to `hosts`."""
    fmt = detect_format(text, source)
    if fmt == "xml":
        specs = [spec_from_xml(parse(text, source=source), source=source)]
    elif fmt == "xen":
        specs = [_load_xen(text, source, warnings if warnings is not None else [])]
    else:
        specs = _load_yaml(text, source, hosts if hosts is not None else [], sets)
    _check_definition_sizes(specs)
    return specs


def _check_definition_sizes(specs: Sequence[AnySpec]) -> None:
    """Refuse a definition libvirt's daemon cannot take (limits.MAX_DEFINITION_BYTES),
    at its document: many texts each under the limit can make one."""
    errors = []
    for spec in specs:
        if len(spec.xml) * 4 > MAX_DEFINITION_BYTES:  # else surely under: no encoding
            size = len(spec.xml.encode())
            if size > MAX_DEFINITION_BYTES:
                errors.append(SpecError(definition_too_large(spec.key.kind, size),
                                        code=ErrorCode.INVALID_SPEC, source=spec.source))
    if errors:
        raise SpecErrors(errors)


# -- XML --------------------------------------------------------------------------------


def spec_from_xml(
    root: etree._Element, *, source: str, line: int | None = None,
    runtime: Mapping[str, Any] | None = None, place: Place | None = None,
) -> AnySpec:
    """A spec from a libvirt definition. Runtime state comes from `runtime` (YAML) or
    from the virtctl:runtime element in <metadata> (XML files). `place` says where a
    converted file (YAML, xm/xl) declared an element, for errors about it."""
    line = line or root.sourceline
    where = Source(source, line)
    attrs = metadata.pop_runtime(root)
    metadata.strip_virtctl(root)
    name = (root.findtext("name") or "").strip()
    if not name:
        raise SpecError(f"<{root.tag}> has no <name>", source=Source(source, line, "name"))
    problem = name_problem(name)
    if problem is not None:
        raise SpecError(problem, code=ErrorCode.INVALID_SPEC,
                        source=_at(source, line, root.find("name"), "name",
                                   xml_lines=runtime is None, place=place))
    uuid = _canonical_uuid(root.findtext("uuid"), Source(source, line, "uuid"))
    uuid_elem = root.find("uuid")
    if uuid and uuid_elem is not None:
        uuid_elem.text = uuid
    rt_source = Source(source, line, "metadata/virtctl:runtime")
    if root.tag == "domain":
        _check_domain(root, source, line, xml_lines=runtime is None, place=place)
        state_raw = runtime.get("state") if runtime is not None else attrs.get("state")
        try:
            state = DomainState(state_raw or "running")
        except ValueError:
            raise SpecError(f"state must be running, shutoff or paused, not {state_raw!r}",
                            source=rt_source) from None
        if state not in (DomainState.RUNNING, DomainState.SHUTOFF, DomainState.PAUSED):
            raise SpecError(f"state must be running, shutoff or paused, not {state_raw!r}",
                            source=rt_source)
        autostart = bool(runtime.get("autostart", False)) if runtime is not None else _flag(
            attrs, "autostart", False, rt_source)
        rules = _update_rules(attrs if runtime is None else runtime, rt_source,
                              yaml=runtime is not None)
        from ... import checkpoints as checkpoint_rules

        # The tree is handed over with the spec: nothing parses its XML again this run.
        return carry(DomainSpec(
            name=name,
            xml=tostring(root, pretty=False),
            source=where,
            state=state,
            autostart=autostart,
            uuid=uuid,
            networks=tuple(sorted({
                s.get("network", "")
                for s in root.iterfind("devices/interface[@type='network']/source")
            })),
            macs=_exclusive_macs(root),
            lines=_xml_lines(root) if runtime is None else (),
            update_policy=rules[0],
            shutdown_timeout=rules[1],
            connect=_connect(attrs if runtime is None else runtime),
            safety=checkpoint_rules.yaml_pairs(runtime, rt_source) if runtime is not None
            else checkpoint_rules.xml_pairs(attrs, rt_source),
        ), root)
    if root.tag == "network":
        _check_network(root, source, line, xml_lines=runtime is None, place=place)
        if runtime is not None:
            active = bool(runtime.get("active", True))
            autostart = bool(runtime.get("autostart", False))
        else:
            active = _flag(attrs, "active", True, rt_source)
            autostart = _flag(attrs, "autostart", False, rt_source)
        bridge = root.find("bridge")
        policy, _ = _update_rules(attrs if runtime is None else runtime, rt_source,
                                  yaml=runtime is not None)
        return carry(NetworkSpec(
            name=name,
            xml=tostring(root, pretty=False),
            source=where,
            active=active,
            autostart=autostart,
            uuid=uuid,
            bridge=bridge.get("name") if bridge is not None else None,
            update_policy=policy,
            connect=_connect(attrs if runtime is None else runtime),
        ), root)
    from .loadstorage import pool_spec, volume_spec

    if root.tag == "pool":
        return pool_spec(root, name, uuid, where=where, runtime=runtime, attrs=attrs)
    if root.tag == "volume":
        return volume_spec(root, name, where=where, runtime=runtime, attrs=attrs)
    raise SpecError(f"expected <domain>, <network>, <pool> or <volume>, found <{root.tag}>",
                    source=Source(source, line))


def _exclusive_macs(root: etree._Element) -> tuple[str, ...]:
    """The MACs that must be unique across the specs. A vhost-user interface or one on
    a passt backend may share its MAC with another interface, as libvirt accepts: the
    address lives in a user-space backend, not on a host network device."""
    return tuple(
        (mac.get("address") or "").lower()
        for iface in root.iterfind("devices/interface")
        if iface.get("type") != "vhostuser" and iface.find("backend[@type='passt']") is None
        for mac in iface.iterfind("mac")
    )


#: Where a converted file declared an element: (line, field path) or None.
Place = Callable[[etree._Element | None, str], tuple[int | None, str] | None]


def _at(source: str, line: int | None, elem: etree._Element | None, path: str, *,
        xml_lines: bool, place: Place | None) -> Source:
    """The error's source: the element's line in an XML file; the key's line and path in
    a converted file (YAML, xm/xl); else the document's line."""
    found = place(elem, path) if place is not None else None
    if found is not None:
        return Source(source, found[0] or line, found[1])
    if xml_lines and place is None and elem is not None and elem.sourceline:
        return Source(source, elem.sourceline, path)
    return Source(source, line, path)


def _check_domain(root: etree._Element, source: str, line: int | None, *,
                  xml_lines: bool, place: Place | None = None) -> None:
    """Refuse what libvirt would refuse (domcheck); in an XML file each error names the
    line of the element it is about, in a YAML or xm/xl file the key's."""
    from .domcheck import domain_problems

    errors = [SpecError(message, code=ErrorCode.INVALID_SPEC,
                        source=_at(source, line, elem, path, xml_lines=xml_lines, place=place))
              for elem, path, message in domain_problems(root)]
    if errors:  # once each: two elements may come from one key (xm memory)
        raise SpecErrors(list({str(e): e for e in errors}.values()))


def _check_network(root: etree._Element, source: str, line: int | None, *,
                   xml_lines: bool, place: Place | None = None) -> None:
    """Refuse what libvirt would refuse (netcheck); in an XML file each error names the
    line of the element it is about, in a YAML file the key's."""
    from .netcheck import network_element_problems

    errors = []
    for elem, path, message in network_element_problems(root):
        found = elem if elem is not None else root.find(path.split("/@")[0])
        errors.append(SpecError(message, code=ErrorCode.INVALID_SPEC,
                                source=_at(source, line, found, path, xml_lines=xml_lines,
                                           place=place)))
    if errors:
        raise SpecErrors(errors)


def _canonical_uuid(text: str | None, source: Source) -> str | None:
    import uuid as uuidlib

    if text is None or not text.strip():
        return None
    try:
        return str(uuidlib.UUID(text.strip()))
    except ValueError:
        raise SpecError(f"malformed uuid {text.strip()!r}", source=source) from None


# -- Xen config files ---------------------------------------------------------------------


def _load_xen(text: str, source: str, warnings: list[str]) -> AnySpec:
    from ...converters.xen.xl import guess_flavor
    from ...converters.xen.xm import xm_to_xml

    conversion = xm_to_xml(text, source=source, flavor=guess_flavor(text, source=source))
    warnings.extend(f"{source}: {w}" for w in conversion.warnings)

    def place(elem: etree._Element | None, _: str) -> tuple[int | None, str] | None:
        from ...converters.xen.xmparse import xen_key_of

        return xen_key_of(text, elem)

    return spec_from_xml(parse(conversion.text, source=source), source=source, line=1,
                         place=place)


# -- YAML -------------------------------------------------------------------------------


def _doc_lines(text: str) -> list[int]:
    """1-based first line of each YAML document (an explicit '---' or line 1)."""
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if _DOC_START.match(line)]
    if not starts or _has_content_before(text, starts[0]):
        starts.insert(0, 1)
    return starts


def _has_content_before(text: str, line: int) -> bool:
    for raw in text.splitlines()[: line - 1]:
        stripped = raw.strip()
        if stripped and not stripped.startswith(("#", "%")):
            return True
    return False


def _load_yaml(
    text: str, source: str, hosts: list[HostAlias], sets: list[LoadedSet] | None = None,
) -> list[AnySpec]:
    try:
        docs = [d for d in yaml.load_all(text, Loader=StrictLoader)]
    except DuplicateKey as exc:
        raise SpecError(str(exc.problem), code=ErrorCode.INVALID_SPEC,
                        source=Source(source, exc.problem_mark.line + 1, exc.path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"malformed YAML: {problem}", code=ErrorCode.PARSE_ERROR,
                        source=Source(source, line)) from None
    starts = _doc_lines(text)
    specs: list[AnySpec] = []
    errors: list[SpecError] = []
    nonempty = [(i, d) for i, d in enumerate(docs) if d is not None]
    for index, doc in nonempty:
        line = starts[index] if index < len(starts) else None
        try:
            if not (isinstance(doc, dict) and doc.get("kind") in ("Hosts", "DomainSet")):
                # Checked there, with _check_limits first, unless loaded before.
                specs.extend(_specs_from_doc_cached(doc, source, index, line, text))
                continue
            _check_limits(doc, source, index, line, text)
            if isinstance(doc, dict) and doc.get("kind") == "Hosts":
                hosts.extend(_hosts_from_doc(doc, source, index, line, text))
            elif isinstance(doc, dict) and doc.get("kind") == "DomainSet":
                from .loadset import needs_every_file, specs_from_set

                loaded_set = specs_from_set(doc, source, index, line, text,
                                            spec_from_doc=_spec_from_doc)
                # Its DHCP entries go into a network another file may declare: only a
                # caller reading every file together (load_specs) can place them.
                refused = needs_every_file(loaded_set) if sets is None else None
                if refused is not None:
                    raise refused
                specs.extend(loaded_set.specs)
                if sets is not None:
                    sets.append(loaded_set)
        except SpecErrors as many:
            errors.extend(many.errors)
        except SpecError as exc:
            errors.append(exc)
    if errors:
        raise SpecErrors(errors)
    return specs


# Documents loaded before, by where and what they are: (file, index, line, the document's
# own text, its parsed value) -> its specs. A spec change touching every file of a fleet
# (one domain's memory in each host's file of ten) changes every file's bytes, so every
# file is parsed again, but nine documents in ten are as they were: their schema check,
# conversion and line lookups (most of a document's load) are not done again.
_DOCS: OrderedDict[tuple[object, ...], tuple[AnySpec, ...]] = OrderedDict()
_DOCS_MAX = 20_000
_DOCS_LOCK = threading.Lock()


def _specs_from_doc_cached(
    doc: Any, source: str, index: int, line: int | None, text: str
) -> list[AnySpec]:
    """_check_limits then _specs_from_doc, whose result depends on nothing but the key
    below for these documents: same file, same place in it (so the same line numbers),
    same text, same value. Not for documents that read other files (cloudInit: user
    data files; Volume: a content file's type), nor for ones with errors (not kept)."""
    nodes = _composed(text) if isinstance(doc, dict) and "cloudInit" not in doc \
        and doc.get("kind") in ("Domain", "Network", "StoragePool") else None
    node = nodes[index] if nodes is not None and index < len(nodes) else None
    # The limits first, always: the key below walks the whole value (repr), and an
    # alias bomb expands to billions of values; refused here, it is never walked.
    _check_limits(doc, source, index, line, text)
    if node is None:
        return _specs_from_doc(doc, source, index, line, text)
    key = (source, index, line, node.start_mark.index,
           text[node.start_mark.index:node.end_mark.index], repr(doc))
    with _DOCS_LOCK:
        found = _DOCS.get(key)
        if found is not None:
            _DOCS.move_to_end(key)
            return list(found)
    specs = _specs_from_doc(doc, source, index, line, text)
    with _DOCS_LOCK:
        _DOCS[key] = tuple(specs)
        while len(_DOCS) > _DOCS_MAX:
            _DOCS.popitem(last=False)
    return specs


def _check_limits(doc: Any, source: str, index: int, line: int | None, text: str) -> None:
    if too_many_values(doc):
        raise SpecError(f"the document expands to more than {MAX_YAML_VALUES:,} values "
                        "(aliases of aliases?); refused", code=ErrorCode.INVALID_SPEC,
                        source=Source(source, line))
    for path, _ in unsafe_text(doc):
        raise SpecError("text with a NUL or another control character XML cannot hold",
                        code=ErrorCode.INVALID_SPEC,
                        source=Source(source, _line_for_path(text, index, path) or line, path))
    # Else refused later as "<xml>:1: Text node too long", or by libvirt at define. The
    # cloud-init documents go into the seed image, not a definition.
    defined = {k: v for k, v in doc.items() if k != "cloudInit"} if isinstance(doc, dict) \
        else doc
    for path, size in long_text(defined):
        raise SpecError(text_too_long(size), code=ErrorCode.INVALID_SPEC,
                        source=Source(source, _line_for_path(text, index, path) or line, path))
    from ...limits import long_lists

    for keys, message in long_lists(doc):  # before the schema walks every item
        raise SpecError(message, code=ErrorCode.INVALID_SPEC,
                        source=Source(source, _line_of(text, index, keys) or line,
                                      _json_path(keys)))


def _hosts_from_doc(
    doc: dict[str, Any], source: str, index: int, line: int | None, text: str
) -> list[HostAlias]:
    problems = sorted(_validator("Hosts").iter_errors(doc), key=_error_rank)
    if problems:
        raise SpecErrors([_schema_error(e, source, index, line, text) for e in problems[:20]])
    return [
        HostAlias(name=str(name), uri=str(uri),
                  source=Source(source, _line_of(text, index, ["hosts", name]) or line,
                                f"hosts.{name}"))
        for name, uri in doc["hosts"].items()
    ]


def _specs_from_doc(
    doc: Any, source: str, index: int, line: int | None, text: str
) -> list[AnySpec]:
    """The spec a document declares; a domain with `cloudInit:` also declares the seed
    volume its CD-ROM uses (loadcloudinit.py)."""
    extra: list[AnySpec] = []
    return [_spec_from_doc(doc, source, index, line, text, extra), *extra]


def _spec_from_doc(
    doc: Any, source: str, index: int, line: int | None, text: str,
    extra: list[AnySpec] | None = None,
) -> AnySpec:
    if not isinstance(doc, dict):
        raise SpecError("a spec document must be a mapping with 'kind' and 'name'",
                        source=Source(source, line))
    kind = doc.get("kind")
    validator = _validator(kind if isinstance(kind, str) else None)
    problems = sorted(validator.iter_errors(doc), key=_error_rank)
    if problems:
        raise SpecErrors([_schema_error(e, source, index, line, text) for e in problems[:20]])
    from ...converters.yaml import yamlxml

    try:
        root = {
            "Domain": yamlxml.domain_to_xml, "Network": yamlxml.network_to_xml,
            "StoragePool": yamlxml.pool_to_xml, "Volume": yamlxml.volume_to_xml,
        }[doc["kind"]](doc)
    except SpecError as exc:
        field = exc.source.path if exc.source else None
        raise SpecError(exc.message, code=exc.code,
                        source=Source(source, _line_for_path(text, index, field) or line,
                                      field)) from None
    runtime = {k: doc[k] for k in ("state", "autostart", "active", "updatePolicy",
                                    "shutdownTimeout", "connect", "build", "pool",
                                    "deletePolicy", "content", "health") if k in doc}
    if kind == "Domain" and "cloudInit" in doc and extra is not None:
        where = Source(source, _line_of(text, index, ["cloudInit"]) or line, "cloudInit")
        try:
            extra.append(cloud_init_seed(doc, root, where))
        except SpecError as exc:  # the key's line: cloudInit.target, cloudInit.userData...
            field = exc.source.path if exc.source else None
            raise SpecError(exc.message, code=exc.code,
                            source=Source(source, _line_for_path(text, index, field)
                                          or where.line, field)) from None
    def place(elem: etree._Element | None, xml_path: str) -> tuple[int | None, str] | None:
        from .yamlplace import yaml_path

        path = yaml_path(doc, root, elem, xml_path.rpartition("/@")[2] if "/@" in xml_path
                         else None)
        return (_line_for_path(text, index, path), path) if path else None

    try:
        spec = spec_from_xml(root, source=source, line=line, runtime=runtime, place=place)
    except SpecErrors:
        raise
    except SpecError as exc:  # keys checked while loading (name, storage): the key's line
        field = exc.source.path if exc.source else None
        raise SpecError(exc.message, code=exc.code,
                        source=Source(source, _line_for_path(text, index, field) or line,
                                      field)) from None
    if isinstance(spec, DomainSpec):
        spec = replaced(spec, lines=_yaml_lines(doc, text, index))
    if doc.get("labels"):
        spec = replaced(spec, labels=tuple(sorted((str(k), str(v))
                                                 for k, v in doc["labels"].items())))
    return spec


# Fields host checks report (validate.py), as XML paths and as YAML key paths.
_FIELD_KEYS = (("vcpu", ["vcpus"]), ("os/type/@arch", ["os", "arch"]),
               ("os/type/@machine", ["os", "machine"]), ("devices/emulator", ["emulator"]))
_FIELD_ELEMENTS = (("vcpu", "vcpu"), ("os/type/@arch", "os/type"),
                   ("os/type/@machine", "os/type"), ("devices/emulator", "devices/emulator"),
                   ("devices/tpm", "devices/tpm"))


def _xml_lines(root: etree._Element) -> tuple[tuple[str, int], ...]:
    """Where, in an XML spec file, each network is named and each checked field is."""
    found = [(f"network:{s.get('network', '')}", s.sourceline)
             for s in root.iterfind("devices/interface[@type='network']/source")]
    found += [(what, elem.sourceline) for what, path in _FIELD_ELEMENTS
              if (elem := root.find(path)) is not None]
    return tuple((what, line) for what, line in found if line)


def _yaml_lines(doc: dict[str, Any], text: str, index: int) -> tuple[tuple[str, int], ...]:
    """The same for a YAML document: interfaces[i].source.network and the keys."""
    found = [
        (f"network:{iface['source']['network']}",
         _line_of(text, index, ["interfaces", i, "source", "network"]))
        for i, iface in enumerate(doc.get("interfaces") or [])
        if isinstance(iface, dict) and isinstance(iface.get("source"), dict)
        and "network" in iface["source"]
    ]
    found += [(what, _line_of(text, index, keys)) for what, keys in _FIELD_KEYS]
    found += [("devices/tpm", _line_of(text, index, ["extraDevices", i]))
              for i, extra in enumerate(doc.get("extraDevices") or [])
              if isinstance(extra, str) and "<tpm" in extra][:1]
    return tuple((what, line) for what, line in found if line)


