"""Performing live actions (apply.py's part for them): one driver call each, then the
running definition read back and checked, so a live change that did not take is an
error naming the field rather than a silent drift.

Detaching is asynchronous: the guest must release the device. The running definition
is polled (backing off to 1 s) until the device is gone or the action's timeout passes;
a guest that keeps it gets virtctl's note on its running instance (liverules.unreleased)
and the change stays restart-pending, reported, not failed: the next run neither asks
again nor calls it an error, and a restart (which drops the note) removes it.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from lxml import etree

from ...errors import DriverError, ErrorCode, TransientError, VerificationError, VirtctlError
from ...model import Kind
from ...xmlutil import parse, tostring
from ..plan.actions import (
    AttachDevice,
    DetachDevice,
    LiveAction,
    SetMemory,
    SetRunningNote,
    SetVcpus,
    UpdateDevice,
    UpdateNetwork,
)
from ..plan.classify import kib_of
from .guestagent import has_agent
from ..plan.essence import memory_kib
from ..plan.liverules import RunningNote, find, mismatch, note_xml, read_note, vcpu_counts

if TYPE_CHECKING:
    from ...drivers.base import Driver
    from .clock import Clock


class NotTaken(Exception):
    """A live change the guest did not take (all or part): not an error, the definition
    holds it and the running guest gets it at its next boot (restart pending). apply.py
    reports it as `pending` with this text."""


def perform_live(action: LiveAction, driver: Driver, clock: Clock) -> str:
    try:
        return _perform(action, driver, clock)
    except (DriverError, VerificationError) as exc:
        if _uncertain(exc):
            raise
        if isinstance(action, UpdateNetwork):
            # libvirt keeps no live note on networks: the next run finds the entry still
            # differing in the running network and tries again.
            exc.message += ("; the network's definition already holds the change: the "
                            "network gets it when it restarts (restart pending)")
            raise
        # Refused or not taken: the definition already holds the change (Define came
        # first). Say so, and note it on the running guest, so later runs report it
        # restart-pending and do not ask again before the restart.
        field = "vcpu/@current" if isinstance(action, SetVcpus) else action.device
        try:
            _add_to_note(driver, action.name, refused={field})
        except (DriverError, VerificationError):
            pass  # the error below says what matters
        exc.message += ("; the definition already holds the change: the running guest "
                        "gets it at its next boot (restart pending; not asked again "
                        "before that)")
        raise


def _uncertain(exc: VirtctlError) -> bool:
    """A call that timed out or lost its connection may have been done: nothing is said
    about it beyond the error, and no more calls are made on it."""
    return isinstance(exc, TransientError) or exc.code in (ErrorCode.TIMEOUT,
                                                           ErrorCode.CONNECTION)


def _perform(action: LiveAction, driver: Driver, clock: Clock) -> str:
    name = action.name
    match action:
        case AttachDevice():
            return _attach(action, driver)
        case DetachDevice():
            return _detach(action, driver, clock)
        case UpdateDevice(xml=xml):
            driver.update_device(name, xml, live=True, config=False)
            _check_device(action, driver)
        case SetVcpus(count=count):
            driver.set_vcpus(name, count, live=True, config=False)
            running = _running(driver, Kind.DOMAIN, name)
            counts = vcpu_counts(running.find("vcpu"))
            if counts is None or counts[0] != count:
                _fail(action, "vcpu/@current",
                      f"{counts[0] if counts else 'none'} running, {count} wanted")
            if has_agent(running):
                return _online_vcpus(action, driver, clock)
            return NO_AGENT_VCPUS
        case UpdateNetwork():
            driver.update_network(name, action.command, action.section, action.xml,
                                  parent_index=action.parent_index, live=True, config=False)
            _check_network(action, driver)
    return ""


# Hot-added vcpus are present, not online, in a guest without a udev rule for them.
NO_AGENT_VCPUS = ("no guest agent: the guest must online the new vcpus itself (a udev "
                  "rule, or echo 1 > /sys/devices/system/cpu/cpuN/online)")
ONLINE_TIMEOUT = 30.0  # seconds the guest agent may take to online hot-added vcpus


def _online_vcpus(action: SetVcpus, driver: Driver, clock: Clock) -> str:
    """Online the hot-added vcpus through the guest agent and read back, through it,
    until as many are online (the guest kernel may not have registered a new vcpu when
    asked first: asked again until the deadline)."""
    online = getattr(driver, "online_guest_vcpus", None)
    count_online = getattr(driver, "guest_online_vcpus", None)
    if online is None or count_online is None:
        return NO_AGENT_VCPUS
    deadline = clock.now() + ONLINE_TIMEOUT
    delay, have, why = 0.2, None, ""
    while True:
        try:
            online(action.name, action.count)
            have = count_online(action.name)
        except DriverError as exc:
            why = f" ({exc.message})"
        if have == action.count:
            return "onlined in the guest through its agent"
        if clock.now() >= deadline:
            break
        clock.sleep(delay)
        delay = min(delay * 2, 2.0)
    shown = "unknown" if have is None else str(have)
    raise NotTaken(f"the vcpus are present, but the guest agent reports {shown} of "
                   f"{action.count} online after {ONLINE_TIMEOUT:g}s{why}: the guest must "
                   "online them itself")


def perform_note(action: SetRunningNote, driver: Driver) -> str:
    driver.set_running_note(action.name, action.xml)
    return ""


def _add_to_note(driver: Driver, name: str, *, unreleased: set[str] = frozenset(),
                 refused: set[str] = frozenset()) -> None:
    """Add entries to the running guest's note, keeping what it holds."""
    have = read_note(_running(driver, Kind.DOMAIN, name))
    driver.set_running_note(name, note_xml(RunningNote(
        unreleased=have.unreleased | unreleased, pending=have.pending,
        refused=have.refused | refused)))


