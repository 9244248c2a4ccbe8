"""Live updates on a real QEMU guest on qemu:///system (issue 13): a tiny Linux guest
(guestos.py) that answers ACPI hot-unplug has a virtio disk and a virtio NIC hot-added
and removed, its CD-ROM media changed and ejected, its vcpus raised, and DHCP hosts added
to and removed from the active network it is on; after each step the running definition
shows the change, the guest keeps its domain id (never restarted), the network keeps its
dnsmasq (never restarted), and a second apply plans nothing. A guest with no OS cannot
release a device: the change ends restart-pending, noted, not asked again, and the disk
file is untouched; a guest without ACPI gets no PCI hot-plug at all.

Names are vctl-live-<random>, bridges vctllv<random>, subnets free on this host; every
guest, network and file is removed afterwards, however a test ends."""

from __future__ import annotations

import random
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import (
    libvirt_module,
    purge_libvirt,
    require_connection,
    unavailable,
)
from tests.integration import guestos
from tests.integration.live_scenarios import (
    Lab,
    assert_live_only,
    device,
    held,
    vcpus_running,
    verbs,
)
from virtctl import api
from virtctl.model import Kind

URI = "qemu:///system"
MAC_A, MAC_B = "52:54:00:5e:01:0a", "52:54:00:5e:01:0b"


