"""Live changes of the `sim` hypervisor: hot-plug, media change, vcpus, network entries.

Pure functions over lxml elements, each changing one definition in place (sim.py applies
them to the running definition, the persistent one or both) and raising `LiveError`,
which the driver turns into a DriverError. They follow libvirt with its QEMU driver:

* a device is known by its identity: a disk by its target dev, an interface by its MAC
  (lower case), anything else by its alias name, else by its type (graphics, ...);
* live attach and detach of a disk only on the buses QEMU hot-plugs (virtio, scsi, usb,
  xen): IDE, SATA, floppy... are refused ("disk bus 'ide' cannot be hotplugged.");
* `update` changes a CD-ROM's or floppy's medium, an interface's link state and
  bandwidth, a graphics password (passwd, passwdValidTo, connected), nothing else;
* networks: simnetlive.py.
"""

from __future__ import annotations

import copy
from lxml import etree

from ...errors import ErrorCode
from ...xmlutil import LIVE_NS, LIVE_NS_PREFIX

HOTPLUG_DISK_BUSES = frozenset({"virtio", "scsi", "usb", "xen"})
# What QEMU plugs into a running guest (qemuDomainAttachDeviceLive); the rest is refused.
_HOTPLUG_TAGS = frozenset({
    "disk", "interface", "hostdev", "controller", "input", "rng", "redirdev", "serial",
    "channel", "console", "watchdog", "memory", "shmem", "vsock", "filesystem", "lease",
})
_BUS_BY_PREFIX = (("xvd", "xen"), ("vd", "virtio"), ("sd", "scsi"), ("hd", "ide"),
                  ("fd", "fdc"), ("ubd", "uml"))
_VOLATILE = ("alias", "address")  # the hypervisor's, never part of a change


