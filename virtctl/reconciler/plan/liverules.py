"""What a running guest or network takes live, and the one operation that applies it.

The rule table of docs/output-format.md ("What is live") lives here and nowhere else.
`domain_live` and `network_live` take the restart-class differences between what was
declared and what an object runs (classify.py) and return the live actions that apply
them, with the paths each covers; what they cannot cover stays restart-class. A change
is live only when the rule allows it *and* the host says it can do that operation
(`Reader.live_ops`); otherwise it waits for a restart, as before.

Domains:

* attach / detach a disk on a hot-pluggable bus (virtio, scsi, usb, xen), or an
  interface of a hot-pluggable model (virtio, e1000, e1000e, rtl8139, netfront, or none);
  a PCI device (virtio disks, NICs, a first SCSI controller) only on a QEMU/KVM guest
  with ACPI, which PCI hot-plug goes through;
* update a CD-ROM's or floppy's media (`source`), an interface's `link` state or
  `bandwidth`, a graphics password (`passwd`, `passwdValidTo`, `connected`);
* raise the running vcpus (`vcpu/@current`) within an unchanged maximum (lowering them
  needs a restart: see `_vcpus`);
* everything else (IDE/SATA disks, controllers, host devices, memory maximum, CPU model,
  machine type, ...) needs a restart. So does a device the guest was asked to release
  and did not: it is listed in virtctl's note on the running guest (`unreleased`); and
  a device only the running guest has that no spec change removed (hot-plugged by
  hand): it may be in use, so it is never unplugged, only dropped by a restart.

Networks (virNetworkUpdate): DHCP hosts (add, modify, delete), DHCP ranges (add, delete),
DNS hosts, TXT and SRV records (add, delete), port groups (add, modify, delete), forward
interfaces (add, delete). Anything else on an active network needs a restart.

Pure: no driver calls.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from ...model import Kind, LiveOp, NetworkCommand, NetworkSection, ObjectKey
from ...xmlutil import LIVE_NS, LIVE_NS_PREFIX, tostring
from .actions import Action, AttachDevice, DetachDevice, SetVcpus, UpdateDevice, UpdateNetwork
from .diff import ChangeOp, FieldChange, Origin, diff_xml
from .essence import child_keys

HOTPLUG_DISK_BUSES = frozenset({"virtio", "scsi", "usb", "xen"})
HOTPLUG_NIC_MODELS = frozenset({"", "virtio", "virtio-transitional", "virtio-non-transitional",
                                "e1000", "e1000e", "rtl8139", "netfront"})
# Fields of a device that `update_device` changes in place, by device kind.
_MEDIA = ("source",)
_NIC_UPDATABLE = ("link", "bandwidth")
_GRAPHICS_UPDATABLE = ("@passwd", "@passwdValidTo", "@connected")

_DEVICE = re.compile(r"^devices/(\w+)\[[^\]]*\]")


@dataclass(frozen=True, slots=True)
class LivePlan:
    """The live actions for one object, and which change paths they apply."""

    actions: tuple[Action, ...] = ()
    covered: dict[str, str] = field(default_factory=dict)  # path -> operation label


def split_path(path: str) -> list[str]:
    """'devices/filesystem[/mnt]/source' -> ['devices', 'filesystem[/mnt]', 'source']:
    slashes inside a key do not split."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(path):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "/" and depth == 0:
            parts.append(path[start:i])
            start = i + 1
    parts.append(path[start:])
    return parts


def find(root: etree._Element, path: str) -> etree._Element | None:
    """The element at an essence path (keys as diff.py writes them), or None."""
    elem: etree._Element | None = root
    for part in split_path(path):
        if elem is None or part.startswith("@"):
            return elem
        elem = dict(child_keys(elem)).get(part)
    return elem


def _device_key(path: str) -> str | None:
    found = _DEVICE.match(path)
    return found.group(0) if found else None


def _label(elem: etree._Element) -> str:
    """'disk vdb', 'interface 52:54:00:..', 'graphics vnc': a device, as people name it."""
    tag = str(elem.tag)
    if tag == "disk":
        target = elem.find("target")
        return f"disk {target.get('dev') if target is not None else '?'}"
    if tag == "interface":
        mac = elem.find("mac")
        return f"interface {mac.get('address') if mac is not None else elem.get('type')}"
    return f"{tag} {elem.get('type') or ''}".strip()


