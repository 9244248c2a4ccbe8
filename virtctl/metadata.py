"""virtctl's elements inside libvirt `<metadata>`, in namespace `https://virtctl.dev/xmlns/1`.

Two elements, never both in one object:

- `<virtctl:runtime state="running|shutoff|paused" autostart="yes|no" active="yes|no"
  update-policy="restart|next-boot|recreate" shutdown-timeout="SECONDS"/>` appears in XML
  *spec files*: the runtime state and update rules XML cannot otherwise express. The
  loader reads it and removes it from the declared definition.
- `<virtctl:owner spec-hash="..." source="..." commit="...">` is what virtctl writes into
  every object it defines: the ownership mark (present means managed), where the
  definition came from and, as its child
  `<virtctl:last-applied encoding="zlib+base64" state=... autostart=... active=...>`,
  what was declared: the declared XML, zlib-compressed and base64-encoded (libvirt 9.0
  keeps that text intact in domain and network metadata; markup would be re-indented
  and re-namespaced), with the declared runtime state as attributes.

Pure functions over lxml elements.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import zlib
from typing import Any

from lxml import etree

from .model import Labels, LastApplied, Ownership
from .xmlutil import NS, NS_PREFIX, first_children, parse

OWNER = f"{{{NS}}}owner"
RUNTIME = f"{{{NS}}}runtime"
LAST_APPLIED = f"{{{NS}}}last-applied"
ENCODING = "zlib+base64"
_NSMAP = {NS_PREFIX: NS}


# libvirt puts <metadata> after name, uuid, title and description: after <description> if
# the definition has one, else after <title>, else <uuid>, else <name>.
_ANCHORS = ("description", "title", "uuid", "name")


def _metadata(root: etree._Element, *, create: bool) -> etree._Element | None:
    found = first_children(root, "metadata", *_ANCHORS)
    meta = found.get("metadata")
    if meta is None and create:
        meta = etree.SubElement(root, "metadata")  # made in root's document, then placed
        anchor = next((found[tag] for tag in _ANCHORS if tag in found), None)
        if anchor is not None:
            anchor.addnext(meta)
        else:
            root.insert(0, meta)
    return meta


def read_owner(root: etree._Element) -> Ownership | None:
    meta = root.find("metadata")
    if meta is None:
        return None
    owner = meta.find(OWNER)
    if owner is None:
        return None
    return Ownership(
        spec_hash=owner.get("spec-hash", ""),
        source=owner.get("source", ""),
        commit=owner.get("commit", ""),
        last_applied=_read_last_applied(owner.find(LAST_APPLIED)),
        apply_set=owner.get("set", ""),
        labels=labels_from_text(owner.get("labels", "")),
    )


# libvirt writes each <metadata> child with its own namespace declaration, so the owner
# element can be cut out of the definition's text and parsed alone.
_OWNER_TEXT = re.compile(
    r"<(?P<p>[A-Za-z_][\w.-]*):owner\b(?P<attrs>[^>]*?)(?:/>|>(?P<body>.*?)</(?P=p):owner>)",
    re.DOTALL)
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_RECORD = r"\s*<{p}:last-applied\b(?P<attrs>[^>]*?)(?:/>|>(?P<text>[^<]*)</{p}:last-applied>)\s*"


def _attrs(text: str) -> dict[str, str]:
    out = {}
    for m in _ATTR.finditer(text):
        value = m[2] if m[2] is not None else m[3]
        out[m[1]] = html.unescape(value) if "&" in value else value
    return out


def owner_from_text(xml: str, *, source: str = "<xml>") -> Ownership | None:
    """`read_owner` of a definition given as text, without parsing it: snapshots read
    the mark of every object, and most of a definition is not the mark.

    Reads the element as virtctl writes it and libvirt stores it (its own namespace
    declaration; at most a last-applied child with text); anything else is parsed."""
    if NS not in xml:
        return None
    found = _OWNER_TEXT.search(xml)
    attrs = _attrs(found["attrs"]) if found is not None else {}
    if found is None or attrs.get(f"xmlns:{found['p']}") != NS:
        return read_owner(parse(xml, source=source))
    record: LastApplied | None = None
    body = found["body"] or ""
    if body.strip():
        child = re.fullmatch(_RECORD.format(p=re.escape(found["p"])), body)
        if child is None:
            return read_owner(parse(xml, source=source))
        rec = _attrs(child["attrs"])
        if rec.get("encoding") == ENCODING:
            record = LastApplied(
                encoded="".join(html.unescape(child["text"] or "").split()),
                state=rec.get("state", ""), autostart=_yes(rec.get("autostart")),
                active=_yes(rec.get("active")))
    return Ownership(spec_hash=attrs.get("spec-hash", ""), source=attrs.get("source", ""),
                     commit=attrs.get("commit", ""), last_applied=record,
                     apply_set=attrs.get("set", ""),
                     labels=labels_from_text(attrs.get("labels", "")))


def _yes(value: str | None) -> bool | None:
    return None if value is None else value == "yes"


def _read_last_applied(elem: etree._Element | None) -> LastApplied | None:
    if elem is None or elem.get("encoding") != ENCODING:
        return None  # a record virtctl cannot read is treated as absent
    return LastApplied(
        encoded="".join((elem.text or "").split()),
        state=elem.get("state", ""),
        autostart=_yes(elem.get("autostart")),
        active=_yes(elem.get("active")),
    )


def encode_declared(xml: str) -> str:
    return base64.b64encode(zlib.compress(xml.encode(), 9)).decode("ascii")


def declared_xml(record: LastApplied) -> str | None:
    """The declared definition a last-applied record holds; None if it is unreadable."""
    try:
        return zlib.decompress(base64.b64decode(record.encoded, validate=True)).decode()
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError):
        return None


def owner_to_dict(owner: Ownership) -> dict[str, Any]:
    """A JSON-able form of the mark (the sim's on-disk record)."""
    last = owner.last_applied
    return {
        "spec_hash": owner.spec_hash, "source": owner.source, "commit": owner.commit,
        "set": owner.apply_set,
        **({"labels": labels_to_text(owner.labels)} if owner.labels else {}),
        "last_applied": None if last is None else {
            "encoded": last.encoded, "state": last.state, "autostart": last.autostart,
            "active": last.active,
        },
    }


def owner_from_dict(data: dict[str, Any]) -> Ownership:
    last = data.get("last_applied")
    return Ownership(
        spec_hash=data.get("spec_hash", ""), source=data.get("source", ""),
        commit=data.get("commit", ""),
        last_applied=LastApplied(**last) if isinstance(last, dict) else None,
        apply_set=data.get("set", ""),
        labels=labels_from_text(str(data.get("labels", ""))),
    )


def labels_to_text(labels: Labels) -> str:
    """`role=web,team=a`: the schema allows neither ',' nor '=' in keys and values."""
    return ",".join(f"{k}={v}" for k, v in labels)


def labels_from_text(text: str) -> Labels:
    pairs = (item.partition("=") for item in text.split(",") if item)
    return tuple(sorted((k, v) for k, _, v in pairs if k))


def set_owner(root: etree._Element, owner: Ownership) -> None:
    """Mark `root` as managed by virtctl, replacing any earlier mark."""
    meta = _metadata(root, create=True)
    assert meta is not None
    for old in meta.findall(OWNER):
        meta.remove(old)
    elem = etree.SubElement(meta, OWNER, nsmap=_NSMAP)
    elem.set("spec-hash", owner.spec_hash)
    if owner.source:
        elem.set("source", owner.source)
    if owner.commit:
        elem.set("commit", owner.commit)
    if owner.apply_set:
        elem.set("set", owner.apply_set)
    if owner.labels:
        elem.set("labels", labels_to_text(owner.labels))
    last = owner.last_applied
    if last is not None:
        child = etree.SubElement(elem, LAST_APPLIED, encoding=ENCODING)
        if last.state:
            child.set("state", last.state)
        for attr, flag in (("autostart", last.autostart), ("active", last.active)):
            if flag is not None:
                child.set(attr, "yes" if flag else "no")
        child.text = last.encoded


def strip_virtctl(root: etree._Element) -> None:
    """Remove every virtctl element from <metadata> (and <metadata> if left empty)."""
    meta = root.find("metadata")
    if meta is None:
        return
    for child in list(meta):
        if isinstance(child.tag, str) and child.tag.startswith(f"{{{NS}}}"):
            meta.remove(child)
    if len(meta) == 0 and not (meta.text or "").strip():
        root.remove(meta)


def pop_runtime(root: etree._Element) -> dict[str, str]:
    """Read and remove the spec-side runtime element; returns its attributes."""
    meta = root.find("metadata")
    if meta is None:
        return {}
    found = meta.find(RUNTIME)
    if found is None:
        return {}
    attrs = {str(k): str(v) for k, v in found.attrib.items()}
    meta.remove(found)
    if len(meta) == 0 and not (meta.text or "").strip():
        root.remove(meta)
    return attrs


def set_runtime(root: etree._Element, attrs: dict[str, str]) -> None:
    """Write the spec-side runtime element (XML spec files of storage pools and volumes
    made by `virtctl convert`); nothing when `attrs` is empty."""
    if not attrs:
        return
    meta = _metadata(root, create=True)
    assert meta is not None
    for old in meta.findall(RUNTIME):
        meta.remove(old)
    elem = etree.SubElement(meta, RUNTIME, nsmap=_NSMAP)
    for key, value in attrs.items():
        elem.set(key, value)
