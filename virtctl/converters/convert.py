"""One entry point for `virtctl convert --from SRC --to DST`: any spec format to any other.

Called by the CLI's convert verb. Every path goes through libvirt XML, the document of
record: xm/xl text via `virtctl.converters.xen.xm`, YAML via `virtctl.converters.yaml.yamlxml`.
Pure: text in, `Conversion` out; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from lxml import etree

from .. import metadata
from . import FORMATS
from ..errors import ErrorCode, ErrorDomain, Source, SpecError
from ..limits import MAX_TEXT_BYTES, long_text, text_too_long
from ..xmlutil import parse, tostring
from .yaml import yamlxml
from .xen.xm import Conversion, xm_to_xml, xml_to_xm
from .yaml.yaml_storage import POOL_KEYS
from .yaml.yaml_volume import VOLUME_KEYS, runtime_attrs, runtime_keys
from .yaml.yamlstrict import DuplicateKey, StrictLoader

__all__ = ["FORMATS", "Conversion", "convert"]

_XEN = ("xm", "xl")


def convert(text: str, *, src: str, dst: str, source: str) -> Conversion:
    """Convert `text` from format `src` to format `dst`; warnings name what was lost."""
    for role, fmt in (("--from", src), ("--to", dst)):
        if fmt not in FORMATS:
            raise _error(f"unknown format {fmt!r} for {role} (expected {', '.join(FORMATS)})",
                         source, code=ErrorCode.INVALID_SPEC)
    root, warnings = _to_tree(text, src=src, source=source)
    if dst in _XEN:
        if root.tag != "domain":
            raise _error(f"only domains convert to {dst}; this is a <{root.tag}>", source,
                         code=ErrorCode.INVALID_SPEC)
        out = xml_to_xm(tostring(root), flavor=dst, source=source)
        return Conversion(out.text, (*warnings, *out.warnings))
    if dst == "yaml":
        return Conversion(_dump_yaml(root), warnings)
    return Conversion(tostring(root), warnings)


def _to_tree(text: str, *, src: str, source: str) -> tuple[etree._Element, tuple[str, ...]]:
    if src in _XEN:
        result = xm_to_xml(text, source=source, flavor=src)
        return parse(result.text, source=source), result.warnings
    if src == "xml":
        return parse(text, source=source), ()
    return _yaml_to_tree(text, source), ()


def _yaml_to_tree(text: str, source: str) -> etree._Element:
    try:
        doc = yaml.load(text, Loader=StrictLoader)
    except DuplicateKey as exc:
        raise _error(str(exc.problem), source, line=exc.problem_mark.line + 1) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise _error(f"malformed YAML: {exc}", source, line=line) from None
    # Nothing is defined here: only what libxml2 cannot parse back is refused.
    for path, size in long_text(doc, limit=MAX_TEXT_BYTES):
        raise SpecError(text_too_long(size, limit=MAX_TEXT_BYTES), code=ErrorCode.INVALID_SPEC,
                        domain=ErrorDomain.CONVERTER,
                        source=Source(source, _long_scalar_line(text), path))
    if not isinstance(doc, Mapping):
        raise _error("a YAML spec must be a mapping", source, code=ErrorCode.INVALID_SPEC)
    if doc.get("kind") == "Network":
        return yamlxml.network_to_xml(doc)
    if doc.get("kind") in ("StoragePool", "Volume"):
        # A volume's pool is not in libvirt's XML: keep the runtime keys in the runtime
        # element, as an XML spec file holds them, so the conversion loses nothing.
        tag = "pool" if doc["kind"] == "StoragePool" else "volume"
        root = yamlxml.pool_to_xml(doc) if tag == "pool" else yamlxml.volume_to_xml(doc)
        metadata.set_runtime(root, runtime_attrs(tag, doc))
        return root
    return yamlxml.domain_to_xml(doc)


def _dump_yaml(root: etree._Element) -> str:
    doc: dict[str, Any]
    if root.tag == "network":
        doc = yamlxml.network_from_xml(root)
    elif root.tag == "domain":
        doc = yamlxml.domain_from_xml(root)
    elif root.tag in ("pool", "volume"):
        runtime = runtime_keys(str(root.tag), metadata.pop_runtime(root))
        doc = (yamlxml.pool_from_xml if root.tag == "pool" else yamlxml.volume_from_xml)(root)
        order = POOL_KEYS if root.tag == "pool" else VOLUME_KEYS
        doc = {key: {**doc, **runtime}[key] for key in order if key in doc or key in runtime}
    else:
        raise _error(f"<{root.tag}> is not a domain, network, storage pool or volume",
                     "<xml>", code=ErrorCode.INVALID_SPEC)
    return str(yaml.safe_dump(doc, sort_keys=False))


def _long_scalar_line(text: str) -> int | None:
    """The line of the first YAML scalar too long for XML (long_text found one)."""
    stack = [yaml.compose(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            if len(node.value.encode()) > MAX_TEXT_BYTES:
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(v for pair in reversed(node.value) for v in reversed(pair))
    return None


def _error(message: str, source: str, *, line: int | None = None,
           code: ErrorCode = ErrorCode.PARSE_ERROR) -> SpecError:
    return SpecError(message, code=code, domain=ErrorDomain.CONVERTER,
                     source=Source(source, line))