def _hot_pluggable(elem: etree._Element, running: etree._Element) -> bool:
    if elem.tag == "disk":
        target = elem.find("target")
        bus = target.get("bus") if target is not None else None
        if bus not in HOTPLUG_DISK_BUSES or elem.get("device", "disk") == "floppy":
            return False
        pci = bus == "virtio" or (bus == "scsi" and running.find(
            "devices/controller[@type='scsi']") is None)  # the controller is plugged too
    elif elem.tag == "interface":
        model = elem.find("model")
        kind = model.get("type", "") if model is not None else ""
        if kind not in HOTPLUG_NIC_MODELS:
            return False
        pci = kind != "netfront"
    else:
        return False
    return not pci or _pci_hotplug(running)


def _pci_hotplug(running: etree._Element) -> bool:
    """A QEMU/KVM guest plugs and unplugs PCI devices through ACPI: without
    `<features><acpi/>` QEMU refuses ("Bus 'pci.0' does not support hotplugging"), and
    the guest could never release one either. Xen guests have their own bus."""
    if running.get("type") not in ("qemu", "kvm"):
        return True
    acpi = running.find("features/acpi")
    return acpi is not None and acpi.get("state", "on") != "off"


def _updatable(elem: etree._Element, rest: Iterable[str]) -> bool:
    """Whether `update_device` changes these sub-paths of the device in place."""
    if elem.tag == "disk" and elem.get("device") in ("cdrom", "floppy"):
        allowed: tuple[str, ...] = _MEDIA
    elif elem.tag == "interface":
        allowed = _NIC_UPDATABLE
    elif elem.tag == "graphics":
        allowed = _GRAPHICS_UPDATABLE
    else:
        return False
    return all(split_path(r)[0] in allowed for r in rest)


def overlay(running: etree._Element, declared: etree._Element,
            removed: Iterable[str] = ()) -> etree._Element:
    """The running device with what was declared laid over it (attributes, text,
    children matched by identity), minus `removed` sub-paths: what `update_device` is
    sent, so everything the declaration leaves out keeps its running value (libvirt
    refuses an update that would change such a field)."""
    out = copy.deepcopy(running)
    _overlay(out, declared)
    for path in removed:
        parts = split_path(path)
        parent = find(out, "/".join(parts[:-1])) if len(parts) > 1 else out
        if parent is None:
            continue
        last = parts[-1]
        if last.startswith("@"):
            parent.attrib.pop(last[1:], None)
        elif (gone := dict(child_keys(parent)).get(last)) is not None:
            parent.remove(gone)
            if gone.tag == "source":  # a new medium has no backing chain of the old one
                for chain in parent.findall("backingStore"):
                    parent.remove(chain)
    return out


def _overlay(target: etree._Element, declared: etree._Element) -> None:
    for name, value in declared.attrib.items():
        target.set(name, value)
    if (declared.text or "").strip():
        target.text = declared.text
    have = dict(child_keys(target))
    for key, child in child_keys(declared):
        found = have.get(key)
        if found is None:
            target.append(copy.deepcopy(child))
        elif child.tag == "source" and target.tag == "disk":
            # A new medium replaces the old source whole (its index, its backing chain).
            target.replace(found, copy.deepcopy(child))
            for chain in target.findall("backingStore"):
                target.remove(chain)
        else:
            _overlay(found, child)


# -- the note on a running guest ---------------------------------------------------------
#
# virtctl's note lives in the running instance's live metadata (`virtctl-live`
# namespace): a restart drops it with the rest of the running definition, which is
# exactly how long what it says holds. It names, by essence path:
#   <device key=K/>   a device virtctl asked the guest to release and that it has not;
#   <pending path=P/> a field virtctl changed in the definition while the guest ran and
#                     did not apply live (--no-live, next-boot, a restart not allowed);
#   <refused path=P/> a field whose live change the host refused or the guest did not
#                     take (a hot-plug libvirt refused, a balloon that did not move): it
#                     waits for the restart and is not asked again.
# Restart-pending (classify.py) is what the note names that still differs, plus whole
# devices only one side has: never a field the hypervisor rewrote on its own.


