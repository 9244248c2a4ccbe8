"""`virtctl export`: spec files for the objects a host has, as a user would write them.

Called by the CLI's export verb (and usable from Python): `export_specs(live, ...)` turns
a snapshot into one spec document per object; `stdout_text` joins them for printing and
`write_specs` writes one file each. Everything but `write_specs` is pure.

An exported spec is the live definition minus what the host made up on its own:
virtctl's marks, the running id, aliases, addresses libvirt assigned, the controllers a
QEMU machine always gets, dynamic security labels and what only a running guest shows
(pty paths, auto VNC ports, vnetN targets). Identity (uuid, MACs) and everything else
stay. The live runtime state becomes the desired one. Applying the result with
`apply --adopt` on the same host therefore only marks objects as managed. Storage pools
and volumes, given the host's storage, are exported by export_storage.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from . import export_storage
from .. import metadata
from ..converters.yaml.yamlxml import domain_from_xml, network_from_xml
from ..errors import ErrorCode, ErrorDomain, SpecError, VirtctlError
from ..fileio import write_atomic
from ..model import DomainState, Kind, Live, LiveDomain, LiveNetwork, ObjectKey, Storage
from ..reconciler.plan.plan_storage import view
from ..xmlutil import NS, NS_PREFIX, parse, tostring

API_VERSION = "virtctl/v1"


class ExportFormat(StrEnum):
    YAML = "yaml"
    XML = "xml"


@dataclass(frozen=True, slots=True)
class ExportedSpec:
    key: ObjectKey
    fmt: ExportFormat
    text: str

    @property
    def filename(self) -> str:
        """`domain-NAME.yaml`, `pool-NAME.yaml`, `volume-POOL--NAME.yaml`."""
        return f"{self.key.kind}-{self.key.name.replace('/', '--')}.{self.fmt}"


def export_specs(
    live: Live, *, fmt: ExportFormat = ExportFormat.YAML, managed_only: bool = False,
    storage: Storage | None = None, storage_keys: frozenset[ObjectKey] | None = None,
) -> tuple[ExportedSpec, ...]:
    """One spec per object of `live` (and of `storage`, when given): pools, volumes,
    networks, domains, each kind sorted by name. `storage_keys`: only these pools and
    volumes (a selector's choice; their records are still read from every pool)."""
    out: list[ExportedSpec] = []
    if storage is not None:
        found = view(storage)
        xml = fmt is ExportFormat.XML
        for pool in export_storage.exported_pools(found, managed_only=managed_only):
            if storage_keys is None or pool.key in storage_keys:
                out.append(ExportedSpec(pool.key, fmt,
                                        export_storage.pool_text(pool, xml=xml)))
        for volume in export_storage.exported_volumes(found, live, managed_only=managed_only):
            if storage_keys is not None and volume.key not in storage_keys:
                continue
            out.append(ExportedSpec(volume.key, fmt,
                                    export_storage.volume_text(volume, found, xml=xml)))
    for net in sorted(live.networks.values(), key=lambda n: n.name):
        if net.managed or not managed_only:
            out.append(ExportedSpec(net.key, fmt, _network_text(net, fmt)))
    for dom in sorted(live.domains.values(), key=lambda d: d.name):
        if dom.managed or not managed_only:
            out.append(ExportedSpec(dom.key, fmt, _domain_text(dom, fmt)))
    return tuple(out)


def stdout_text(specs: Sequence[ExportedSpec], *, fmt: ExportFormat) -> str:
    """YAML: one multi-document stream. XML has no multi-document form, so exactly one
    object may go to stdout; more need `--to DIR`."""
    if fmt is ExportFormat.XML and len(specs) != 1:
        raise SpecError(
            f"-o xml prints exactly one object to stdout, and there are {len(specs)}; "
            "use --to DIR (one file per object) or -o yaml", domain=ErrorDomain.CLI)
    return "---\n".join(s.text for s in specs)


def write_specs(folder: Path, specs: Iterable[ExportedSpec]) -> list[Path]:
    """Write each spec to `folder/<kind>-<name>.<fmt>` (replacing a file of that name,
    atomically); other files in `folder` are left alone. Every file name is checked
    before the first is written. The only I/O in this module."""
    specs = list(specs)
    names: dict[str, ObjectKey] = {}
    for spec in specs:
        parts = spec.key.name.split("/")
        if len(parts) > (2 if spec.key.kind is Kind.VOLUME else 1) or any(
                p in ("", ".", "..") for p in parts):
            raise SpecError(f"cannot name a file after {spec.key}", domain=ErrorDomain.CLI)
        other = names.setdefault(spec.filename, spec.key)
        if other != spec.key:  # volume-a--b--c: pool a, volume b--c or pool a--b, volume c
            raise SpecError(f"{other} and {spec.key} would both be written to "
                            f"{spec.filename}; export to stdout (-o yaml) instead",
                            domain=ErrorDomain.CLI)
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            target = folder / spec.filename
            write_atomic(target, spec.text.encode("utf-8"))
            written.append(target)
    except OSError as exc:  # a full disk, a directory at a file's name: one line naming it
        raise VirtctlError(f"{exc.filename or folder}: cannot write: {exc.strerror or exc}",
                           code=ErrorCode.OPERATION_FAILED, domain=ErrorDomain.CLI) from None
    return written


# -- one object -----------------------------------------------------------------------------


def desired_state(state: DomainState) -> DomainState:
    """The state to declare for a guest found in `state`: what it is doing, as a spec
    can say it (a crashed guest is declared off rather than restarted behind your back)."""
    if state is DomainState.PAUSED:
        return DomainState.PAUSED
    return DomainState.RUNNING if state.active else DomainState.SHUTOFF


def _domain_text(dom: LiveDomain, fmt: ExportFormat) -> str:
    root = parse(dom.xml, source=str(dom.key))
    clean_domain(root)
    state = desired_state(dom.state)
    if fmt is ExportFormat.XML:
        _set_runtime(root, state=str(state), autostart=_yesno(dom.autostart))
        return tostring(root)
    doc = _as_yaml(domain_from_xml, root, dom.key)
    return _dump(doc, {"state": str(state), "autostart": dom.autostart})


def _network_text(net: LiveNetwork, fmt: ExportFormat) -> str:
    root = parse(net.xml, source=str(net.key))
    clean_network(root)
    if fmt is ExportFormat.XML:
        _set_runtime(root, active=_yesno(net.active), autostart=_yesno(net.autostart))
        return tostring(root)
    doc = _as_yaml(network_from_xml, root, net.key)
    return _dump(doc, {"active": net.active, "autostart": net.autostart})


def _as_yaml(
    convert: Callable[[etree._Element], dict[str, Any]], root: etree._Element, key: ObjectKey
) -> dict[str, Any]:
    try:
        return convert(root)
    except SpecError as exc:
        raise SpecError(f"{key} cannot be written as YAML ({exc.message}); export it with "
                        "-o xml", code=exc.code, domain=ErrorDomain.CONVERTER) from None


def _dump(doc: dict[str, Any], runtime: dict[str, Any]) -> str:
    """kind, apiVersion, name, [type], uuid, runtime keys, then the definition."""
    head = ("kind", "name", "type", "uuid")
    ordered: dict[str, Any] = {"kind": doc["kind"], "apiVersion": API_VERSION}
    ordered.update((k, doc[k]) for k in head[1:] if k in doc)
    ordered.update(runtime)
    ordered.update((k, v) for k, v in doc.items() if k not in head)
    return str(yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True))


