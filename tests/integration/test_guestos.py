"""The tiny hot-unplug guest of guestos.py works: its initramfs is a well-formed newc
archive, and booted on qemu:///system it releases a virtio disk and a virtio NIC detached
live (they leave the live XML) and powers off on the ACPI power button. Guests are named
vctl-gos-<random> and removed, with their files, however a test ends."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import libvirt_module, require_connection, unavailable
from tests.integration import guestos


def read_newc(blob: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc cpio archive, up to its trailer."""
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert blob[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(blob[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = blob[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        data = blob[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data)


@pytest.fixture
def kernel() -> guestos.Kernel:
    try:
        kernel = guestos.find_kernel()
        guestos.find_busybox()
    except guestos.GuestOSUnavailable as exc:
        unavailable(str(exc))
    return kernel


def test_the_initramfs_is_a_newc_archive_with_init_busybox_and_modules(
        kernel: guestos.Kernel, tmp_path: Path) -> None:
    path = guestos.build_initramfs(tmp_path / "initrd", kernel)
    entries = read_newc(path.read_bytes())
    mode, init = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and guestos.READY_MARKER.encode() in init
    assert entries["bin/busybox"][1][:4] == b"\x7fELF"
    assert stat.S_ISCHR(entries["dev/console"][0])
    listed = entries["etc/modules"][1].decode().split()
    for name in listed:
        assert entries[f"lib/modules/{name}"][1][:4] == b"\x7fELF"  # decompressed
    builtin = (kernel.modules / "modules.builtin").read_text() if listed else ""
    for wanted in ("virtio_pci", "virtio_blk", "virtio_net"):
        assert f"{wanted}.ko" in listed or f"/{wanted}.ko" in builtin
    # Dependencies load first: virtio before virtio_pci.
    if "virtio.ko" in listed and "virtio_pci.ko" in listed:
        assert listed.index("virtio.ko") < listed.index("virtio_pci.ko")


@pytest.fixture
def conn(kernel: guestos.Kernel) -> Iterator[Any]:
    require_connection("qemu:///system")
    libvirt = libvirt_module()
    connection = libvirt.open("qemu:///system")
    try:
        yield connection
    finally:
        connection.close()


def live_xml(dom: Any) -> str:
    return str(dom.XMLDesc(0))


@pytest.mark.qemu
@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_the_guest_releases_a_hot_detached_disk_and_nic(conn: Any, machine: str) -> None:
    libvirt = libvirt_module()
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE
    with guestos.booted_guest(conn, machine=machine, disks=["vdb"]) as guest:
        dom = guest.dom
        disk = re.search(r"<disk type='file' device='disk'>.*?</disk>", live_xml(dom), re.S)
        assert disk is not None and "dev='vdb'" in disk.group(0)
        dom.detachDeviceFlags(disk.group(0), live)
        guestos.wait_until(lambda: "dev='vdb'" not in live_xml(dom), 30)

        mac = "52:54:00:6f:00:01"
        dom.attachDeviceFlags(f"<interface type='user'><mac address='{mac}'/>"
                              "<model type='virtio'/></interface>", live)
        nic = re.search(r"<interface type='user'>.*?</interface>", live_xml(dom), re.S)
        assert nic is not None and mac in nic.group(0)
        dom.detachDeviceFlags(nic.group(0), live)
        guestos.wait_until(lambda: mac not in live_xml(dom), 30)

        assert dom.isActive()

        def removals() -> int:
            return guest.files.serial_log.read_text(errors="replace").count(
                "vctl-guest: pci remove")

        # The guest logs each removal on its serial port, which reaches the file a
        # little after libvirt reports the device gone.
        guestos.wait_until(lambda: removals() >= 2, 30)
        assert removals() == 2


@pytest.mark.qemu
def test_the_guest_powers_off_on_the_acpi_power_button(conn: Any) -> None:
    with guestos.booted_guest(conn) as guest:
        guest.dom.shutdown()
        guestos.wait_until(lambda: not guest.dom.isActive(), 60)


def test_compressed_modules_are_decompressed_and_ordered_after_their_dependencies(
        tmp_path: Path) -> None:
    import gzip
    import lzma

    tree = tmp_path / "lib-modules"
    (tree / "kernel").mkdir(parents=True)
    (tree / "kernel/virtio.ko.xz").write_bytes(lzma.compress(b"\x7fELF-virtio"))
    (tree / "kernel/virtio_pci.ko.gz").write_bytes(gzip.compress(b"\x7fELF-virtio-pci"))
    (tree / "modules.dep").write_text("kernel/virtio_pci.ko.gz: kernel/virtio.ko.xz\n"
                                      "kernel/virtio.ko.xz:\n")
    fake = guestos.Kernel(tmp_path / "vmlinuz", "0-test", tree)
    assert guestos.module_files(fake, ["virtio_pci", "absent"]) == [
        ("virtio.ko", b"\x7fELF-virtio"), ("virtio_pci.ko", b"\x7fELF-virtio-pci")]
