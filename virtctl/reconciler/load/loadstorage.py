"""Storage specs for the loader: `<pool>` and `<volume>` definitions -> PoolSpec, VolumeSpec.

Called by load.spec_from_xml with the definition (YAML already converted) and its runtime
state: the YAML document's runtime keys, or the attributes of the XML file's
`virtctl:runtime` element (already removed from the definition). Also the checks across
the loaded storage specs: duplicate pools and volumes. Pure, except that a relative
`content.file` is made absolute against the spec file's directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Mapping, Sequence
from typing import Any

from lxml import etree

from ...converters.yaml.yaml_volume import backing_volume, runtime_keys
from ...errors import ErrorCode, Source, SpecError
from ...fileio import file_kind
from ...model import DeletePolicy, PoolSpec, VolumeContent, VolumeSpec
from ...xmlutil import tostring
from .fields import connect_of, flag, update_rules

_CHECKSUM = re.compile(r"^(sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128})$")
_URL = re.compile(r"^https?://", re.IGNORECASE)


def pool_spec(
    root: etree._Element, name: str, uuid: str | None, *, where: Source,
    runtime: Mapping[str, Any] | None, attrs: Mapping[str, str],
) -> PoolSpec:
    rt_source = Source(where.file, where.line, "metadata/virtctl:runtime")
    if not root.get("type"):
        raise SpecError("<pool> has no type attribute (dir, fs, netfs, logical, ...)",
                        source=Source(where.file, where.line))
    if runtime is not None:
        active = bool(runtime.get("active", True))
        autostart = bool(runtime.get("autostart", False))
        build = bool(runtime.get("build", True))
    else:
        active = flag(attrs, "active", True, rt_source)
        autostart = flag(attrs, "autostart", False, rt_source)
        build = flag(attrs, "build", True, rt_source)
    given = attrs if runtime is None else runtime
    policy, _ = update_rules(given, rt_source, yaml=runtime is not None)
    return PoolSpec(name=name, xml=tostring(root, pretty=False), source=where, active=active,
                    autostart=autostart, build=build, uuid=uuid, update_policy=policy,
                    connect=connect_of(given))


def volume_spec(
    root: etree._Element, name: str, *, where: Source,
    runtime: Mapping[str, Any] | None, attrs: Mapping[str, str],
) -> VolumeSpec:
    yaml = runtime is not None
    given: Mapping[str, Any] = runtime if runtime is not None else runtime_keys("volume", attrs)

    def at(yaml_path: str, xml_attr: str) -> Source:
        return Source(where.file, where.line,
                      yaml_path if yaml else f"metadata/virtctl:runtime/@{xml_attr}")

    if "/" in name:
        raise SpecError(f"a volume name cannot contain '/': {name!r}",
                        source=Source(where.file, where.line, "name"))
    pool = str(given.get("pool") or "").strip()
    if not pool or "/" in pool:
        raise SpecError("a volume needs its pool's name (no '/'): " + (
            "the pool key" if yaml else "the pool attribute of <virtctl:runtime>"),
            source=at("pool", "pool"))
    if backing_volume(root) == name:
        raise SpecError("a volume cannot be its own backing store",
                        source=Source(where.file, where.line,
                                      "backingStore.volume" if yaml else "backingStore/path"))
    content = _content(given.get("content"), where, yaml=yaml)
    _check_sizes(root, where)
    if root.find("capacity") is None and root.find("backingStore") is None and content is None:
        raise SpecError("a volume needs a capacity, unless a backingStore or its content "
                        "gives the size", source=Source(where.file, where.line, "capacity"))
    raw_policy = given.get("deletePolicy", DeletePolicy.RETAIN.value)
    try:
        policy = DeletePolicy(raw_policy)
    except ValueError:
        raise SpecError(f"deletePolicy must be retain or delete, not {raw_policy!r}",
                        source=at("deletePolicy", "delete-policy")) from None
    return VolumeSpec(
        pool=pool, name=name, xml=tostring(root, pretty=False), source=where,
        content=content, delete_policy=policy,
        connect=connect_of(given))


def _check_sizes(root: etree._Element, where: Source) -> None:
    """A volume's capacity and allocation are whole numbers of bytes (or of their unit),
    below 8 EiB: libvirt refuses "-1" and "1e309" at create, after the pool was made."""
    from ...converters.sizes import MAX_BYTES, unit_bytes

    for tag in ("capacity", "allocation"):
        elem = root.find(tag)
        if elem is None:
            continue
        text, unit = (elem.text or "").strip(), elem.get("unit") or "bytes"
        per_unit = unit_bytes(unit)
        why = None
        if not text.isascii() or not text.isdigit():
            why = f"{text!r} is not a whole number of {unit}"
        elif per_unit is None:
            why = f"unknown unit {unit!r} (use bytes, KiB, MiB, GiB, ...)"
        elif int(text) * per_unit > MAX_BYTES:
            why = f"{text} {unit} is 8 EiB or more: no host has that much"
        if why is not None:
            raise SpecError(f"invalid {tag}: {why}", code=ErrorCode.INVALID_SPEC,
                            source=Source(where.file, elem.sourceline or where.line, tag))


def _content(raw: Any, where: Source, *, yaml: bool) -> VolumeContent | None:
    if raw is None:
        return None

    def error(message: str, key: str) -> SpecError:
        path = f"content.{key}" if yaml else (
            f"metadata/virtctl:runtime/@{'checksum' if key == 'checksum' else 'content-' + key}")
        return SpecError(message, code=ErrorCode.INVALID_SPEC,
                         source=Source(where.file, where.line, path))

    file, url, checksum = raw.get("file"), raw.get("url"), raw.get("checksum")
    if (file is None) == (url is None):
        raise error("content takes a file or a url, one of them", "file")
    if url is not None and not _URL.match(url):
        raise error(f"content url must be http:// or https://, not {url!r}", "url")
    if url is not None and checksum is None:
        raise error("a content url needs a checksum (sha256:HEX or sha512:HEX)", "checksum")
    if checksum is not None and not _CHECKSUM.match(checksum):
        raise error(f"checksum must be sha256:<64 hex digits> or sha512:<128 hex digits>, "
                    f"not {checksum!r}", "checksum")
    if file is not None and not os.path.isabs(file):
        base = os.getcwd() if where.file == "<stdin>" else os.path.dirname(where.file)
        file = os.path.abspath(os.path.join(base, file))
    if file is not None:  # refused before any action, not when the upload blocks on it
        with contextlib.suppress(OSError):  # a missing file is found at upload
            mode = os.stat(file).st_mode
            if not stat.S_ISREG(mode):
                raise error(f"{file} is {file_kind(mode)}, not a regular file; refused",
                            "file")
    return VolumeContent(file=file, url=url,
                         checksum=checksum.lower() if checksum is not None else None)


def check_storage(specs: Sequence[object]) -> list[SpecError]:
    """Pools declared twice (by name or uuid), volumes declared twice ("POOL/NAME"), on
    one host (`connect:` as written; `hosts.group_by_host` compares resolved URIs)."""
    errors: list[SpecError] = []
    seen: dict[tuple[str, str, str | None], Source] = {}
    for spec in specs:
        claims: list[tuple[str, str, str]] = []
        if isinstance(spec, PoolSpec):
            claims.append(("storage pool name", spec.name, "name"))
            if spec.uuid:
                claims.append(("storage pool uuid", spec.uuid, "uuid"))
        elif isinstance(spec, VolumeSpec):
            claims.append(("volume", spec.key.name, "name"))
        else:
            continue
        for what, value, path in claims:
            first = seen.setdefault((what, value, spec.connect), spec.source)
            if first is not spec.source:
                errors.append(SpecError(
                    f"duplicate {what} {value!r} (first declared at {first})",
                    code=ErrorCode.DUPLICATE,
                    source=Source(spec.source.file, spec.source.line, path)))
    return errors


def with_volume_formats(domains: Sequence[Any], volumes: Mapping[str, VolumeSpec]) -> list[Any]:
    """Domains whose `type: volume` disks give no driver type get their volume's declared
    format: QEMU otherwise opens a qcow2 volume as raw (libvirt does not look at the
    volume), and the guest sees the image file, not the disk in it. Only for QEMU/KVM
    domains and volumes the specs declare with a format."""
    from dataclasses import replace

    from virtctl.reconciler.trees import carry, private, spec_tree

    if not any(_declared_format(v) is not None for v in volumes.values()):
        # Nothing to give (no volumes, the common case): no domain parsed. The watcher
        # asks this of every host's specs several times a pass, and parsing each
        # domain's XML here was the largest part of a fleet member's CPU.
        return list(domains)
    out = []
    for spec in domains:
        root = spec_tree(spec)  # shared: copied below before anything is set in it
        changed = False
        if root.get("type") in ("qemu", "kvm") and _wants_format(root, volumes):
            root = private(root)
            for disk in root.iterfind("devices/disk[@type='volume']"):
                source = disk.find("source")
                driver = disk.find("driver")
                if source is None or (driver is not None and driver.get("type")):
                    continue
                volume = volumes.get(f"{source.get('pool')}/{source.get('volume')}")
                fmt = _declared_format(volume) if volume is not None else None
                if fmt is None:
                    continue
                if driver is None:
                    driver = etree.Element("driver", name="qemu")
                    disk.insert(0, driver)
                driver.set("type", "raw" if fmt == "iso" else fmt)
                changed = True
        out.append(carry(replace(spec, xml=tostring(root)), root) if changed else spec)
    return out


def _wants_format(root: etree._Element, volumes: Mapping[str, VolumeSpec]) -> bool:
    """Whether a disk of `root` would be given its volume's format (see above)."""
    for disk in root.iterfind("devices/disk[@type='volume']"):
        source, driver = disk.find("source"), disk.find("driver")
        if source is not None and (driver is None or not driver.get("type")) and (
                f"{source.get('pool')}/{source.get('volume')}" in volumes):
            return True
    return False


def _declared_format(volume: VolumeSpec) -> str | None:
    from ...xmlutil import parse

    found = parse(volume.xml).find("target/format")
    return found.get("type") if found is not None else None
