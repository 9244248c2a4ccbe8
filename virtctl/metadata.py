"""virtctl's elements inside libvirt `<metadata>`, in namespace `https://virtctl.dev/xmlns/1`.

Two elements, never both in one object:

- `<virtctl:runtime state="running|shutoff|paused" autostart="yes|no" active="yes|no"/>`
  appears in XML *spec files*: the runtime state XML cannot otherwise express. The loader
  reads it and removes it from the declared definition.
- `<virtctl:owner spec-hash="..." source="..." commit="..."/>` is what virtctl writes into
  every object it defines: the ownership mark (present means managed) and where the
  definition came from.

Pure functions over lxml elements.
"""

from __future__ import annotations

from lxml import etree

from .model import Ownership
from .xmlutil import NS, NS_PREFIX

OWNER = f"{{{NS}}}owner"
RUNTIME = f"{{{NS}}}runtime"
_NSMAP = {NS_PREFIX: NS}


def _metadata(root: etree._Element, *, create: bool) -> etree._Element | None:
    meta = root.find("metadata")
    if meta is None and create:
        meta = etree.Element("metadata")
        # libvirt puts <metadata> right after name/uuid/title/description; keep that order.
        anchor = None
        for tag in ("name", "uuid", "title", "description"):
            found = root.find(tag)
            if found is not None:
                anchor = found
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
    )


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