def _yesno(flag: bool) -> str:
    return "yes" if flag else "no"


def _set_runtime(root: etree._Element, **attrs: str) -> None:
    """Add `<virtctl:runtime .../>` to <metadata>, where libvirt would put <metadata>."""
    meta = root.find("metadata")
    if meta is None:
        meta = etree.Element("metadata")
        anchors = [e for tag in ("name", "uuid", "title", "description")
                   if (e := root.find(tag)) is not None]
        if anchors:
            anchors[-1].addnext(meta)
        else:
            root.insert(0, meta)
    elem = etree.SubElement(meta, metadata.RUNTIME, nsmap={NS_PREFIX: NS})
    for key, value in attrs.items():
        elem.set(key, value)


# -- what the host made up ------------------------------------------------------------------

#: Address types libvirt assigns by itself when a device has none.
AUTO_ADDRESSES = frozenset({"pci", "drive", "virtio-serial", "usb", "ccid", "ccw",
                            "spapr-vio", "virtio-mmio", "isa"})
#: Controllers a QEMU machine family always gets: (type, model or None).
BUILTIN_CONTROLLERS = {
    "i440fx": frozenset({("usb", "piix3-uhci"), ("pci", "pci-root"), ("ide", None)}),
    "q35": frozenset({("usb", "qemu-xhci"), ("pci", "pcie-root"), ("sata", None)}),
}
#: Prefixes of tap/macvtap names libvirt generates (and refuses from users).
AUTO_TARGETS = ("vnet", "vif", "macvtap", "macvlan")
_CHARDEVS = ("serial", "console", "parallel", "channel")