def free_subnet(conn: object) -> int:
    """A 192.168.X.0/24 no interface and no libvirt network on this host uses."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True,
                          check=False).stdout
    used += "".join(n.XMLDesc(0) for n in conn.listAllNetworks(0))  # type: ignore[attr-defined]
    free = [x for x in range(100, 200) if f"192.168.{x}." not in used]
    assert free, "no free 192.168.X.0/24 subnet on this host"
    return random.choice(free)


@pytest.fixture
def conn() -> Iterator[object]:
    require_connection(URI)
    connection = libvirt_module().open(URI)
    try:
        yield connection
    finally:
        connection.close()


def make_lab(conn: object, specs: Path, *, booted: bool, acpi: bool = True,
             timeout: float = 30) -> tuple[Lab, guestos.GuestFiles]:
    try:
        files = guestos.prepare_guest("vctl-live-" + secrets.token_hex(4))
    except guestos.GuestOSUnavailable as exc:
        unavailable(str(exc))
    name = files.name
    lab = Lab(uri=URI, specs=specs, guest=name, network=name + "-n",
              subnet=free_subnet(conn), bridge="vctllv" + secrets.token_hex(3),
              images=files.directory, timeout=timeout, acpi=acpi, disk_format="qcow2")
    if booted:
        full = guestos.spec(files)
        lab.os = full["os"]
        lab.extra = {k: full[k] for k in ("onReboot", "onCrash", "serials", "memballoon")}
        lab.extra["features"] = {"acpi": True, "apic": True}
    for image in ("b.qcow2", "c.qcow2"):
        files.image(image, "8M", "qcow2")
    for iso in ("a.iso", "b.iso"):
        files.image(iso, "1M", "raw")
    return lab, files


@pytest.fixture
def booted(conn: object, specs: Path) -> Iterator[tuple[Lab, guestos.GuestFiles]]:
    lab, files = make_lab(conn, specs, booted=True)
    try:
        yield lab, files
    finally:
        purge_libvirt(URI, [lab.guest, lab.network])
        files.remove()


def dnsmasq_pid(network: str) -> str:
    return Path(f"/run/libvirt/network/{network}.pid").read_text().strip()


def test_live_changes_reach_a_running_guest_and_network_without_a_restart(
        booted: tuple[Lab, guestos.GuestFiles]) -> None:
    lab, files = booted
    lab.write(nics=[MAC_A])
    lab.settled()
    guestos.wait_ready(files.serial_log, timeout=180)  # the OS answers hot-unplug now
    started, dnsmasq = lab.guest_id(), dnsmasq_pid(lab.network)

    lab.write(nics=[MAC_A], disks=["b.qcow2"])
    assert_live_only(lab.settled(), lab, "attach-device")
    assert device(lab.running(), "devices/disk[vdb]") is not None
    lab.write(nics=[MAC_A])
    detached = lab.settled()
    assert_live_only(detached, lab, "detach-device")
    assert device(lab.running(), "devices/disk[vdb]") is None
    assert (files.directory / "b.qcow2").exists()  # detached, not deleted
    # This guest has no agent to ask whether vdb is mounted: the plan says so (issue 22).
    assert any("disk vdb: no guest agent answers" in n and "loses the disk at once" in n
               for n in detached.plan.notes), detached.plan.notes

    lab.write(nics=[MAC_A, MAC_B])
    assert_live_only(lab.settled(), lab, "attach-device")
    assert device(lab.running(), f"devices/interface[{MAC_B}]") is not None
    lab.write(nics=[MAC_A])
    assert_live_only(lab.settled(), lab, "detach-device")
    assert device(lab.running(), f"devices/interface[{MAC_B}]") is None

    for medium in ("a.iso", "b.iso", ""):
        lab.write(nics=[MAC_A], cdrom=medium)
        assert_live_only(lab.settled(), lab, "update-device")
        source = device(lab.running(), "devices/disk[hdc]").find("source")
        # QEMU's empty tray shows a bare <source index='N'/>.
        shown = source.get("file") if source is not None else None
        assert shown == (str(files.directory / medium) if medium else None)

    lab.write(nics=[MAC_A], vcpus=(2, 2))
    raised = lab.settled()
    assert_live_only(raised, lab, "set-vcpus")
    assert vcpus_running(lab.running()) == 2
    (setv,) = [r for r in raised.report.results if r.action.verb == "set-vcpus"]
    assert "no guest agent: the guest must online" in setv.action.reason
    assert "no guest agent: the guest must online the new vcpus itself" in setv.detail

    for hosts in ([(MAC_A, "10")], []):
        lab.write(nics=[MAC_A], vcpus=(2, 2), dhcp_hosts=hosts)
        changed = lab.settled()
        assert verbs(changed, lab.network) == ["define", "update-network"]
        found = device(lab.running(Kind.NETWORK),
                       f"ip[192.168.{lab.subnet}.1]/dhcp/host[{MAC_A}]")
        assert (found is not None) == bool(hosts)
    assert dnsmasq_pid(lab.network) == dnsmasq  # the network never restarted
    assert lab.guest_id() == started  # nor did the guest


@pytest.fixture
def bios(conn: object, specs: Path) -> Iterator[tuple[Lab, guestos.GuestFiles]]:
    lab, files = make_lab(conn, specs, booted=False, timeout=1)
    try:
        yield lab, files
    finally:
        purge_libvirt(URI, [lab.guest, lab.network])
        files.remove()


def test_a_guest_that_cannot_release_a_disk_leaves_it_pending(
        bios: tuple[Lab, guestos.GuestFiles]) -> None:
    lab, files = bios
    lab.write(disks=["b.qcow2"])
    lab.settled()
    started = lab.guest_id()
    lab.write()
    first = lab.apply()  # asked; the OS-less guest never answers; no error
    (detach,) = [r for r in first.report.results if r.action.verb == "detach-device"]
    assert "has not released" in detach.detail
    assert [c.path for c in first.remaining.pending[0].changes] == ["devices/disk[vdb]"]
    assert held(lab.running()) == {"devices/disk[vdb]"}
    again = lab.apply()  # not asked again: no second detach, no error
    assert again.plan.empty and any("has not released" in n for n in again.plan.notes)
    assert lab.guest_id() == started and (files.directory / "b.qcow2").exists()
    restarted = lab.apply(api.Policy(allow_restart=True, force_stop=True))
    assert verbs(restarted, lab.guest) == ["shutdown", "start"]
    running = lab.running()
    assert device(running, "devices/disk[vdb]") is None and not held(running)


def test_a_guest_without_acpi_gets_no_pci_hot_plug(conn: object, specs: Path) -> None:
    lab, files = make_lab(conn, specs, booted=False, acpi=False)
    try:
        lab.write()
        lab.settled()
        lab.write(disks=["b.qcow2"])
        result = lab.apply()
        assert verbs(result, lab.guest) == ["define"]
        assert [c.path for c in result.remaining.pending[0].changes] == ["devices/disk[vdb]"]
        assert device(lab.running(), "devices/disk[vdb]") is None
    finally:
        purge_libvirt(URI, [lab.guest, lab.network])
        files.remove()
