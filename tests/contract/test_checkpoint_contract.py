"""Snapshot calls of the Driver Protocol (issue 25), the same on every backend: a
snapshot of a stopped guest (its definition and its qcow2 disk) is listed with its
description, a revert restores the definition it saved, undefining a guest that has
snapshots is refused, a delete removes one and a metadata-only delete forgets it; the
probes say no for a guest that does not run."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from tests.contract.support import Backend, Factory
from virtctl.drivers import Driver
from virtctl.errors import DriverError
from virtctl.model import Kind
from virtctl.xmlutil import parse


def memory_of(driver: Driver, name: str) -> str:
    return parse(driver.definition(Kind.DOMAIN, name)).findtext("memory") or ""


def with_disk(xml: str, image: Path) -> str:
    # libvirt snapshots nothing of a guest without disks ("nothing selected").
    return xml.replace("<devices>", "<devices><disk type='file' device='disk'>"
                       "<driver name='qemu' type='qcow2'/>"
                       f"<source file='{image}'/><target dev='vda' bus='virtio'/></disk>")


def test_snapshot_list_revert_delete(driver: Driver, factory: Factory, tmp_path: Path,
                                     backend: Backend) -> None:
    name = factory.name()
    image = tmp_path / "vda.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    driver.define(Kind.DOMAIN, with_disk(factory.domain_xml(name, memory_mib=64), image))
    uuid = parse(driver.definition(Kind.DOMAIN, name)).findtext("uuid")
    try:
        driver.create_snapshot(name, "virtctl-a", '{"virtctl": 1}')
        listed = driver.snapshots(name)
        assert [s.name for s in listed] == ["virtctl-a"]
        assert listed[0].description == '{"virtctl": 1}' and not listed[0].memory
        assert listed[0].created > 0
        with pytest.raises(DriverError):  # a name taken
            driver.create_snapshot(name, "virtctl-a", "again")
        driver.define(Kind.DOMAIN, with_disk(factory.domain_xml(name, memory_mib=96,
                                                                 uuid=uuid), image))
        assert memory_of(driver, name) == str(96 * 1024)
        with pytest.raises(DriverError):  # as libvirt: its snapshots first
            driver.undefine(Kind.DOMAIN, name)
        driver.revert_snapshot(name, "virtctl-a")
        assert memory_of(driver, name) == str(64 * 1024)
        assert not driver.domain_state(name).active
        driver.create_snapshot(name, "virtctl-b", "second")
        driver.delete_snapshot(name, "virtctl-a")
        assert [s.name for s in driver.snapshots(name)] == ["virtctl-b"]
        # libvirt's test driver has no metadata-only delete (and no data to keep).
        driver.delete_snapshot(name, "virtctl-b", keep_data=backend.id != "test")
        assert driver.snapshots(name) == ()
        with pytest.raises(DriverError):
            driver.revert_snapshot(name, "virtctl-b")
        assert not driver.agent_ping(name)  # not running: no agent answers
        driver.undefine(Kind.DOMAIN, name)
    finally:
        for snap in driver.snapshots(name) if driver.domain_state(name) else ():
            with contextlib.suppress(DriverError):
                driver.delete_snapshot(name, snap.name, keep_data=backend.id != "test")
