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

from ..errors import DriverError, VerificationError
from ..model import Kind
from ..xmlutil import parse, tostring
from .actions import AttachDevice, DetachDevice, LiveAction, SetVcpus, UpdateDevice, UpdateNetwork
from .liverules import find, mismatch, unreleased, unreleased_note, vcpu_counts

if TYPE_CHECKING:
    from ..drivers.base import Driver
    from .apply import Clock


def perform_live(action: LiveAction, driver: Driver, clock: Clock) -> str:
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
            counts = vcpu_counts(_running(driver, Kind.DOMAIN, name).find("vcpu"))
            if counts is None or counts[0] != count:
                _fail(action, "vcpu/@current",
                      f"{counts[0] if counts else 'none'} running, {count} wanted")
        case UpdateNetwork():
            driver.update_network(name, action.command, action.section, action.xml,
                                  parent_index=action.parent_index, live=True, config=False)
            _check_network(action, driver)
    return ""


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
    note = unreleased_note(unreleased(running) | {action.device})
    driver.set_running_note(action.name, note)
    return (f"the guest has not released it within {action.timeout:g}s: it stays until "
            "the guest restarts (restart pending)")