def clean_domain(root: etree._Element) -> None:
    """Strip what libvirt or virtctl added to a domain definition, in place."""
    metadata.strip_virtctl(root)
    root.attrib.pop("id", None)
    devices = root.find("devices")
    if devices is not None:
        _strip_device_noise(devices)
        _drop_builtin_controllers(root, devices)
        _drop_running_chardev_state(devices)
        _drop_auto_targets(devices)
        _drop_auto_ports(devices)
    for label in root.findall("seclabel"):
        if label.get("type") == "dynamic" and label.find("baselabel") is None:
            root.remove(label)  # generated per start; a user's static label stays
    resource = root.find("resource")
    if resource is not None and _only_default_partition(resource):
        root.remove(resource)


def clean_network(root: etree._Element) -> None:
    """Strip virtctl's marks and libvirt's live connection counts, in place."""
    metadata.strip_virtctl(root)
    for elem in root.iter():
        elem.attrib.pop("connections", None)


def _strip_device_noise(devices: etree._Element) -> None:
    for device in devices:
        for child in device.findall("alias"):
            device.remove(child)
        # Only a device's own <address>: one inside <source> names host hardware.
        for child in device.findall("address"):
            if child.get("type") in AUTO_ADDRESSES:
                device.remove(child)


def _machine_family(root: etree._Element) -> str | None:
    if root.get("type") not in ("qemu", "kvm"):
        return None
    os_type = root.find("os/type")
    name = os_type.get("machine", "") if os_type is not None else ""
    if name == "q35" or name.startswith("pc-q35"):
        return "q35"
    if name == "pc" or name.startswith(("pc-i440fx", "pc-0.", "pc-1.")):
        return "i440fx"
    return None


def _drop_builtin_controllers(root: etree._Element, devices: etree._Element) -> None:
    family = _machine_family(root)
    builtin = BUILTIN_CONTROLLERS.get(family or "", frozenset())
    needs_serial = _uses_virtio_serial(devices)
    for ctl in devices.findall("controller"):
        if set(ctl.attrib) - {"type", "index", "model"} or len(ctl):
            continue  # the user set something: keep it
        if ctl.get("index", "0") != "0":
            continue
        kind, model = ctl.get("type"), ctl.get("model")
        implied = kind == "virtio-serial" and model is None and needs_serial and family
        if (kind, model) in builtin or implied:
            devices.remove(ctl)


def _uses_virtio_serial(devices: etree._Element) -> bool:
    return any(t.get("type") == "virtio" for tag in ("channel", "console")
               for t in devices.iterfind(f"{tag}/target"))


def _drop_running_chardev_state(devices: etree._Element) -> None:
    for tag in _CHARDEVS:
        for dev in devices.findall(tag):
            if dev.get("type") == "pty":
                dev.attrib.pop("tty", None)
                for source in dev.findall("source"):
                    if set(source.attrib) <= {"path"} and not len(source):
                        dev.remove(source)  # the pty the running guest was given
            for source in dev.findall("source"):
                if source.get("mode") == "bind" and "/channel/target/" in source.get(
                        "path", ""):
                    dev.remove(source)  # a socket path libvirt generated per start
            for target in dev.findall("target"):
                target.attrib.pop("state", None)  # guest agent connected or not


def _drop_auto_targets(devices: etree._Element) -> None:
    for iface in devices.findall("interface"):
        for target in iface.findall("target"):
            dev = target.get("dev", "")
            if set(target.attrib) == {"dev"} and dev.startswith(AUTO_TARGETS):
                iface.remove(target)


def _drop_auto_ports(devices: etree._Element) -> None:
    for graphics in devices.findall("graphics"):
        if graphics.get("autoport") == "yes":
            for attr in ("port", "tlsPort"):
                graphics.attrib.pop(attr, None)


def _only_default_partition(resource: etree._Element) -> bool:
    children = list(resource)
    return (len(children) == 1 and children[0].tag == "partition"
            and (children[0].text or "").strip() == "/machine" and not resource.attrib)