@dataclass(frozen=True, slots=True)
class RunningNote:
    unreleased: frozenset[str] = frozenset()
    pending: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()

    @property
    def paths(self) -> frozenset[str]:
        """Every field path the note keeps restart-pending."""
        return self.pending | self.refused

    def __bool__(self) -> bool:
        return bool(self.unreleased or self.pending or self.refused)


def read_note(running: etree._Element | None) -> RunningNote:
    if running is None:
        return RunningNote()
    found: dict[str, set[str]] = {"device": set(), "pending": set(), "refused": set()}
    for note in running.iterfind(f"metadata/{{{LIVE_NS}}}*"):
        for entry in note:
            if not isinstance(entry.tag, str):
                continue
            kind = etree.QName(entry).localname
            value = entry.get("key") if kind == "device" else entry.get("path")
            if kind in found and value:
                found[kind].add(value)
    return RunningNote(frozenset(found["device"]), frozenset(found["pending"]),
                       frozenset(found["refused"]))


def note_xml(note: RunningNote) -> str | None:
    """The note's element for `set_running_note` (None when there is nothing to note).
    The element keeps its first name, `unreleased`, so older notes read the same."""
    if not note:
        return None
    root = etree.Element(f"{{{LIVE_NS}}}unreleased", nsmap={LIVE_NS_PREFIX: LIVE_NS})
    for key in sorted(note.unreleased):
        etree.SubElement(root, f"{{{LIVE_NS}}}device", key=key)
    for kind, paths in (("pending", note.pending), ("refused", note.refused)):
        for path in sorted(paths):
            etree.SubElement(root, f"{{{LIVE_NS}}}{kind}", path=path)
    return tostring(root, pretty=False)


def unreleased(running: etree._Element | None) -> frozenset[str]:
    """Device keys virtctl asked the running guest to release and that it has not."""
    return read_note(running).unreleased


def unreleased_note(keys: Iterable[str]) -> str | None:
    """A note of only these unreleased devices (None when there is nothing to note)."""
    return note_xml(RunningNote(unreleased=frozenset(keys)))


# -- domains ----------------------------------------------------------------------------


def domain_live(
    stale: Iterable[FieldChange], declared: etree._Element, running: etree._Element,
    *, name: str, support: frozenset[LiveOp], detach_timeout: float,
) -> LivePlan:
    """Live actions for the restart-class differences `stale` of a running guest."""
    if not support:
        return LivePlan()
    by_device: dict[str, list[FieldChange]] = {}
    vcpu: list[FieldChange] = []
    for change in stale:
        key = _device_key(change.path)
        if key is not None:
            by_device.setdefault(key, []).append(change)
        elif change.path.split("/")[0] == "vcpu":
            vcpu.append(change)
    note = read_note(running)
    # Not asked again: what the guest kept or the host refused waits for the restart.
    held = note.unreleased | note.refused
    detach: list[Action] = []
    attach: list[Action] = []
    update: list[Action] = []
    covered: dict[str, str] = {}
    for key, changes in by_device.items():
        action = _device_action(key, changes, declared, running, name=name, support=support,
                                held=held, timeout=detach_timeout)
        if action is None:
            continue
        {AttachDevice: attach, DetachDevice: detach}.get(type(action), update).append(action)
        covered.update((c.path, action.reason) for c in changes)
    vcpus = (_vcpus(vcpu, declared, running, name=name)
             if LiveOp.VCPUS in support and "vcpu/@current" not in held else None)
    if vcpus is not None:
        covered.update((c.path, vcpus.reason) for c in vcpu)
    # Detach first: it frees the addresses an attach may want.
    actions = (*detach, *attach, *update, *((vcpus,) if vcpus is not None else ()))
    return LivePlan(actions=actions, covered=covered)


