"""Shared machinery of the YAML <-> libvirt XML converters.

yaml_domain and yaml_network describe each modelled element as a pair of functions
(element -> YAML fragment, fragment -> element) over small attribute tables. `try_model`
keeps a fragment only if writing it back gives the same XML; anything else stays
verbatim in the escape hatches (`extraXML`, `extraDevices`), so conversion never loses
what nobody modelled. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from lxml import etree
from lxml.etree import _Element

from ...errors import ErrorCode, ErrorDomain, Source, SpecError
from ...xmlutil import NS, parse

Element: TypeAlias = _Element
Fragment = dict[str, Any]

_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")


class Unmodelled(Exception):
    """An element does not fit the YAML model; it is kept verbatim instead."""


class Type(StrEnum):
    """How an XML attribute's text maps to a YAML value."""

    STR = "str"
    INT = "int"  # decimal integer written without leading zeros
    SCALAR = "scalar"  # int when it looks like one, else string
    YESNO = "yesno"  # yes/no <-> true/false
    ONOFF = "onoff"  # on/off <-> true/false


@dataclass(frozen=True, slots=True)
class Attr:
    xml: str
    key: str
    type: Type = Type.STR


def attr(xml: str, type_: Type = Type.STR, *, key: str | None = None) -> Attr:
    return Attr(xml, key or camel(xml), type_)


def camel(name: str) -> str:
    head, *rest = re.split(r"[_-]", name)
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def spec_error(message: str, path: str) -> SpecError:
    return SpecError(
        message,
        code=ErrorCode.INVALID_SPEC,
        domain=ErrorDomain.CONVERTER,
        source=Source(file="", path=path),
    )


def _from_text(text: str, type_: Type) -> Any:
    if type_ is Type.STR:
        return text
    if type_ in (Type.INT, Type.SCALAR) and _INT.match(text):
        return int(text)
    if type_ is Type.SCALAR:
        return text
    pairs = {Type.YESNO: ("yes", "no"), Type.ONOFF: ("on", "off")}.get(type_)
    if pairs is not None and text in pairs:
        return text == pairs[0]
    raise Unmodelled(text)


def _to_text(value: Any, type_: Type) -> str:
    if type_ is Type.YESNO:
        return "yes" if value else "no"
    if type_ is Type.ONOFF:
        return "on" if value else "off"
    return str(value)


def read_attrs(elem: Element, table: Sequence[Attr]) -> Fragment:
    """The attributes of `elem` named in `table`; any other attribute is unmodelled."""
    known = {a.xml: a for a in table}
    out: Fragment = {}
    for name, text in elem.attrib.items():
        spec = known.get(str(name))
        if spec is None:
            raise Unmodelled(str(name))
        out[spec.key] = _from_text(str(text), spec.type)
    return out


def write_attrs(elem: Element, data: Mapping[str, Any], table: Sequence[Attr]) -> Element:
    for spec in table:
        if spec.key in data:
            elem.set(spec.xml, _to_text(data[spec.key], spec.type))
    return elem


def sub(parent: Element, tag: str, text: str | None = None, **attrs: str) -> Element:
    child = etree.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def only_children(elem: Element, allowed: Iterable[str]) -> None:
    """Refuse children other than `allowed` tags (stray text is caught by try_model's
    comparison, which every exact section goes through)."""
    names = set(allowed)
    for child in elem:
        if not isinstance(child.tag, str) or child.tag not in names:
            raise Unmodelled(str(child.tag))


def leaf_attr(elem: Element, name: str) -> str:
    """The one attribute of a childless element that is nothing else (`<boot dev=/>`,
    `<interface dev=/>`, `<device path=/>`); Unmodelled when it is absent."""
    only_children(elem, ())
    value = read_attrs(elem, (attr(name),)).get(name)
    if value is None:
        raise Unmodelled(str(elem.tag))
    return str(value)


def text_only(elem: Element) -> str:
    if len(elem) or elem.attrib:
        raise Unmodelled(elem.tag)
    return elem.text or ""


def single(elem: Element, tag: str) -> Element | None:
    found = elem.findall(tag)
    if len(found) > 1:
        raise Unmodelled(tag)
    return found[0] if found else None


def canonical(elem: Element) -> bytes:
    """Bytes equal for equal XML: attribute order, indentation and the order of
    siblings with different tags ignored (libvirt's schema interleaves them; siblings
    with the same tag, such as disks or boot devices, keep their order)."""
    copy = deepcopy(elem)
    _sort_siblings(copy)
    return bytes(etree.tostring(copy, method="c14n2", strip_text=True))


