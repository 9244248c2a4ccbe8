"""cloud-init NoCloud seed images, rendered from a domain spec's `cloudInit:` block.

cloud-init's NoCloud datasource looks for a filesystem labelled `cidata` (or `CIDATA`)
and reads the files `user-data`, `meta-data` and, when present, `network-config` and
`vendor-data` from its root. virtctl renders them here and packs them with iso9660.py
into a CD-ROM image (volume id `cidata`, Rock Ridge and Joliet names, like
`cloud-localds` / `genisoimage -volid cidata -joliet -rock`), which is attached to the
guest. Pure: no I/O and no clock, so equal input gives byte-identical images.

Each document is a str, written as is (UTF-8), or a mapping, dumped as block YAML in the
mapping's own key order (multi-line strings as `|` blocks). A user-data or vendor-data
mapping is cloud-config: its file starts with the `#cloud-config` line.

meta-data. cloud-init runs its once-per-instance modules again only when the
`instance-id` changes, so virtctl derives one from the seed's content: "iid-" and 20 hex
digits of a SHA-256 over every file, meta-data included but without its instance-id.
Changing anything in the seed thus makes a new instance-id; an `instance_id` argument (or
an `instance-id` key of a meta-data mapping) overrides that. A `hostname` becomes
`local-hostname`. A meta-data mapping gets both added; a meta-data str is written as is,
and then `instance_id` and `hostname` must not be given (keeping its instance-id current
is the str's author's business).

The planner compares seeds through `seed_digest`: the 'sha256:HEX' checksum that a
volume's content made from `render_seed`'s bytes carries (model.VolumeContent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import yaml

from .iso9660 import make_iso

__all__ = ["VOLUME_ID", "Document", "render_seed", "seed_digest", "seed_files"]

VOLUME_ID = "cidata"
CLOUD_CONFIG = "#cloud-config\n"

Document = str | Mapping[str, Any]


def _represent_str(dumper: Any, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


# safe_dump's dumper, with multi-line strings as literal blocks (readable write_files).
# Made with type() so that mypy without PyYAML's stubs sees no subclass of Any.
_Dumper: Any = type("_Dumper", (yaml.SafeDumper,), {})
_Dumper.add_representer(str, _represent_str)


def _dump(name: str, doc: Mapping[str, Any]) -> str:
    try:
        text = yaml.dump(dict(doc), Dumper=_Dumper, sort_keys=False,
                         default_flow_style=False, allow_unicode=True, width=1 << 16)
    except yaml.YAMLError as exc:
        raise ValueError(f"cloud-init {name}: cannot be written as YAML: {exc}") from exc
    return str(text)


def _render(name: str, doc: Document, *, cloud_config: bool) -> bytes:
    if isinstance(doc, str):
        return doc.encode("utf-8")
    if isinstance(doc, Mapping):
        return ((CLOUD_CONFIG if cloud_config else "") + _dump(name, doc)).encode("utf-8")
    raise TypeError(f"cloud-init {name}: expected a str or a mapping, "
                    f"not {type(doc).__name__}")


def _meta_mapping(meta_data: Mapping[str, Any] | None, *, instance_id: str | None,
                  hostname: str | None) -> dict[str, Any]:
    """meta-data as a mapping, `instance_id` and `hostname` merged in (None: not given)."""
    meta = dict(meta_data or {})
    for key, value in (("instance-id", instance_id), ("local-hostname", hostname)):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ValueError(f"cloud-init {key} must be a non-empty string, not {value!r}")
        if meta.get(key, value) != value:
            raise ValueError(f"cloud-init meta-data {key} {meta[key]!r} contradicts "
                             f"{value!r}")
        meta[key] = value
    return meta


def _derived_instance_id(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256(b"virtctl cloud-init seed\0")
    for name in sorted(files):
        digest.update(f"{name}\0{len(files[name])}\0".encode() + files[name])
    return "iid-" + digest.hexdigest()[:20]


def seed_files(*, user_data: Document, meta_data: Document | None = None,
               network_config: Document | None = None, vendor_data: Document | None = None,
               instance_id: str | None = None,
               hostname: str | None = None) -> dict[str, bytes]:
    """The seed's files, name -> content: user-data, meta-data, and network-config and
    vendor-data when given (None leaves a file out)."""
    files = {"user-data": _render("user-data", user_data, cloud_config=True)}
    if network_config is not None:
        files["network-config"] = _render("network-config", network_config,
                                          cloud_config=False)
    if vendor_data is not None:
        files["vendor-data"] = _render("vendor-data", vendor_data, cloud_config=True)

    if isinstance(meta_data, str):
        if instance_id is not None or hostname is not None:
            raise ValueError("cloud-init meta-data given as text: put instance-id and "
                             "local-hostname in it, not in instance_id/hostname")
        files["meta-data"] = meta_data.encode("utf-8")
        return dict(sorted(files.items()))
    if meta_data is not None and not isinstance(meta_data, Mapping):
        raise TypeError(f"cloud-init meta-data: expected a str or a mapping, "
                        f"not {type(meta_data).__name__}")

    meta = _meta_mapping(meta_data, instance_id=instance_id, hostname=hostname)
    if "instance-id" not in meta:
        files["meta-data"] = _render("meta-data", meta, cloud_config=False)
        meta = {"instance-id": _derived_instance_id(files), **meta}
    files["meta-data"] = _render("meta-data", meta, cloud_config=False)
    return dict(sorted(files.items()))


def render_seed(*, user_data: Document, meta_data: Document | None = None,
                network_config: Document | None = None, vendor_data: Document | None = None,
                instance_id: str | None = None, hostname: str | None = None) -> bytes:
    """The NoCloud seed image (ISO 9660, volume id `cidata`) holding `seed_files(...)`."""
    files = seed_files(user_data=user_data, meta_data=meta_data,
                       network_config=network_config, vendor_data=vendor_data,
                       instance_id=instance_id, hostname=hostname)
    return make_iso(files, volume_id=VOLUME_ID)


def seed_digest(*, user_data: Document, meta_data: Document | None = None,
                network_config: Document | None = None, vendor_data: Document | None = None,
                instance_id: str | None = None, hostname: str | None = None) -> str:
    """'sha256:HEX' of `render_seed(...)`'s image: what model.VolumeContent(data=image)
    computes as its checksum, so the planner can compare it with what a volume holds."""
    image = render_seed(user_data=user_data, meta_data=meta_data,
                        network_config=network_config, vendor_data=vendor_data,
                        instance_id=instance_id, hostname=hostname)
    return "sha256:" + hashlib.sha256(image).hexdigest()
