"""Safe XML parsing and serialisation shared by every module that reads libvirt XML.

Spec files come from users and live XML from hypervisors, so the parser never expands
entities, never loads a DTD and never touches the network (billion-laughs and XXE are
refused, not evaluated). Pure: no file or network access except `parse_file`'s read.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from lxml import etree

from .errors import ErrorCode, ErrorDomain, Source, SpecError

#: virtctl's own XML namespace, used inside libvirt `<metadata>` (see virtctl.metadata).
NS = "https://virtctl.dev/xmlns/1"
NS_PREFIX = "virtctl"
#: virtctl's note on a *running* guest (its live metadata only, never the definition):
#: devices asked to go that the guest has not released. A namespace of its own, because
#: libvirt keeps one metadata element per namespace and the owner mark uses NS.
LIVE_NS = NS + "/live"
LIVE_NS_PREFIX = "virtctl-live"

_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "remove_blank_text": True,
}
_PARSER = etree.XMLParser(**_OPTIONS)  # type: ignore[arg-type]
# One parser per thread: an lxml parser serialises the threads that share it (a lock
# held while it parses, with the GIL released), and a watcher runs a thread per host: a
# fleet member's 333 host threads spent most of their CPU queueing on the one parser.
_LOCAL = threading.local()


def _parser() -> etree.XMLParser:
    if threading.current_thread() is threading.main_thread():
        return _PARSER
    found = getattr(_LOCAL, "parser", None)
    if found is None:
        found = _LOCAL.parser = etree.XMLParser(**_OPTIONS)  # type: ignore[arg-type]
    return found


def _refuse_doctype(root: etree._Element, source: str) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise SpecError(
            "DOCTYPE declarations are not allowed in libvirt XML",
            code=ErrorCode.PARSE_ERROR,
            source=Source(source, 1),
        )


# The counters of `counting_parses` blocks open now; empty (one check per parse) unless a
# test or a benchmark counts.
_COUNTING: list[Counter[str]] = []


@contextlib.contextmanager
def counting_parses() -> Iterator[Counter[str]]:
    """Within the block, count the documents `parse` reads, by their text: a document is
    parsed once per run and its tree carried (reconciler/trees.py); the tests hold the
    plan path to that."""
    counter: Counter[str] = Counter()
    _COUNTING.append(counter)
    try:
        yield counter
    finally:
        _COUNTING.remove(counter)


def parse(text: str | bytes, *, source: str = "<xml>") -> etree._Element:
    """Parse XML text into an element, refusing DTDs and entities.

    Errors name `source` and the line lxml reports.
    """
    if _COUNTING:
        for counter in _COUNTING:
            counter[text if isinstance(text, str) else text.decode("utf-8", "replace")] += 1
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        msg = exc.msg if hasattr(exc, "msg") and exc.msg else str(exc)
        msg = " ".join(msg.split())  # one line: libxml2 ends some messages with "\n"
        if "XML_PARSE_HUGE" in msg or "Resource limit exceeded" in msg:
            # libvirt parses without XML_PARSE_HUGE too: say what is too big, in words.
            msg = ("a text or attribute value too long (libvirt's XML parser takes at most "
                   "10,000,000 bytes in one)")
        raise SpecError(
            f"malformed XML: {msg}",
            code=ErrorCode.PARSE_ERROR,
            domain=ErrorDomain.SPEC,
            source=Source(source, line),
        ) from None
    if root is None:
        raise SpecError("empty XML document", code=ErrorCode.PARSE_ERROR, source=Source(source))
    _refuse_doctype(root, source)
    return root


def parse_file(path: str | Path) -> etree._Element:
    return parse(Path(path).read_bytes(), source=str(path))


def tostring(elem: etree._Element, *, pretty: bool = True) -> str:
    """Serialise an element as libvirt does: no XML declaration, 2-space indent."""
    if pretty:
        elem = _copy_for_indent(elem)
        etree.indent(elem, space="  ")
    text = str(etree.tostring(elem, encoding="unicode"))
    return text + "\n" if pretty else text


def _copy_for_indent(elem: etree._Element) -> etree._Element:
    # etree.indent mutates in place; callers keep their tree unchanged.
    import copy

    return copy.deepcopy(elem)


def text_of(elem: etree._Element | None) -> str | None:
    if elem is None:
        return None
    return (elem.text or "").strip()


def first_children(root: etree._Element, *tags: str) -> dict[str, etree._Element]:
    """The first child element of `root` with each of `tags` (as `find(tag)` would give;
    tags not there are left out), in one pass over the children: a `find` per tag walks
    them again and looks its path up each time, which shows when planning many objects."""
    found: dict[str, etree._Element] = {}
    for child in root:
        tag = child.tag
        if tag in tags and tag not in found:
            found[tag] = child
    return found


def set_uuid(
    root: etree._Element, value: str, *, found: Mapping[str, etree._Element] | None = None
) -> None:
    """Set a definition's <uuid>, creating it right after <name> where libvirt puts it.
    `found` is `first_children(root, "uuid", "name")`, when the caller has it already."""
    if found is None:
        found = first_children(root, "uuid", "name")
    elem = found.get("uuid")
    if elem is None:
        elem = etree.SubElement(root, "uuid")  # made in root's document, then placed
        name = found.get("name")
        if name is not None:
            name.addnext(elem)
        else:
            root.insert(0, elem)
    elem.text = value