class LiveError(Exception):
    """A live change the hypervisor refuses: `code` says how (virtctl.errors.ErrorCode)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.OPERATION_INVALID) -> None:
        super().__init__(message)
        self.message, self.code = message, code


# -- devices --------------------------------------------------------------------------


def identity(device: etree._Element) -> str:
    """'disk vdb', 'interface 52:54:00:..', 'graphics vnc': what a device is known by."""
    tag = str(device.tag)
    if tag == "disk":
        target = device.find("target")
        dev = target.get("dev") if target is not None else None
        if not dev:
            raise LiveError("disk has no <target dev=...>", ErrorCode.INVALID_SPEC)
        return f"disk {dev}"
    if tag == "interface":
        mac = device.find("mac")
        if mac is not None and mac.get("address"):
            return f"interface {(mac.get('address') or '').lower()}"
    alias = device.find("alias")
    if alias is not None and alias.get("name"):
        return f"{tag} alias {alias.get('name')}"
    return f"{tag} {device.get('type') or device.get('model') or ''}".strip()


def find_device(root: etree._Element, device: etree._Element) -> etree._Element | None:
    """The device of `root` with the identity of `device`."""
    wanted = identity(device)
    for candidate in root.iterfind(f"devices/{device.tag}"):
        if device.tag == "interface" and device.find("mac") is None:
            break  # an interface without a MAC matches none
        if identity(candidate) == wanted or _same_alias(candidate, device):
            return candidate
    return None


def _same_alias(a: etree._Element, b: etree._Element) -> bool:
    alias_a, alias_b = a.find("alias"), b.find("alias")
    return (alias_a is not None and alias_b is not None
            and bool(alias_a.get("name")) and alias_a.get("name") == alias_b.get("name"))


def _disk_bus(disk: etree._Element) -> str:
    target = disk.find("target")
    bus = target.get("bus") if target is not None else None
    if bus:
        return bus
    dev = (target.get("dev") or "") if target is not None else ""
    return next((b for prefix, b in _BUS_BY_PREFIX if dev.startswith(prefix)), "ide")


def _check_pluggable(device: etree._Element, verb: str) -> None:
    tag = str(device.tag)
    if tag not in _HOTPLUG_TAGS:
        raise LiveError(f"live {verb} of device '{tag}' is not supported", ErrorCode.UNSUPPORTED)
    if tag == "disk":
        bus = _disk_bus(device)
        if bus not in HOTPLUG_DISK_BUSES:
            word = "hotplugged" if verb == "attach" else "hot unplugged"
            raise LiveError(f"disk bus '{bus}' cannot be {word}.", ErrorCode.UNSUPPORTED)


def _devices(root: etree._Element) -> etree._Element:
    devices = root.find("devices")
    return devices if devices is not None else etree.SubElement(root, "devices")


def _place(parent: etree._Element, elem: etree._Element) -> None:
    """Append `elem` after the last child with its tag (libvirt keeps devices grouped)."""
    same = parent.findall(str(elem.tag))
    if same:
        same[-1].addnext(elem)
    else:
        parent.append(elem)


def attach(root: etree._Element, device: etree._Element, *, live: bool) -> None:
    """Add a copy of `device` (with its MAC filled in already, see sim.py); refused when
    its identity exists or, live, when it cannot be hot-plugged."""
    if live:
        _check_pluggable(device, "attach")
    if find_device(root, device) is not None:
        what = identity(device)
        if device.tag == "disk":
            raise LiveError(f"target {what.split()[1]} already exists")
        raise LiveError(f"{what} already exists")
    _place(_devices(root), copy.deepcopy(device))


def detach(root: etree._Element, device: etree._Element, *, live: bool,
           release: bool = True) -> etree._Element:
    """Remove the device with the identity of `device` and return it; `release=False`
    checks everything but leaves it in place (a guest that does not let go)."""
    found = find_device(root, device)
    if found is None:
        raise LiveError(f"{identity(device)} not found", ErrorCode.OPERATION_FAILED)
    if live:
        _check_pluggable(found, "detach")
    if release:
        parent = found.getparent()
        assert parent is not None
        parent.remove(found)
    return found


def same(a: etree._Element | None, b: etree._Element | None) -> bool:
    """Equal elements: tag, attributes, text and children in order (whitespace aside)."""
    if a is None or b is None:
        return a is b
    return (a.tag == b.tag and dict(a.attrib) == dict(b.attrib)
            and (a.text or "").strip() == (b.text or "").strip()
            and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True)))


def _replace_children(old: etree._Element, new: etree._Element, tags: tuple[str, ...]) -> None:
    for tag in tags:
        for elem in old.findall(tag):
            old.remove(elem)
        for elem in new.findall(tag):
            _place(old, copy.deepcopy(elem))


def _unchanged_children(old: etree._Element, new: etree._Element,
                        skip: tuple[str, ...]) -> str | None:
    """The first child tag `new` declares differently from `old` (others not compared)."""
    for child in new:
        tag = str(child.tag)
        if tag in skip or tag in _VOLATILE:
            continue
        mine = old.findall(tag)
        theirs = new.findall(tag)
        if len(mine) != len(theirs) or not all(
                same(x, y) for x, y in zip(mine, theirs, strict=True)):
            return tag
    return None


def update(root: etree._Element, device: etree._Element) -> None:
    """Change a device in place where the hypervisor can (see the module doc)."""
    old = find_device(root, device)
    if old is None:
        raise LiveError(f"{identity(device)} not found", ErrorCode.OPERATION_FAILED)
    tag = str(device.tag)
    if tag == "disk":
        _update_disk(old, device)
    elif tag == "interface":
        if device.get("type") != old.get("type"):
            raise LiveError("changing the network device type is not supported live",
                            ErrorCode.UNSUPPORTED)
        field = _unchanged_children(old, device, ("link", "bandwidth", "mac", "target"))
        if field is not None:
            raise LiveError(f"cannot modify network device {field} setting",
                            ErrorCode.UNSUPPORTED)
        _replace_children(old, device, ("link", "bandwidth"))
    elif tag == "graphics":
        changeable = {"passwd", "passwdValidTo", "connected"}
        fixed = {k for k in set(old.attrib) | set(device.attrib) if k not in changeable
                 and old.get(k) != device.get(k)}
        if fixed or _unchanged_children(old, device, ()):
            what = sorted(fixed)[0] if fixed else "listen"
            raise LiveError(f"cannot change {what} settings of the graphics device",
                            ErrorCode.UNSUPPORTED)
        for key in sorted(changeable):
            if device.get(key) is None:
                old.attrib.pop(key, None)
            else:
                old.set(key, device.get(key) or "")
    else:
        raise LiveError(f"live update of device '{tag}' is not supported",
                        ErrorCode.UNSUPPORTED)


def _update_disk(old: etree._Element, new: etree._Element) -> None:
    removable = old.get("device") in ("cdrom", "floppy")
    if new.get("device", "disk") != old.get("device", "disk"):
        raise LiveError("cannot modify field 'device' of the disk", ErrorCode.UNSUPPORTED)
    field = _unchanged_children(old, new, ("source", "target", "readonly", "backingStore"))
    target_old, target_new = old.find("target"), new.find("target")
    if field is None and target_new is not None and target_old is not None \
            and target_new.get("bus") not in (None, target_old.get("bus")):
        field = "target bus"
    if field is not None:
        raise LiveError(f"cannot modify field '{field}' of the disk", ErrorCode.UNSUPPORTED)
    if not same(old.find("source"), new.find("source")):
        if not removable:
            raise LiveError("disk source can be changed only in removable media",
                            ErrorCode.UNSUPPORTED)
        if new.get("type"):
            old.set("type", new.get("type") or "file")
        _replace_children(old, new, ("source",))


def set_vcpus(root: etree._Element, count: int) -> None:
    """`<vcpu current=count>`, within the maximum (current= dropped at the maximum)."""
    vcpu = root.find("vcpu")
    maximum = int((vcpu.text or "1").strip()) if vcpu is not None else 1
    if count < 1:
        raise LiveError(f"invalid vcpu count {count}", ErrorCode.INVALID_SPEC)
    if count > maximum:
        raise LiveError("requested vcpus is greater than max allowable vcpus for the "
                        f"domain: {count} > {maximum}", ErrorCode.INVALID_SPEC)
    if vcpu is None:
        return
    if count == maximum:
        vcpu.attrib.pop("current", None)
    else:
        vcpu.set("current", str(count))


def set_note(root: etree._Element, note: etree._Element | None) -> None:
    """Put (replace) or remove (None) virtctl's LIVE_NS element in `<metadata>`; its
    elements without a namespace are put into LIVE_NS, as libvirt's setMetadata does."""
    metadata = root.find("metadata")
    if metadata is not None:
        for elem in [e for e in metadata if etree.QName(e).namespace == LIVE_NS]:
            metadata.remove(elem)
    if note is not None:
        if metadata is None:
            metadata = etree.Element("metadata")
            anchor = next((root.find(t) for t in ("description", "title", "uuid", "name")
                           if root.find(t) is not None), None)
            if anchor is not None:
                anchor.addnext(metadata)
            else:
                root.insert(0, metadata)
        fresh = etree.SubElement(metadata, f"{{{LIVE_NS}}}{etree.QName(note).localname}",
                                 nsmap={LIVE_NS_PREFIX: LIVE_NS})
        _copy_into_ns(note, fresh)
    elif metadata is not None and not len(metadata):
        root.remove(metadata)


def _copy_into_ns(src: etree._Element, dst: etree._Element) -> None:
    dst.attrib.update(src.attrib)
    dst.text = src.text
    for child in src:
        if not isinstance(child.tag, str):
            continue
        qname = etree.QName(child)
        ns = qname.namespace or LIVE_NS
        _copy_into_ns(child, etree.SubElement(dst, f"{{{ns}}}{qname.localname}"))


def with_mac(device: etree._Element, root: etree._Element, suffix: str) -> etree._Element:
    """An interface given a MAC when it has none (Xen's OUI for xen guests, else QEMU's),
    its MAC in lower case, as define does; other devices as they are."""
    if device.tag != "interface":
        return device
    device = copy.deepcopy(device)
    mac = device.find("mac")
    if mac is None:
        prefix = "00:16:3e" if root.get("type") == "xen" else "52:54:00"
        mac = etree.Element("mac", address=f"{prefix}:{suffix}")
        device.insert(0, mac)
    mac.set("address", (mac.get("address") or "").lower())
    return device
