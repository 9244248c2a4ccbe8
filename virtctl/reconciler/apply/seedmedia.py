"""Swapping a running guest's cloud-init seed medium (issue 22, defect 1).

A seed is replaced when its content changes. QEMU holds the seed file open while it is
the CD-ROM's medium: deleting it then leaves QEMU reading the deleted file, and a
reboot from inside the guest (same QEMU process) reads the old seed again. So the
medium is taken out first (`eject`), the volume deleted and made again, and the new
one put in (`insert`): each a live update of the drive (virDomainUpdateDeviceFlags,
LIVE only: the definition names the volume, which is unchanged), read back and checked.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from lxml import etree

from ...errors import VerificationError
from ...model import Kind
from ...xmlutil import parse, tostring

if TYPE_CHECKING:
    from ...drivers.base import Driver


def _drive(driver: Driver, domain: str, target: str) -> etree._Element:
    running = parse(driver.definition(Kind.DOMAIN, domain, running=True),
                    source=f"domain {domain}")
    for disk in running.iterfind("devices/disk"):
        dev = disk.find("target")
        if dev is not None and dev.get("dev") == target:
            return disk
    raise VerificationError(f"domain {domain}: the running guest has no drive {target} "
                            "for its cloud-init seed", differences=(target,))


def _bare(disk: etree._Element) -> etree._Element:
    """The drive without its medium (source, backing chain, the live-only alias)."""
    out = copy.deepcopy(disk)
    for tag in ("source", "backingStore", "alias"):
        for child in out.findall(tag):
            out.remove(child)
    return out


def _medium(disk: etree._Element) -> str | None:
    source = disk.find("source")
    if source is None:
        return None
    for attr in ("volume", "file", "dev", "name"):
        if source.get(attr):
            return source.get(attr)
    return None


def _running(driver: Driver, domain: str) -> bool:
    """Whether the guest still runs: a plan that also stops it (state: shutoff, a
    restart) stops it before storage changes, and then nothing holds the file."""
    state = driver.domain_state(domain)
    return state is not None and state.active


def eject(driver: Driver, domain: str, target: str) -> None:
    """Take the medium out of the running guest's drive `target`; checked."""
    if not _running(driver, domain):
        return
    drive = _drive(driver, domain, target)
    if _medium(drive) is None:
        return  # empty already (an earlier run stopped between eject and insert)
    empty = _bare(drive)
    empty.set("type", "file")  # an empty drive has no pool or volume to name
    driver.update_device(domain, tostring(empty, pretty=False), live=True, config=False)
    if _medium(_drive(driver, domain, target)) is not None:
        raise VerificationError(
            f"domain {domain}: the medium of CD-ROM {target} is still in after the eject "
            "(locked by the guest?); the seed was not replaced: the guest keeps the old "
            "one until it stops", differences=(f"devices/disk[{target}]/source",))


def insert(driver: Driver, domain: str, target: str, pool: str, volume: str) -> None:
    """Put volume `pool/volume` in the running guest's drive `target`; checked."""
    if not _running(driver, domain):
        return  # it reads the volume when it starts
    drive = _bare(_drive(driver, domain, target))
    drive.set("type", "volume")
    source = etree.Element("source", pool=pool, volume=volume)
    target_elem = drive.find("target")
    if target_elem is not None:
        target_elem.addprevious(source)
    else:
        drive.append(source)
    driver.update_device(domain, tostring(drive, pretty=False), live=True, config=False)
    found = _drive(driver, domain, target).find("source")
    if found is None or not (found.get("volume") == volume or found.get("file")):
        raise VerificationError(
            f"domain {domain}: CD-ROM {target} holds no medium after inserting the new "
            f"seed {pool}/{volume}: the guest reads it only after it stops and starts",
            differences=(f"devices/disk[{target}]/source",))
