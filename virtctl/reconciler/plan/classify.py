"""Change classes: how each field change reaches a running object, and what is pending.

Every planned field change gets one class (docs/output-format.md has the table); this
module gives the class before live operations are considered, and the planner moves
to `live` what liverules.py can apply to the running object:
`live` (applied to the running object now), `next-boot` (the definition changes and the
running object keeps the old one until it next starts), `restart` (only a stop and
start applies it), `recreate` (the identity changes: undefine, define again). The
planner decides what to do from the classes and the object's update policy; this
module only names them. It also compares a running guest's definition with what was
declared, to find a restart pending. Called by plan.py and render.py. Pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from lxml import etree

from ...model import ChangeClass, LiveDomain, LiveNetwork
from ...xmlutil import parse
from .diff import ChangeOp, FieldChange, Origin, diff_xml, summarize
from .essence import child_keys, essence, memory_kib
from .identity import fill_domain_identity, fill_network_identity
from .liverules import find, read_note, split_path

LIVE, NEXT_BOOT, RESTART, RECREATE = (
    ChangeClass.LIVE, ChangeClass.NEXT_BOOT, ChangeClass.RESTART, ChangeClass.RECREATE)

# Host-side only: libvirt keeps them, the guest never sees them.
_HOST_SIDE = ("metadata", "title", "description")
# Read only when the guest boots or stops: a running guest is not affected by them.
_AT_BOOT = ("on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "os/boot",
            "os/bootmenu", "os/smbios", "os/bios")
# Devices a running guest may have that its persistent definition lacks: a device the
# spec removed (or one hot-plugged outside virtctl) keeps the guest restart-pending.
_REMOVABLE = frozenset({"disk", "interface", "hostdev", "filesystem", "graphics", "sound",
                        "video", "serial", "parallel", "console", "channel", "redirdev",
                        "smartcard", "rng", "tpm", "watchdog", "shmem", "vsock"})


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith((p + "/", p + "[")) for p in prefixes)


def _is_boot_order(path: str) -> bool:
    return path.startswith("devices/") and (path.endswith("/boot") or "/boot/" in path)


def domain_class(change: FieldChange, *, active: bool, max_kib: int | None) -> ChangeClass:
    """The class of one change to a domain definition. `active`: the guest runs;
    `max_kib`: the maximum memory the running guest has (currentMemory may grow to it)."""
    path = change.path
    if path in ("@type", "uuid"):
        return RECREATE
    if _under(path, _HOST_SIDE):
        return LIVE
    if (path == "currentMemory" and active and change.op is not ChangeOp.REMOVE
            and max_kib is not None and kib_of(change.new) <= max_kib):
        return LIVE
    if not active or _under(path, _AT_BOOT) or _is_boot_order(path):
        return NEXT_BOOT
    return RESTART


def network_class(change: FieldChange, *, active: bool) -> ChangeClass:
    """Networks: libvirt applies a redefinition to an active network only when it is
    restarted, so every change but the uuid (recreate) and host-side metadata (live)
    is restart-class here; the planner then moves those virNetworkUpdate can apply to
    `live` (liverules.network_live)."""
    if change.path == "uuid":
        return RECREATE
    if _under(change.path, _HOST_SIDE):
        return LIVE
    return RESTART if active else NEXT_BOOT


def classified(
    changes: Iterable[FieldChange], *, network: bool, active: bool, max_kib: int | None = None
) -> tuple[FieldChange, ...]:
    out = []
    for change in changes:
        cls = (network_class(change, active=active) if network
               else domain_class(change, active=active, max_kib=max_kib))
        out.append(dataclasses.replace(change, change_class=cls))
    return tuple(out)


def worst(changes: Iterable[FieldChange]) -> ChangeClass | None:
    """The most disruptive class among `changes` (None when there are none)."""
    classes = [c.change_class for c in changes if c.change_class is not None]
    return max(classes, key=lambda c: c.rank) if classes else None


def kib_of(value: str | None) -> int:
    """'524288 KiB' (the essence's spelling) -> 524288; anything else -> a huge number."""
    try:
        return int((value or "").split()[0])
    except (ValueError, IndexError):
        return 1 << 62


def max_memory_kib(root: etree._Element) -> int | None:
    memory = root.find("memory")
    if memory is None or not (memory.text or "").strip():
        return None
    return kib_of(memory_kib(memory.text or "", memory.get("unit")))


# -- restart pending ------------------------------------------------------------------


def _runtime_noise(change: FieldChange, declared: etree._Element) -> bool:
    """Differences between a declaration and a *running* definition that are only the
    hypervisor filling in at start what was left to it: an automatic graphics port
    (-1 becomes 5900...), and a host-model CPU, which runs as the custom model found."""
    if change.path.startswith("devices/graphics") and change.path.endswith(
            ("/@port", "/@tlsPort", "/@websocket")) and change.new == "-1":
        return True
    cpu = declared.find("cpu")
    return (change.path.startswith("cpu") and cpu is not None
            and cpu.get("mode") == "host-model")


def _removed_devices(persistent: etree._Element, running: etree._Element) -> list[FieldChange]:
    devices, live_devices = persistent.find("devices"), running.find("devices")
    if live_devices is None:
        return []
    # A definition left without any device has no <devices> at all: it keeps none.
    kept = {key for key, _ in child_keys(devices)} if devices is not None else set()
    return [
        FieldChange(ChangeOp.REMOVE, f"devices/{key}", summarize(essence(elem)), None)
        for key, elem in child_keys(live_devices)
        if elem.tag in _REMOVABLE and key not in kept
    ]


_WHOLE_DEVICE = re.compile(r"^devices/\w+\[[^\]]*\]$")


def whole_device(path: str) -> bool:
    """Whether a change path names whole devices ('devices/disk[vdb]'; 'devices' when a
    definition has none at all)."""
    return path == "devices" or _WHOLE_DEVICE.match(path) is not None


def touches(path: str, paths: Iterable[str]) -> bool:
    """Whether `path` is one of `paths`, lies under one, or holds one."""
    return any(path == p or path.startswith(p + "/") or p.startswith(path + "/")
               for p in paths)


def value_at(root: etree._Element, path: str) -> str | None:
    """What `root` has at an essence path: an attribute's value, an element's text (''
    when it has none), None when absent."""
    parts = split_path(path)
    if parts[-1].startswith("@"):
        elem = find(root, "/".join(parts[:-1])) if len(parts) > 1 else root
        return None if elem is None else elem.get(parts[-1][1:])
    elem = find(root, path)
    return None if elem is None else (elem.text or "").strip()


def _shown(root: etree._Element, path: str) -> str:
    """A field of `root` as a change shows it: an attribute's value; an element as
    `diff` shows one (its value when it holds one: `<link state='down'/>` is 'down')."""
    if split_path(path)[-1].startswith("@"):
        return value_at(root, path) or ""
    elem = find(root, path)
    return summarize(essence(elem)) if elem is not None else path.split("/")[-1]


def stale_fields(
    declared: etree._Element, persistent: etree._Element, running: etree._Element,
    *, changed: Iterable[str] = (),
) -> tuple[FieldChange, ...]:
    """What a restart would still change in the running guest: restart-class differences
    between `declared` (identity filled in, nothing else the user left out) and the
    running definition. Only fields this run changes in the definition (`changed`) or
    that virtctl's note on the running guest names (changed earlier, not applied live:
    liverules.RunningNote) count, plus whole devices only one side has: a field the
    hypervisor fills in or rewrites at start (addresses, cpu/@check, a graphics port)
    never does, since no restart would change it. Empty: the guest runs what was
    declared."""
    note = read_note(running)
    relevant = set(changed) | note.paths
    found = [c for c in diff_xml(declared, running)
             if not _runtime_noise(c, declared)
             and (whole_device(c.path) or touches(c.path, relevant))]
    # What the note says was removed from the definition and the guest still runs.
    seen = {c.path for c in found}
    for path in sorted(note.paths - seen):
        have = value_at(running, path)
        if have is not None and value_at(declared, path) is None:
            found.append(FieldChange(ChangeOp.REMOVE, path, _shown(running, path),
                                     None, origin=Origin.SPEC))
    # Devices only the running guest has; not one declared again (the guest runs it, the
    # new definition gets it back).
    found += [c for c in _removed_devices(persistent, running) if find(declared, c.path) is None]
    out = []
    for change in classified(found, network=False, active=True,
                             max_kib=max_memory_kib(running)):
        if change.change_class is RESTART:
            out.append(change)
        elif change.change_class is LIVE and touches(change.path, note.paths):
            # A live change the guest did not take (a balloon that did not move): it
            # comes with the next boot.
            out.append(dataclasses.replace(change, change_class=RESTART))
    return tuple(out)


def restart_pending(live: LiveDomain, declared_xml: str | None) -> tuple[FieldChange, ...]:
    """For `get`: a running managed guest whose running definition lacks what its
    last-applied declaration holds. Empty when not running or nothing is recorded."""
    if not live.state.active or live.running_xml is None or declared_xml is None:
        return ()
    persistent = parse(live.xml)
    declared = parse(declared_xml)
    fill_domain_identity(declared, persistent)
    # The machine the host resolved a declared alias to ('pc' -> 'pc-i440fx-7.2'); the
    # planner, which has the capabilities, flags a real machine change on its own.
    want, have = declared.find("os/type"), persistent.find("os/type")
    if want is not None and have is not None and want.get("machine") and have.get("machine"):
        want.set("machine", have.get("machine", ""))
    return stale_fields(declared, persistent, parse(live.running_xml))


# Attributes a running network has that its definition never holds.
_NETWORK_RUNTIME = frozenset({"@connections"})


def network_removals(
    persistent: etree._Element, running: etree._Element
) -> list[FieldChange]:
    """What an active network runs that its persistent definition no longer has or has
    otherwise: a removal (a DHCP host, a port group, an attribute left to its default)
    stays restart-pending until the network restarts, whatever the last-applied record
    says. libvirt's network definitions carry nothing the running one fills in but the
    connection count, so the comparison holds no runtime noise."""
    out = []
    for change in diff_xml(running, persistent):
        if change.path in _NETWORK_RUNTIME:
            continue
        if change.op is ChangeOp.ADD:
            out.append(FieldChange(ChangeOp.REMOVE, change.path, change.new, None))
        else:
            out.append(FieldChange(ChangeOp.CHANGE, change.path, change.new, change.old))
    return out


def stale_network_fields(
    declared: etree._Element, running: etree._Element,
    persistent: etree._Element | None = None,
) -> tuple[FieldChange, ...]:
    """What an active network's running definition still lacks of `declared` (identity
    already filled in), and, given its `persistent` definition, what it runs that the
    definition dropped: restart-class differences only."""
    found = {c.path: c for c in diff_xml(declared, running)}
    if persistent is not None:
        for change in network_removals(persistent, running):
            found.setdefault(change.path, change)
    return tuple(c for c in classified(found.values(), network=True, active=True)
                 if c.change_class is RESTART)


def network_restart_pending(
    live: LiveNetwork, declared_xml: str | None
) -> tuple[FieldChange, ...]:
    """For `get`: an active managed network whose running definition lacks what its
    last-applied declaration holds, or still runs what it no longer holds. Empty when
    inactive, when nothing is recorded or when the host keeps no running definition
    apart."""
    if not live.active or live.running_xml is None or declared_xml is None:
        return ()
    declared = parse(declared_xml)
    persistent = parse(live.xml)
    fill_network_identity(declared, persistent)
    return stale_network_fields(declared, parse(live.running_xml), persistent)