def _sort_siblings(elem: Element) -> None:
    children = sorted(elem, key=lambda c: str(c.tag))
    for child in children:
        _sort_siblings(child)
        elem.append(child)


def try_model(
    elem: Element,
    read: Callable[[Element], Fragment],
    write: Callable[[Mapping[str, Any], str], Element],
) -> Fragment | None:
    """`read(elem)` if writing it back yields the same XML, else None (keep verbatim)."""
    try:
        fragment = read(elem)
        again = write(fragment, "")
    except (Unmodelled, SpecError):
        return None
    return fragment if canonical(again) == canonical(elem) else None


def verbatim(elem: Element) -> str:
    return str(etree.tostring(elem, encoding="unicode", with_tail=False))


def parse_extra(text: str, *, path: str) -> Element:
    """Parse one escape-hatch XML string; errors point at the YAML field."""
    try:
        return parse(text, source="")
    except SpecError as exc:
        raise spec_error(f"not a single XML element: {exc.message}", path) from None


def order_children(root: Element, order: Sequence[str]) -> None:
    """Sort `root`'s children into libvirt's formatting order (stable; unknown last)."""
    rank = {tag: i for i, tag in enumerate(order)}
    children = sorted(root, key=lambda c: rank.get(str(c.tag), len(order)))
    for child in children:
        root.append(child)


def read_list(
    elems: Sequence[Element],
    read: Callable[[Element], Fragment],
    write: Callable[[Mapping[str, Any], str], Element],
) -> tuple[list[Fragment], list[Element]]:
    """Model a run of same-tag elements; after the first that cannot be modelled,
    keep the rest verbatim too, so their order survives the round trip."""
    modelled: list[Fragment] = []
    for i, elem in enumerate(elems):
        fragment = try_model(elem, read, write)
        if fragment is None:
            return modelled, list(elems[i:])
        modelled.append(fragment)
    return modelled, []


@dataclass(frozen=True, slots=True)
class Section:
    """One top-level element and the YAML keys it becomes."""

    tag: str
    keys: tuple[str, ...]
    read: Callable[[Element], Fragment]
    write: Callable[[Mapping[str, Any], str], Element]
    exact: bool = True  # compare the round trip textually (False: units are normalised)


def read_sections(
    root: Element, sections: Sequence[Section], out: Fragment, *, order: Sequence[str]
) -> None:
    """Model `root`'s children into `out`; the rest, verbatim, into out["extraXML"],
    in libvirt's `order` (the order in which writing puts them back)."""
    by_tag = {s.tag: s for s in sections}
    extras: list[str] = []
    rank = {tag: i for i, tag in enumerate(order)}
    for child in sorted(root, key=lambda c: rank.get(str(c.tag), len(order))):
        section = by_tag.get(child.tag) if isinstance(child.tag, str) else None
        fragment = _model_section(child, section, out) if section else None
        if fragment is not None:
            out.update(fragment)
            continue
        kept = _without_virtctl(child)
        if kept is not None:
            extras.append(kept)
    if extras:
        out["extraXML"] = extras


def _model_section(child: Element, section: Section, out: Fragment) -> Fragment | None:
    if any(key in out for key in section.keys):
        return None  # a second <name> and the like: keep it verbatim for libvirt to judge
    if section.exact:
        return try_model(child, section.read, section.write)
    try:
        return section.read(child)
    except (Unmodelled, SpecError, ValueError):
        return None


def _without_virtctl(child: Element) -> str | None:
    """The verbatim text of `child`, minus virtctl's own <metadata> elements (the owner
    mark and the runtime element are virtctl's bookkeeping, not the definition)."""
    if child.tag != "metadata":
        return verbatim(child)
    copy = deepcopy(child)
    for own in [c for c in copy if isinstance(c.tag, str) and c.tag.startswith(f"{{{NS}}}")]:
        copy.remove(own)
    return verbatim(copy) if len(copy) or (copy.text or "").strip() else None


def append_extra_xml(root: Element, doc: Mapping[str, Any], sections: Sequence[Section]) -> None:
    """Append the `extraXML` elements, refusing any that a present key also writes."""
    by_tag = {s.tag: s for s in sections}
    for i, text in enumerate(doc.get("extraXML", ())):
        where = f"extraXML[{i}]"
        extra = parse_extra(text, path=where)
        section = by_tag.get(str(extra.tag))
        if section is not None and any(k in doc for k in section.keys):
            raise spec_error(f"<{extra.tag}> is also given as key {section.keys[0]!r}", where)
        root.append(extra)
