"""The driver conformance suite for live changes: hot-plug, media, link, vcpus,
virNetworkUpdate and the running note, on every backend (see conftest).

A backend that does not list an operation in `live_ops()` must refuse it with a
DriverError: the case checks that and ends there, so no supported operation goes
untested and none is skipped. What a real guest does differs from the sim in one way
only, stated where it matters: our QEMU guests boot no OS (a BIOS and nothing else), so
nothing in them answers a PCI unplug request. QEMU releases a SCSI or USB disk at once (no guest
involved) but a virtio disk or a PCI NIC never; the sim plays such a guest with the
`detach`/`ignore` fault. PCI hot-plug itself needs ACPI in the guest (`<acpi/>`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.contract.livesupport import (
    DEADLINE,
    OS_LESS_QEMU,
    cdrom,
    definition,
    dhcp_hosts,
    dhcp_network,
    disk,
    guest_for_media,
    guest_xml,
    image,
    nic,
    nic_network,
    note,
    noted,
    running_guest,
    supported,
    targets,
    wait_for,
)
from tests.contract.support import Backend, Factory, shared_dir
from virtctl.drivers import Driver
from virtctl.drivers.sim.driver import SimDriver
from virtctl.errors import DriverError, ErrorCode
from virtctl.model import Kind, LiveOp, NetworkCommand, NetworkSection
from virtctl.xmlutil import parse

@pytest.fixture
def images() -> Iterator[Path]:
    """A shared test directory QEMU can read (support.shared_dir)."""
    with shared_dir() as root:
        yield root


# Domains: attach and detach


def test_attach_disk_live_or_config_and_refuse_a_duplicate(
    driver: Driver, factory: Factory, images: Path
) -> None:
    name = running_guest(driver, factory)
    one, two = disk(image(images, "a.raw"), "sda", "scsi"), disk(image(images, "b.raw"), "sdb",
                                                                  "scsi")
    if not supported(driver, LiveOp.ATTACH, lambda: driver.attach_device(name, one)):
        return  # the host lists no such operation and refused it
    driver.attach_device(name, one, live=True, config=False)
    assert "sda" in targets(definition(driver, name, running=True))
    assert "sda" not in targets(definition(driver, name, running=False))
    driver.attach_device(name, two, live=False, config=True)
    assert "sdb" in targets(definition(driver, name, running=False))
    assert "sdb" not in targets(definition(driver, name, running=True))
    with pytest.raises(DriverError):
        driver.attach_device(name, one, live=True, config=False)
    with pytest.raises(DriverError):
        driver.attach_device(name, two, live=False, config=True)
    with pytest.raises(DriverError) as caught:
        driver.attach_device(name, one, live=False, config=False)
    assert caught.value.code is ErrorCode.OPERATION_INVALID


def test_attach_to_a_shutoff_guest_live_is_refused(
    driver: Driver, factory: Factory, images: Path
) -> None:
    name = factory.name()
    driver.define(Kind.DOMAIN, guest_xml(name))
    with pytest.raises(DriverError):
        driver.attach_device(name, disk(image(images, "a.raw"), "sda", "scsi"))
    with pytest.raises(DriverError):
        driver.definition(Kind.DOMAIN, name, running=True)


@pytest.mark.parametrize("bus", ["scsi", "usb"])
def test_detached_disk_is_released(
    driver: Driver, factory: Factory, images: Path, bus: str
) -> None:
    # SCSI and USB disks leave at once, without the guest's help (QEMU too).
    name = running_guest(driver, factory)
    device = disk(image(images, "a.raw"), "sda", bus)
    if not supported(driver, LiveOp.DETACH, lambda: driver.detach_device(name, device)):
        return  # the host lists no such operation and refused it
    driver.attach_device(name, device)
    assert "sda" in targets(definition(driver, name, running=True))
    driver.detach_device(name, device, live=True, config=False)
    assert wait_for(lambda: "sda" not in targets(definition(driver, name, running=True)))


def test_detach_the_guest_does_not_release_returns_and_leaves_it(
    backend: Backend, driver: Driver, factory: Factory, images: Path
) -> None:
    name = running_guest(driver, factory)
    device = disk(image(images, "a.raw"), "vdb", "virtio")
    if not supported(driver, LiveOp.DETACH, lambda: driver.detach_device(name, device)):
        return  # the host lists no such operation and refused it
    driver.attach_device(name, device)
    if isinstance(driver, SimDriver):
        driver.inject_fault("detach", Kind.DOMAIN, name, action="ignore")
    elif backend.id not in OS_LESS_QEMU:
        raise AssertionError(f"{backend.id}: a new backend needs a guest that keeps a disk")
    began = time.monotonic()
    driver.detach_device(name, device, live=True, config=False)
    assert time.monotonic() - began < DEADLINE
    assert "vdb" in targets(definition(driver, name, running=True))


def test_ide_disk_cannot_be_hotplugged(driver: Driver, factory: Factory, images: Path) -> None:
    name = running_guest(driver, factory)
    with pytest.raises(DriverError) as caught:
        driver.attach_device(name, disk(image(images, "a.raw"), "hdb", "ide"))
    assert caught.value.code is ErrorCode.UNSUPPORTED
    assert "hdb" not in targets(definition(driver, name, running=True))


# Domains: devices changed in place


@pytest.mark.parametrize("loaded", [False, True], ids=["empty-tray", "loaded"])
def test_cdrom_media_change_and_eject(
    backend: Backend, driver: Driver, factory: Factory, images: Path, loaded: bool
) -> None:
    first = image(images, "first.iso") if loaded else None
    name = guest_for_media(backend, driver, factory, cdrom(first))
    iso = image(images, "second.iso")
    if not supported(driver, LiveOp.UPDATE, lambda: driver.update_device(name, cdrom(iso))):
        return  # the host lists no such operation and refused it

    def medium(running: bool) -> str | None:
        source = definition(driver, name, running=running).find("devices/disk/source")
        return None if source is None else source.get("file")

    driver.update_device(name, cdrom(iso), live=True, config=False)
    assert medium(True) == iso
    assert medium(False) == first
    driver.update_device(name, cdrom(None), live=True, config=False)
    assert medium(True) is None
    assert medium(False) == first



def test_update_refuses_a_disk_source_change(
    driver: Driver, factory: Factory, images: Path
) -> None:
    name = running_guest(driver, factory)
    if not supported(driver, LiveOp.UPDATE, lambda: driver.update_device(name, cdrom(None))):
        return  # the host lists no such operation and refused it
    driver.attach_device(name, disk(image(images, "a.raw"), "sda", "scsi"))
    with pytest.raises(DriverError):
        driver.update_device(name, disk(image(images, "b.raw"), "sda", "scsi"))



def test_interface_attach_link_down_and_detach(
    backend: Backend, driver: Driver, factory: Factory
) -> None:
    net = nic_network(driver, factory)
    name = running_guest(driver, factory)
    mac = "52:54:00:" + ":".join(secrets.token_hex(1) for _ in range(3))
    iface = (f"<interface type='network'><mac address='{mac}'/><source network='{net}'/>"
             "<model type='virtio'/>{link}</interface>")
    plain = iface.format(link="")
    if not supported(driver, LiveOp.ATTACH, lambda: driver.attach_device(name, plain)):
        return  # the host lists no such operation and refused it
    driver.attach_device(name, plain, live=True, config=False)
    found = nic(definition(driver, name, running=True), mac)
    assert found is not None and nic(definition(driver, name, running=False), mac) is None
    driver.update_device(name, iface.format(link="<link state='down'/>"))
    found = nic(definition(driver, name, running=True), mac)
    assert found is not None and found.find("link").get("state") == "down"
    driver.update_device(name, plain)  # no <link>: up again
    found = nic(definition(driver, name, running=True), mac)
    assert found is not None
    link = found.find("link")
    assert link is None or link.get("state") == "up"
    driver.detach_device(name, plain, live=True, config=False)
    if backend.id in OS_LESS_QEMU:
        # A PCI NIC leaves only when the guest lets go: QEMU returned after ~5 s.
        assert nic(definition(driver, name, running=True), mac) is not None
    else:
        assert wait_for(lambda: nic(definition(driver, name, running=True), mac) is None)


def test_interface_attached_without_mac_gets_one(driver: Driver, factory: Factory) -> None:
    net = nic_network(driver, factory)
    name = running_guest(driver, factory)
    iface = (f"<interface type='network'><source network='{net}'/>"
             "<model type='virtio'/></interface>")
    if not supported(driver, LiveOp.ATTACH, lambda: driver.attach_device(name, iface)):
        return  # the host lists no such operation and refused it
    driver.attach_device(name, iface)
    macs = [m.get("address", "") for m in
            definition(driver, name, running=True).iterfind("devices/interface/mac")]
    assert len(macs) == 1 and macs[0] == macs[0].lower() and macs[0].count(":") == 5


# Domains: vcpus


def test_set_vcpus_live_within_the_maximum(driver: Driver, factory: Factory) -> None:
    name = running_guest(driver, factory, vcpu="<vcpu current='1'>2</vcpu>")
    if not supported(driver, LiveOp.VCPUS, lambda: driver.set_vcpus(name, 2)):
        return  # the host lists no such operation and refused it
    driver.set_vcpus(name, 2, live=True, config=False)
    running = definition(driver, name, running=True).find("vcpu")
    assert running is not None and running.get("current", "2") == "2"
    assert (running.text or "").strip() == "2"
    persistent = definition(driver, name, running=False).find("vcpu")
    assert persistent is not None and persistent.get("current") == "1"
    with pytest.raises(DriverError):
        driver.set_vcpus(name, 3, live=True, config=False)
    with pytest.raises(DriverError):
        driver.set_vcpus(name, 0, live=True, config=False)
    driver.set_vcpus(name, 2, live=False, config=True)
    assert definition(driver, name, running=False).find("vcpu").get("current", "2") == "2"


# Networks: virNetworkUpdate




def test_update_network_entries_while_it_runs(
    backend: Backend, driver: Driver, factory: Factory
) -> None:
    name = factory.name()
    xml, prefix = dhcp_network(factory, name)
    driver.define(Kind.NETWORK, xml)
    driver.start(Kind.NETWORK, name)
    mac = "52:54:00:00:00:" + secrets.token_hex(1)
    host = f"<host mac='{mac}' name='web' ip='{prefix}.10'/>"
    if not supported(driver, LiveOp.NETWORK, lambda: driver.update_network(
        name, NetworkCommand.ADD, NetworkSection.DHCP_HOST, host)):
        return  # the host lists no such operation and refused it
    # test:///default keeps one definition for both (it rejects XML_INACTIVE).
    apart = backend.id != "test"

    def running() -> etree._Element:
        return definition(driver, name, running=True, kind=Kind.NETWORK)

    def persistent() -> etree._Element:
        return definition(driver, name, running=False, kind=Kind.NETWORK)

    update = driver.update_network
    update(name, NetworkCommand.ADD, NetworkSection.DHCP_HOST, host, live=True, config=False)
    assert dhcp_hosts(running()) == {mac: f"{prefix}.10"}
    if apart:
        assert dhcp_hosts(persistent()) == {}
    with pytest.raises(DriverError):  # the same mac again
        update(name, NetworkCommand.ADD, NetworkSection.DHCP_HOST, host)
    moved = f"<host mac='{mac}' name='web' ip='{prefix}.11'/>"
    update(name, NetworkCommand.MODIFY, NetworkSection.DHCP_HOST, moved)
    assert dhcp_hosts(running()) == {mac: f"{prefix}.11"}
    update(name, NetworkCommand.DELETE, NetworkSection.DHCP_HOST, moved)
    assert dhcp_hosts(running()) == {}
    with pytest.raises(DriverError):  # nothing left to delete
        update(name, NetworkCommand.DELETE, NetworkSection.DHCP_HOST, moved)
    with pytest.raises(DriverError):  # ranges are added or deleted, never modified
        update(name, NetworkCommand.MODIFY, NetworkSection.DHCP_RANGE,
               f"<range start='{prefix}.100' end='{prefix}.150'/>")

    record = f"<host ip='{prefix}.20'><hostname>db</hostname></host>"
    update(name, NetworkCommand.ADD, NetworkSection.DNS_HOST, record)
    assert [h.get("ip") for h in running().iterfind("dns/host")] == [f"{prefix}.20"]
    group = "<portgroup name='engineering'/>"
    update(name, NetworkCommand.ADD, NetworkSection.PORTGROUP, group)
    assert [g.get("name") for g in running().iterfind("portgroup")] == ["engineering"]
    update(name, NetworkCommand.DELETE, NetworkSection.PORTGROUP, group)
    assert running().find("portgroup") is None

    update(name, NetworkCommand.ADD, NetworkSection.DHCP_HOST, host, live=False, config=True)
    if apart:  # (the test driver shows the running definition only)
        assert dhcp_hosts(persistent()) == {mac: f"{prefix}.10"}
        assert dhcp_hosts(running()) == {}
    live = driver.snapshot().networks[name]
    assert live.active


def test_update_network_live_needs_it_active(driver: Driver, factory: Factory) -> None:
    name = factory.name()
    xml, prefix = dhcp_network(factory, name)
    driver.define(Kind.NETWORK, xml)
    with pytest.raises(DriverError):
        driver.update_network(name, NetworkCommand.ADD, NetworkSection.DHCP_HOST,
                              f"<host mac='52:54:00:00:00:01' ip='{prefix}.10'/>")
    with pytest.raises(DriverError):
        driver.definition(Kind.NETWORK, name, running=True)


# The running note




def test_running_note_set_replaced_removed(driver: Driver, factory: Factory) -> None:
    name = running_guest(driver, factory)
    driver.set_running_note(name, note("devices/disk[vdb]"))
    assert noted(definition(driver, name, running=True)) == ["devices/disk[vdb]"]
    assert noted(definition(driver, name, running=False)) == []
    driver.set_running_note(name, note("devices/disk[vdc]", "devices/disk[vdd]"))
    assert noted(definition(driver, name, running=True)) == [
        "devices/disk[vdc]", "devices/disk[vdd]"]
    driver.set_running_note(name, None)
    assert noted(definition(driver, name, running=True)) == []
    driver.destroy(Kind.DOMAIN, name)
    with pytest.raises(DriverError):
        driver.set_running_note(name, note("devices/disk[vdb]"))


# Read-only connections


def test_read_only_connection_refuses_every_live_call(
    backend: Backend, driver: Driver, factory: Factory
) -> None:
    name = running_guest(driver, factory, vcpu="<vcpu current='1'>2</vcpu>")
    net = factory.name()
    driver.define(Kind.NETWORK, factory.network_xml(net))
    driver.start(Kind.NETWORK, net)
    device = "<disk type='file' device='disk'><target dev='sda' bus='scsi'/></disk>"
    reader = backend.connect(readonly=True)
    try:
        assert parse(reader.definition(Kind.DOMAIN, name, running=True)).findtext("name") == name
        writes: list[Callable[[], None]] = [
            lambda: reader.attach_device(name, device),
            lambda: reader.detach_device(name, device),
            lambda: reader.update_device(name, device),
            lambda: reader.set_vcpus(name, 2),
            lambda: reader.update_network(net, NetworkCommand.ADD, NetworkSection.PORTGROUP,
                                          "<portgroup name='x'/>"),
            lambda: reader.set_running_note(name, note("devices/disk[sda]")),
            lambda: reader.set_running_note(name, None),
        ]
        for write in writes:
            with pytest.raises(DriverError) as caught:
                write()
            assert caught.value.code is ErrorCode.OPERATION_INVALID
    finally:
        reader.close()
    running = definition(driver, name, running=True)
    assert running.find("vcpu").get("current") == "1" and noted(running) == []