def _device_action(
    key: str, changes: list[FieldChange], declared: etree._Element, running: etree._Element,
    *, name: str, support: frozenset[LiveOp], held: frozenset[str], timeout: float,
) -> Action | None:
    want, have = find(declared, key), find(running, key)
    whole = [c for c in changes if c.path == key]
    dom = Kind.DOMAIN
    if key in held and not (whole and whole[0].op is ChangeOp.REMOVE):
        return None  # refused before (attach, update): not asked again before a restart
    if whole and whole[0].op is ChangeOp.ADD and want is not None and have is None:
        if LiveOp.ATTACH not in support or not _hot_pluggable(want, running):
            return None
        needs = _network_needs(want)
        return AttachDevice(kind=dom, name=name, device=key, xml=tostring(want, pretty=False),
                            needs=needs, reason=f"attach {_label(want)}")
    if whole and whole[0].op is ChangeOp.REMOVE and have is not None:
        # Only what the spec removed: a device only the running guest has (hot-plugged
        # by hand) may be in use, and unplugging it is not virtctl's call to make.
        if (LiveOp.DETACH not in support or key in held or not _hot_pluggable(have, running)
                or whole[0].origin is not Origin.SPEC):
            return None
        return DetachDevice(kind=dom, name=name, device=key, timeout=timeout,
                            xml=tostring(have, pretty=False), reason=f"detach {_label(have)}")
    if whole or want is None or have is None or LiveOp.UPDATE not in support:
        return None
    rest = [c.path[len(key) + 1:] for c in changes]
    if not _updatable(have, rest):
        return None
    removed = [c.path[len(key) + 1:] for c in changes if c.op is ChangeOp.REMOVE]
    sent = overlay(have, want, removed)
    what = "media" if have.tag == "disk" else ("password" if have.tag == "graphics"
                                                else "/".join(sorted({split_path(r)[0]
                                                                      for r in rest})))
    return UpdateDevice(kind=dom, name=name, device=key, xml=tostring(sent, pretty=False),
                        reason=f"update {what} of {_label(have)}")


def _network_needs(device: etree._Element) -> tuple[ObjectKey, ...]:
    if device.tag == "interface" and device.get("type") == "network":
        source = device.find("source")
        if source is not None and source.get("network"):
            return (ObjectKey(Kind.NETWORK, source.get("network", "")),)
    return ()


AGENT_CHANNEL = "org.qemu.guest_agent.0"


def has_agent(running: etree._Element | None) -> bool:
    """Whether the running guest's agent is connected: libvirt marks its virtio channel
    `state='connected'` once the agent in the guest opened the port (guestagent.py)."""
    if running is None:
        return False
    for target in running.iterfind("devices/channel/target"):
        if target.get("name") == AGENT_CHANNEL and target.get("state") == "connected":
            return True
    return False


def vcpu_counts(elem: etree._Element | None) -> tuple[int, int] | None:
    """(running or current count, maximum) of a `<vcpu>` element."""
    if elem is None:
        return None
    try:
        most = int((elem.text or "").strip())
        return int(elem.get("current", most)), most
    except ValueError:
        return None


def _vcpus(changes: list[FieldChange], declared: etree._Element, running: etree._Element,
           *, name: str) -> SetVcpus | None:
    if not changes or any(c.path != "vcpu/@current" for c in changes):
        return None  # the maximum changes (or something else about vcpus): restart
    decl = declared.find("vcpu")
    want, have = vcpu_counts(decl), vcpu_counts(running.find("vcpu"))
    if decl is None or want is None or have is None:
        return None
    current, most = have
    if want[1] != most:
        return None
    # A declaration without current= (or one that dropped it) runs every vcpu.
    count = want[0] if decl.get("current") else most
    # Only up: removing a vcpu needs the guest to give it back, and QEMU 7.2 with libvirt
    # 9.0 never reports the removal (libvirt times out and is left unsure how many run).
    if not current < count <= most:
        return None
    # Hot-added vcpus come up offline in a guest with no udev rule onlining them
    # (Debian's): the guest agent onlines them (applylive.py), or the guest must.
    online = ("onlined through the guest agent" if has_agent(running)
              else "no guest agent: the guest must online them itself")
    return SetVcpus(kind=Kind.DOMAIN, name=name, count=count,
                    reason=f"set vcpus {current} -> {count} ({online})")


# -- networks ---------------------------------------------------------------------------

