"""What the guest agent (qemu-guest-agent) tells the planner and the applier (issue 22).

* Disk removal (defect 3). Before a plan detaches a disk from a running guest, the guest
  is asked which filesystems it has mounted and on which disks (`guest-get-fsinfo`,
  through libvirt's virDomainGetGuestInfo(FILESYSTEM), which maps each guest disk to
  its libvirt target). A disk with a mounted filesystem is not detached: the plan
  refuses it, naming the mount point, and the change stays a difference (diff exits 2)
  until it is unmounted or the run says `--force-detach`. A guest with no agent that
  answers gets the detach as before, and the plan says the guest loses the disk at once.
* vcpus (defect 2). A hot-added vcpu is present but offline in a guest without a udev
  rule that onlines it (Debian has none). With an agent, the applier onlines them
  (virDomainSetVcpusFlags(VIR_DOMAIN_VCPU_GUEST): `guest-set-vcpus`) and reads back
  `guest-get-vcpus` until as many are online; without one, the plan says the guest must
  online them itself.

A guest "has an agent" when its running definition has the agent's virtio channel
(org.qemu.guest_agent.0) in state `connected`: libvirt sets that when the agent in the
guest opened the port, so a guest without one is never asked (each call would wait for
libvirt's agent timeout).

`guard_detaches` is pure: its input is what the agent said (`mounts`), read by
api.py through `Reader.guest_filesystems` when the plan has a disk to detach.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from lxml import etree

from ...model import ChangeClass, Kind, ObjectKey
from ...xmlutil import parse
from ..plan.actions import Action, DetachDevice, SetRunningNote
from ..plan.diff import FieldChange
from ..plan.liverules import AGENT_CHANNEL, RunningNote, has_agent, note_xml, read_note

__all__ = ["AGENT_CHANNEL", "Mounts", "disk_detaches", "guard_detaches", "has_agent"]

if TYPE_CHECKING:
    from ..plan.plan import Pending, Plan

# domain -> disk target -> the mount points of the filesystems on it; a domain absent
# (or mapped to None) had no agent that answered.
Mounts = Mapping[str, Mapping[str, tuple[str, ...]] | None]


def disk_detaches(planned: Plan) -> dict[str, list[DetachDevice]]:
    """domain -> the disks the plan detaches from it."""
    out: dict[str, list[DetachDevice]] = {}
    for action in planned.actions:
        if isinstance(action, DetachDevice) and action.device.startswith("devices/disk["):
            out.setdefault(action.name, []).append(action)
    return out


def _target(action: DetachDevice) -> str:
    return action.device[len("devices/disk["):-1]


def guard_detaches(planned: Plan, mounts: Mounts, *, force: bool,
                   running: Mapping[str, etree._Element | None] | None = None) -> Plan:
    """The plan with each disk detach checked against what the guest has mounted.
    A refused detach is noted on the running guest as pending (`running`: each guest's
    running definition, for the note it has): the definition already lacks the disk,
    and without the note a later run would take the disk for one plugged by hand and
    never detach it, --force-detach or not."""
    refused: set[DetachDevice] = set()
    notes: list[str] = []
    for domain, actions in disk_detaches(planned).items():
        found = mounts.get(domain)
        for action in actions:
            target = _target(action)
            where = f"{Kind.DOMAIN}/{domain}: disk {target}"
            if found is None:
                notes.append(f"{where}: no guest agent answers, so nothing is known of its "
                             "use; the guest loses the disk at once when it is detached")
                continue
            points = found.get(target, ())
            if not points:
                continue
            shown = ", ".join(sorted(points))
            if force:
                notes.append(f"{where}: detached although mounted at {shown} in the guest "
                             "(--force-detach): the guest loses its data in flight")
                continue
            refused.add(action)
            notes.append(f"{where}: not detached: the guest has it mounted at {shown} "
                         "(guest agent); unmount it in the guest, or apply with "
                         "--force-detach")
    if not notes:
        return planned
    actions = [a for a in planned.actions if a not in refused]
    changes, pending = planned.changes, planned.pending
    for action in refused:
        actions = _noted(actions, action, (running or {}).get(action.name))
        changes, pending = _restart_pending(changes, pending, action)
    return replace(planned, actions=tuple(actions), notes=(*planned.notes, *notes),
                   changes=changes, pending=pending)


def _restart_pending(changes: tuple[tuple[ObjectKey, tuple[FieldChange, ...]], ...],
                     pending: tuple[Pending, ...], refused: DetachDevice,
                     ) -> tuple[tuple[tuple[ObjectKey, tuple[FieldChange, ...]], ...],
                                tuple[Pending, ...]]:
    """The refused removal shown as what it now is: restart-pending, not live (the
    definition lacks the disk; the running guest keeps it until it restarts or a run
    with --force-detach)."""
    from ..plan.plan import Pending as PendingOf  # plan.py imports this module's callers

    key = refused.key
    moved = tuple(replace(c, change_class=ChangeClass.RESTART, operation=None)
                  for k, cs in changes if k == key for c in cs if c.path == refused.device)
    if not moved:
        return changes, pending
    kept = tuple((k, tuple(c for c in cs if not (k == key and c.path == refused.device)))
                 for k, cs in changes)
    found = [p for p in pending if p.key == key]
    if found:
        pending = tuple(PendingOf(p.key, (*p.changes, *moved)) if p.key == key else p
                        for p in pending)
    else:
        pending = (*pending, PendingOf(key, moved))
    return kept, pending


def _noted(actions: list[Action], refused: DetachDevice,
           running: etree._Element | None) -> list[Action]:
    """`actions` with the refused device added to the guest's note as pending: in the
    plan's own SetRunningNote for that guest when it has one, else in a new one."""
    mine = [i for i, a in enumerate(actions)
            if isinstance(a, SetRunningNote) and a.name == refused.name]
    if mine:
        xml = actions[mine[0]].xml  # type: ignore[union-attr]
        holder = etree.Element("domain")
        if xml is not None:
            etree.SubElement(holder, "metadata").append(parse(xml))
        have = read_note(holder)
    else:
        have = read_note(running)
    new = RunningNote(unreleased=have.unreleased, pending=have.pending | {refused.device},
                      refused=have.refused)
    note = SetRunningNote(kind=Kind.DOMAIN, name=refused.name, xml=note_xml(new),
                          reason=f"note {refused.device} pending (not detached: mounted)")
    rest = [a for i, a in enumerate(actions) if i not in mine]
    # The guest has this note already (a run after the refusing one): nothing to do.
    return rest if new == read_note(running) else [*rest, note]