def perform_memory(action: SetMemory, driver: Driver, clock: Clock) -> str:
    """Set the balloon, then read the running definition back until the guest's current
    memory gets there or the action's timeout passes: a guest without a balloon driver
    never moves it. What it did not take is noted and reported, not failed: the
    definition holds it, and the guest boots with it (restart pending)."""
    driver.set_memory(action.name, action.kib)
    deadline = clock.now() + action.timeout
    delay = 0.05
    while True:
        have = _current_kib(_running(driver, Kind.DOMAIN, action.name))
        if have == action.kib:
            return ""
        if clock.now() >= deadline:
            break
        clock.sleep(delay)
        delay = min(delay * 2, 1.0)
    _add_to_note(driver, action.name, refused={"currentMemory"})
    shown = "unknown" if have is None else f"{have} KiB"
    raise NotTaken(
        f"the guest's balloon is at {shown}, not {action.kib} KiB, after "
        f"{action.timeout:g}s (no balloon driver?): currentMemory stays restart-pending; "
        "the guest gets it at its next boot")


def _current_kib(running: etree._Element) -> int | None:
    current = running.find("currentMemory")
    if current is None or not (current.text or "").strip():
        return None
    return kib_of(memory_kib(current.text or "", current.get("unit")))


def _running(driver: Driver, kind: Kind, name: str) -> etree._Element:
    return parse(driver.definition(kind, name, running=True), source=f"{kind} {name}")


def _fail(action: LiveAction, field: str, detail: str = "") -> None:
    raise VerificationError(
        f"{action.key}: {action.reason} did not take: {field} differs in the running "
        f"definition{': ' + detail if detail else ''}",
        differences=(field,),
    )


def _placed(action: AttachDevice, driver: Driver) -> str | None:
    """The device with the address the definition gave it, so the running guest sees it
    where it will be after the next boot (guest NIC and disk names follow addresses);
    None when the definition holds no address for it."""
    defined = find(parse(driver.definition(Kind.DOMAIN, action.name)), action.device)
    address = defined.find("address") if defined is not None else None
    sent = parse(action.xml)
    if address is None or sent.find("address") is not None:
        return None
    sent.append(copy.deepcopy(address))
    return tostring(sent, pretty=False)


def _attach(action: AttachDevice, driver: Driver) -> str:
    placed = _placed(action, driver)
    detail = ""
    if placed is None:
        driver.attach_device(action.name, action.xml, live=True, config=False)
    else:
        try:
            driver.attach_device(action.name, placed, live=True, config=False)
        except DriverError as exc:  # the address is taken in the running guest

            driver.attach_device(action.name, action.xml, live=True, config=False)
            detail = f"attached at an address of the host's choosing ({exc})"
    _check_device(action, driver)
    return detail


def _check_device(action: AttachDevice | UpdateDevice, driver: Driver) -> None:
    want = parse(action.xml)
    found = find(_running(driver, Kind.DOMAIN, action.name), action.device)
    problem = mismatch(want, found, action.device)
    if (problem is None and found is not None and found.get("device") in ("cdrom", "floppy")
            and want.find("source") is None and _medium(found)):
        problem = f"{action.device}/source"  # an eject that left the medium in
    if problem is not None:
        _fail(action, problem)


def _medium(disk: etree._Element) -> bool:
    """Whether a drive holds a medium: QEMU's empty tray still shows `<source index=N/>`."""
    source = disk.find("source")
    return source is not None and any(
        source.get(a) for a in ("file", "dev", "dir", "volume", "name"))


def _check_network(action: UpdateNetwork, driver: Driver) -> None:
    found = find(_running(driver, Kind.NETWORK, action.name), action.entry)
    if action.command == "delete":
        if found is not None:
            _fail(action, action.entry, "still there")
        return
    problem = mismatch(parse(action.xml), found, action.entry)
    if problem is not None:
        _fail(action, problem)


def _detach(action: DetachDevice, driver: Driver, clock: Clock) -> str:
    driver.detach_device(action.name, action.xml, live=True, config=False)
    deadline = clock.now() + action.timeout
    delay = 0.05
    while True:
        running = _running(driver, Kind.DOMAIN, action.name)
        if find(running, action.device) is None:
            return ""
        if clock.now() >= deadline:
            break
        clock.sleep(delay)
        delay = min(delay * 2, 1.0)
    _add_to_note(driver, action.name, unreleased={action.device})
    raise NotTaken(f"the guest has not released it within {action.timeout:g}s: it stays "
                   "until the guest restarts (restart pending)")