_ENTRIES = (
    (re.compile(r"^(ip\[[^\]]*\])/dhcp/host\[[^\]]*\]"), NetworkSection.DHCP_HOST),
    (re.compile(r"^(ip\[[^\]]*\])/dhcp/range\[[^\]]*\]"), NetworkSection.DHCP_RANGE),
    (re.compile(r"^()dns/host\[[^\]]*\]"), NetworkSection.DNS_HOST),
    (re.compile(r"^()dns/txt\[[^\]]*\]"), NetworkSection.DNS_TXT),
    (re.compile(r"^()dns/srv\[[^\]]*\]"), NetworkSection.DNS_SRV),
    (re.compile(r"^()portgroup\[[^\]]*\]"), NetworkSection.PORTGROUP),
    (re.compile(r"^()forward/interface\[[^\]]*\]"), NetworkSection.FORWARD_INTERFACE),
)
_MODIFIABLE = frozenset({NetworkSection.DHCP_HOST, NetworkSection.PORTGROUP})
_NOUN = {
    NetworkSection.DHCP_HOST: "DHCP host", NetworkSection.DHCP_RANGE: "DHCP range",
    NetworkSection.DNS_HOST: "DNS host", NetworkSection.DNS_TXT: "DNS TXT record",
    NetworkSection.DNS_SRV: "DNS SRV record", NetworkSection.PORTGROUP: "port group",
    NetworkSection.FORWARD_INTERFACE: "forward interface",
}


def _entry_of(path: str) -> tuple[str, str, NetworkSection] | None:
    """(entry path, parent `ip[...]` path or '', section) for a change path."""
    for pattern, section in _ENTRIES:
        found = pattern.match(path)
        if found:
            return found.group(0), found.group(1), section
    return None


def _entry_name(elem: etree._Element) -> str:
    for attr in ("mac", "ip", "name", "start", "dev", "value", "service"):
        if elem.get(attr):
            return elem.get(attr, "")
    return str(elem.tag)


def network_live(
    stale: Iterable[FieldChange], declared: etree._Element, running: etree._Element,
    *, name: str, support: frozenset[LiveOp],
) -> LivePlan:
    """Live actions (virNetworkUpdate) for the restart-class differences of an active
    network; an entry with any change no section covers is left to a restart."""
    if LiveOp.NETWORK not in support:
        return LivePlan()
    entries: dict[str, tuple[str, NetworkSection, list[FieldChange]]] = {}
    for change in stale:
        found = _entry_of(change.path)
        if found is None:
            continue
        entry, parent, section = found
        entries.setdefault(entry, (parent, section, []))[2].append(change)
    ips = [key for key, child in child_keys(running) if child.tag == "ip"]
    actions: list[Action] = []
    covered: dict[str, str] = {}
    for entry, (parent, section, changes) in entries.items():
        if parent and parent not in ips:
            continue  # a new <ip>: a restart
        index = ips.index(parent) if parent else -1
        # Sub-fields the declaration dropped (an attribute back to its default): the
        # modified entry goes without them, not with the running values kept.
        dropped = [c.path[len(entry) + 1:] for c in changes
                   if c.op is ChangeOp.REMOVE and c.path != entry]
        made = _entry_actions(entry, section, find(declared, entry), find(running, entry),
                              name=name, index=index, dropped=dropped)
        actions += made
        if made:
            covered.update((c.path, made[-1].reason) for c in changes)
    return LivePlan(actions=tuple(actions), covered=covered)


def _entry_actions(
    entry: str, section: NetworkSection, want: etree._Element | None,
    have: etree._Element | None, *, name: str, index: int, dropped: list[str] | None = None,
) -> list[Action]:
    def update(command: NetworkCommand, elem: etree._Element, verb: str) -> UpdateNetwork:
        return UpdateNetwork(kind=Kind.NETWORK, name=name, command=command, section=section,
                             xml=tostring(elem, pretty=False), parent_index=index, entry=entry,
                             reason=f"{verb} {_NOUN[section]} {_entry_name(elem)}")

    if want is not None and have is None:
        return [update(NetworkCommand.ADD, want, "add")]
    if want is None and have is not None:
        return [update(NetworkCommand.DELETE, have, "delete")]
    if want is None or have is None:
        return []
    if section in _MODIFIABLE:
        return [update(NetworkCommand.MODIFY, overlay(have, want, dropped or ()), "modify")]
    return [update(NetworkCommand.DELETE, have, "delete"),
            update(NetworkCommand.ADD, want, "add")]


# -- verification -----------------------------------------------------------------------


def mismatch(declared: etree._Element, found: etree._Element | None, where: str) -> str | None:
    """The first declared field the running element lacks ('devices/disk[vdb]/source/
    @file'), 'where' itself when the element is missing, None when it matches."""
    if found is None:
        return where
    changes = diff_xml(declared, found)
    return f"{where}/{changes[0].path}" if changes else None
