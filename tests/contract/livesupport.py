"""Helpers of the live-change contract suite (test_live_contract.py): guests, devices,
networks with DHCP, the running note, and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from tests.contract.support import Backend, Factory, libvirt_module
from virtctl.drivers import Driver
from virtctl.errors import DriverError
from virtctl.model import Kind, LiveOp
from virtctl.xmlutil import LIVE_NS, parse, tostring

# Guests without an OS keep what they are asked to release, and QEMU stops waiting
# after ~5 s; these backends run such guests.
OS_LESS_QEMU = ("qemu", "qemu+tcp")
DEADLINE = 30.0


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll `condition` until it holds or `timeout` passes (backing off to 0.5 s)."""
    end, delay = time.monotonic() + timeout, 0.02
    while True:
        if condition():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def supported(driver: Driver, op: LiveOp, call: Callable[[], object]) -> bool:
    """Whether the host lists `op`; where it does not, it must refuse it (checked here),
    and the case ends."""
    if op in driver.live_ops():
        return True
    with pytest.raises(DriverError):
        call()
    return False


def image(folder: Path, name: str) -> str:
    path = folder / name
    with open(path, "wb") as handle:
        handle.truncate(1 << 20)  # a 1 MiB raw image (sparse), for disks and "ISOs"
    path.chmod(0o644)
    return str(path)


def guest_xml(name: str, devices: str = "", vcpu: str = "<vcpu>1</vcpu>") -> str:
    # <acpi/>: the pc machine hot-plugs PCI devices only through ACPI.
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>{vcpu}"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/></features>"
        f"<devices>{devices}</devices></domain>"
    )


def running_guest(driver: Driver, factory: Factory, devices: str = "",
                  vcpu: str = "<vcpu>1</vcpu>") -> str:
    name = factory.name()
    driver.define(Kind.DOMAIN, guest_xml(name, devices, vcpu))
    driver.start(Kind.DOMAIN, name)
    return name


def disk(path: str, target: str, bus: str) -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{path}'/><target dev='{target}' bus='{bus}'/></disk>")


def cdrom(path: str | None) -> str:
    source = f"<source file='{path}'/>" if path else ""
    return (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>{source}"
            "<target dev='hdc' bus='ide'/><readonly/></disk>")


def definition(driver: Driver, name: str, *, running: bool,
               kind: Kind = Kind.DOMAIN) -> etree._Element:
    return parse(driver.definition(kind, name, running=running))


def targets(root: etree._Element) -> set[str]:
    return {t.get("dev", "") for t in root.iterfind("devices/disk/target")}


def nic(root: etree._Element, mac: str) -> etree._Element | None:
    return next((i for i in root.iterfind("devices/interface")
                 if (i.find("mac") is not None and i.find("mac").get("address") == mac)), None)


def guest_for_media(backend: Backend, driver: Driver, factory: Factory,
                    devices: str) -> str:
    """A live guest for CD-ROM media changes. An OS-less QEMU guest is started paused:
    its firmware, probing the drive at boot, may close the tray in the middle of a
    change, which wedges libvirt 9.0 (docs/libvirt-driver.md); a paused guest runs no
    firmware, and its running definition is live all the same."""
    if backend.id not in OS_LESS_QEMU:
        return running_guest(driver, factory, devices)
    name = factory.name()
    driver.define(Kind.DOMAIN, guest_xml(name, devices))
    libvirt = libvirt_module()
    conn = libvirt.open(backend.uri)
    try:
        conn.lookupByName(name).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    finally:
        conn.close()
    return name


def nic_network(driver: Driver, factory: Factory) -> str:
    """An active isolated network for NICs. With DHCP: on qemu:///system the network
    driver keeps each network's MACs under /var/lib/libvirt/dnsmasq, which libvirt 9.0
    creates only when it starts a dnsmasq; without one, plugging a NIC in can fail with
    "Failed to create file '/var/lib/libvirt/dnsmasq/BRIDGE.macs.new'"."""
    net = factory.name()
    driver.define(Kind.NETWORK, dhcp_network(factory, net)[0])
    driver.start(Kind.NETWORK, net)
    return net


def dhcp_network(factory: Factory, name: str) -> tuple[str, str]:
    """An isolated network with DHCP (and DNS, for DNS records); its /24 prefix."""
    root = parse(factory.network_xml(name))
    dns = root.find("dns")
    if dns is not None:
        root.remove(dns)
    ip = root.find("ip")
    prefix = ip.get("address", "").rsplit(".", 1)[0]
    dhcp = etree.SubElement(ip, "dhcp")
    etree.SubElement(dhcp, "range", start=f"{prefix}.100", end=f"{prefix}.150")
    return tostring(root), prefix


def dhcp_hosts(root: etree._Element) -> dict[str, str]:
    return {h.get("mac", ""): h.get("ip", "") for h in root.iterfind("ip/dhcp/host")}


def note(*keys: str) -> str:
    root = etree.Element(f"{{{LIVE_NS}}}unreleased", nsmap={"virtctl-live": LIVE_NS})
    for key in keys:
        etree.SubElement(root, f"{{{LIVE_NS}}}device", key=key)
    return tostring(root, pretty=False)


def noted(root: etree._Element) -> list[str]:
    return [d.get("key", "") for d in
            root.iterfind(f"metadata/{{{LIVE_NS}}}unreleased/{{{LIVE_NS}}}device")]
