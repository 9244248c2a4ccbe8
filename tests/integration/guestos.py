"""A tiny Linux guest for real-QEMU integration tests: it boots in seconds under TCG and
cooperates with hot-unplug, so a virtio disk or NIC detached live is released (gone from
the live XML) and a vcpu set down is offlined and ejected. A guest with no OS never
answers the ACPI eject request, so a detached device would stay forever.

vcpus: hot-add works (the guest onlines the new cpu). Hot-remove works in the guest and in
QEMU (the vcpu thread is gone), but QEMU 7.2 under TCG sends DEVICE_DELETED only for the
vcpu's child (/machine/peripheral/vcpuN/lapic), never for vcpuN itself, so libvirt 9.0's
setVcpusFlags(fewer, LIVE) fails after 5 s with "vcpu unplug request timed out" and keeps
counting the vcpu. That is the host stack, not this guest: a test of live vcpu removal
must expect it on Debian 12.

The guest is Debian's kernel booted directly (no disk, no bootloader) with an initramfs
written here in pure Python (cpio "newc", no external tool): a static busybox, the few
virtio modules the kernel does not build in, and an /init that mounts proc/sys/dev, loads
them, onlines hot-added vcpus, powers off on the ACPI power button, prints READY on the
serial console (ttyS0) and sleeps. The console goes to a file that `wait_ready` polls.

Host packages (ci/install-libvirt.sh installs them): linux-image-cloud-amd64 (or
linux-image-amd64) and busybox-static.

    with booted_guest(conn, disks=["vdb"]) as guest:     # vctl-gos-<random>, ~2.5 s
        dom = guest.dom                                    # running, persistent
        dom.detachDeviceFlags(disk_xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        wait_until(lambda: "vdb" not in dom.XMLDesc(0), 30)
    # destroyed, undefined and its files deleted, however the block was left

Or piece by piece: prepare_guest(name) makes the files, domain_xml(files) or spec(files)
(a virtctl YAML spec as a dict) defines it, wait_ready(files.serial_log, ...) waits for
it, and remove_guest(conn, name) + files.remove() clean up.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

READY_MARKER = "VCTL-GUEST-READY"
KERNEL_PACKAGES = ("linux-image-cloud-amd64", "linux-image-amd64")
BUSYBOX_PACKAGE = "busybox-static"
# QEMU (user libvirt-qemu) must reach every file: pytest's tmp dirs are mode 0700, this
# one is 0711 and each guest gets a 0755 directory inside it.
IMAGES = Path("/var/lib/libvirt/images")
# The drivers a hot-plug test exercises. ACPI PCI hotplug (acpiphp), PCIe native hotplug
# (pciehp) and ACPI cpu hotplug are built into Debian's kernels; virtio is modular. A
# device needs no bound driver to be released, but bound drivers make the unplug real
# (the guest tears the device down before it acks). button: ACPI power button, so
# dom.shutdown() works (evdev: busybox acpid reads /dev/input/event*).
DEFAULT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "button", "evdev",
                   "virtio_console")  # the guest agent's virtio-serial port
# Quiet keeps the TCG guest from spending its boot printing to a 16550 UART.
DEFAULT_CMDLINE = ("console=ttyS0 quiet loglevel=3 mitigations=off nokaslr panic=-1 "
                   "no_timer_check")  # a busy host delays TCG timer ticks: no panic


class GuestOSUnavailable(RuntimeError):
    """The host lacks a kernel or busybox to build the guest; the message names the
    Debian package to install."""


# -- the kernel --------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    image: Path  # /boot/vmlinuz-<version>
    version: str
    modules: Path  # /lib/modules/<version> (may be absent if everything is built in)


def find_kernel(boot: Path = Path("/boot"), modules_root: Path = Path("/lib/modules")) -> Kernel:
    """The newest readable /boot/vmlinuz-*, the cloud flavour first (smaller, boots faster,
    has everything needed). Raises GuestOSUnavailable naming the package when none is."""
    found: list[Kernel] = []
    for image in boot.glob("vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if image.is_file() and os.access(image, os.R_OK):
            found.append(Kernel(image, version, modules_root / version))
    if not found:
        raise GuestOSUnavailable(
            f"no Linux kernel in {boot} to boot the test guest: "
            f"apt-get install -y {KERNEL_PACKAGES[0]} (or {KERNEL_PACKAGES[1]}; "
            "ci/install-libvirt.sh installs it)")

    def rank(kernel: Kernel) -> tuple[bool, tuple[int, ...], str]:
        numbers = tuple(int(n) for n in re.findall(r"\d+", kernel.version))
        return ("cloud" in kernel.version, numbers, kernel.version)

    return max(found, key=rank)


def find_busybox() -> Path:
    """Debian's static busybox (a dynamic one would need its libc in the initramfs)."""
    for candidate in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if candidate.is_file() and _is_static(candidate):
            return candidate
    raise GuestOSUnavailable(
        f"no static busybox for the test guest's initramfs: apt-get install -y "
        f"{BUSYBOX_PACKAGE} (ci/install-libvirt.sh installs it)")


def _is_static(path: Path) -> bool:
    """An ELF with no PT_INTERP program header (no dynamic loader)."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i:i + 4], "little") != 3  # PT_INTERP
               for i in range(0, len(table), phentsize))


# -- modules -----------------------------------------------------------------------------


def module_files(kernel: Kernel, names: Iterable[str]) -> list[tuple[str, bytes]]:
    """(file name, uncompressed .ko bytes) for each wanted module and its dependencies,
    dependencies first, from modules.dep. Built-in modules (modules.builtin) and ones
    this kernel does not have are left out: the guest only loses that driver."""
    dep_file = kernel.modules / "modules.dep"
    if not dep_file.is_file():
        return []
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in dep_file.read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    ordered: list[str] = []

    def visit(path: str) -> None:
        if path in ordered:
            return
        for dep in deps.get(path, []):
            visit(dep)
        ordered.append(path)

    for name in names:
        path = by_name.get(name.replace("-", "_"))
        if path is not None:
            visit(path)
    return [(Path(p).name.split(".ko")[0] + ".ko", _read_module(kernel.modules / p))
            for p in ordered]


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def _read_module(path: Path) -> bytes:
    # busybox insmod (1.35, Debian) takes plain .ko only: decompress at build time.
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise GuestOSUnavailable(f"{path} is zstd-compressed: apt-get install -y zstd")
        return subprocess.run([zstd, "-dc", str(path)], check=True, capture_output=True).stdout
    return data


# -- the initramfs -----------------------------------------------------------------------

INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do
    insmod /lib/modules/$m || echo "vctl-guest: insmod $m failed"
done
# Hot-added vcpus come up offline (no udev here): online them, and log PCI comings and
# goings on the console for whoever reads it.
uevent /bin/sh /etc/uevent.sh &
for c in /sys/devices/system/cpu/cpu*/online; do
    [ -e $c ] && [ "$(cat $c)" = 0 ] && echo 1 > $c
done
# The ACPI power button (dom.shutdown()) powers off.
acpid -c /etc/acpi -l /dev/console -p /run/acpid.pid
# With vctl.dhcp on the kernel command line, ask for a DHCP lease on eth0 (the host's
# dnsmasq then lists it: virtctl addresses reads leases) and take its address.
if grep -q vctl.dhcp /proc/cmdline; then
    ip link set eth0 up && (udhcpc -i eth0 -n -q -t 60 -T 2 -s /etc/udhcpc.sh >/dev/console 2>&1 &)
fi
# vctl.tcp=PORT: listen on TCP PORT (busybox httpd), for a health gate's `tcp` probe.
port=$(sed -n 's/.*vctl.tcp=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
[ -n "$port" ] && httpd -p "$port" -h /tmp && echo "VCTL-TCP=[$port]"
# vctl.cloudinit: cloud-init's "done" file, which a `cloudInit: done` probe reads
# through the guest agent (guest-file-open).
if grep -q vctl.cloudinit /proc/cmdline; then
    mkdir -p /var/lib/cloud/instance && : > /var/lib/cloud/instance/boot-finished
fi
# vctl.disk: print what the first disk starts with (as found at boot), then, with
# vctl.write=WORD, write WORD there: a test tells a disk a rollback restored from one
# the new definition wrote.
if grep -q vctl.disk /proc/cmdline; then
    n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
    echo "VCTL-DISK=[$(head -c 6 /dev/vda | tr -c 'A-Za-z0-9' '.')]"
    word=$(sed -n 's/.*vctl.write=\\([A-Za-z0-9]*\\).*/\\1/p' /proc/cmdline)
    [ -n "$word" ] && printf %s "$word" | dd of=/dev/vda conv=notrunc 2>/dev/null && sync
    [ -n "$word" ] && echo "VCTL-WROTE=[$word]"
fi
# vctl.agent: answer the QEMU guest agent's guest-sync, guest-ping and (whether a file
# exists: a `cloudInit: done` probe) guest-file-open/close on its virtio-serial port.
if grep -q vctl.agent /proc/cmdline; then
    /bin/sh /etc/agent.sh &
fi
echo "{READY_MARKER} kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)"
while :; do sleep 3600; done
"""

AGENT = r"""while :; do
    port=""
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
    done
    if [ -z "$port" ] || [ ! -e "$port" ]; then sleep 0.5; continue; fi
    # One descriptor both ways: a virtio-serial port opens once at a time.
    while read -r line <&3; do
        case "$line" in
        *guest-sync*)
            id=$(echo "$line" | sed -n 's/.*"id": *\([0-9]*\).*/\1/p')
            echo "{\"return\": $id}" >&3 ;;
        *guest-ping*) echo '{"return": {}}' >&3 ;;
        *guest-file-open*)
            path=$(echo "$line" | sed -n 's/.*"path": *"\([^"]*\)".*/\1/p')
            if [ -n "$path" ] && [ -e "$path" ]; then echo '{"return": 1000}' >&3
            else echo '{"error": {"class": "GenericError", "desc": "No such file"}}' >&3
            fi ;;
        *guest-file-close*) echo '{"return": {}}' >&3 ;;
        *) echo '{"error": {"class": "CommandNotFound", "desc": "vctl-guest"}}' >&3 ;;
        esac
    done 3<>"$port"
    sleep 0.2
done
"""

UEVENT = """case "$ACTION:$SUBSYSTEM" in
add:cpu)
    [ -e /sys$DEVPATH/online ] && echo 1 > /sys$DEVPATH/online
    echo "vctl-guest: cpu added $DEVPATH" ;;
remove:cpu) echo "vctl-guest: cpu removed $DEVPATH" ;;
add:pci|remove:pci) echo "vctl-guest: pci $ACTION $DEVPATH" ;;
esac
"""

# udhcpc's script: take the leased address (bound, renew), and say it on the console.
UDHCPC = """#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface" && echo "VCTL-IP=[$ip]" ;;
esac
"""

POWEROFF = """#!/bin/sh
echo "vctl-guest: power button, powering off"
sync
poweroff -f
"""


def build_initramfs(dest: Path, kernel: Kernel | None = None,
                    modules: Sequence[str] = DEFAULT_MODULES) -> Path:
    """Write the guest's initramfs (uncompressed newc cpio: nothing to inflate under TCG)
    to `dest`, mode 0644, and return it."""
    kernel = kernel or find_kernel()
    busybox = find_busybox().read_bytes()
    kos = module_files(kernel, modules)
    cpio = _Cpio()
    for folder in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys",
                   "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules", "tmp", "run",
                   "var", "var/log"):
        cpio.directory(folder)
    cpio.device("dev/console", major=5, minor=1)  # init's stdio before devtmpfs is up
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.file("init", INIT.encode(), 0o755)
    cpio.file("etc/uevent.sh", UEVENT.encode(), 0o644)
    cpio.file("etc/agent.sh", AGENT.encode(), 0o644)
    cpio.file("etc/udhcpc.sh", UDHCPC.encode(), 0o755)
    # busybox acpid runs <confdir>/PWRF/00000080 for the power button.
    cpio.file("etc/acpi/PWRF/00000080", POWEROFF.encode(), 0o755)
    for name, data in kos:
        cpio.file(f"lib/modules/{name}", data, 0o644)
    cpio.file("etc/modules", "".join(f"{n}\n" for n, _ in kos).encode(), 0o644)
    dest.write_bytes(cpio.finish())
    dest.chmod(0o644)
    return dest


class _Cpio:
    """A newc ("070701") archive writer, the format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", *, rmajor: int = 0,
               rminor: int = 0, nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor,
                  len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.parts += [header, encoded, _pad(len(header) + len(encoded)), data,
                       _pad(len(data))]
        self.ino += 1

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, perm: int) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rmajor=major, rminor=minor)

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        blob = b"".join(self.parts)
        return blob + _pad(len(blob), 512)


def _pad(length: int, to: int = 4) -> bytes:
    return b"\0" * (-length % to)


# -- files for one guest -----------------------------------------------------------------


@dataclass(frozen=True)
class GuestFiles:
    """Everything one guest reads or writes, in one directory QEMU can reach."""

    name: str
    directory: Path
    kernel: Path
    initrd: Path
    serial_log: Path
    cmdline: str = DEFAULT_CMDLINE

    def image(self, name: str, size: str = "16M", fmt: str = "qcow2") -> Path:
        """A fresh disk image in the guest's directory (qemu-img create), mode 0644."""
        path = self.directory / name
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
        path.chmod(0o644)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def prepare_guest(name: str, *, root: Path = IMAGES, kernel: Kernel | None = None,
                  modules: Sequence[str] = DEFAULT_MODULES,
                  cmdline: str = DEFAULT_CMDLINE) -> GuestFiles:
    """A 0755 directory root/<name> holding a private copy of the kernel (libvirt's DAC
    driver chowns the kernel and initrd to libvirt-qemu while the guest runs and back
    afterwards; a copy keeps /boot and concurrent guests out of that), the initramfs and
    the path of the serial log (QEMU's, through virtlogd, creates it)."""
    kernel = kernel or find_kernel()
    find_busybox()  # fail on a missing package before making anything
    directory = root / name
    directory.mkdir(mode=0o755)
    try:
        directory.chmod(0o755)  # whatever the umask
        kernel_copy = directory / "vmlinuz"
        shutil.copyfile(kernel.image, kernel_copy)
        kernel_copy.chmod(0o644)
        initrd = build_initramfs(directory / "initramfs.cpio", kernel, modules)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return GuestFiles(name, directory, kernel_copy, initrd, directory / "serial.log", cmdline)


# -- definitions -------------------------------------------------------------------------


def os_xml(files: GuestFiles, machine: str = "pc") -> str:
    return (f"<os><type arch='x86_64' machine={quoteattr(machine)}>hvm</type>"
            f"<kernel>{escape(str(files.kernel))}</kernel>"
            f"<initrd>{escape(str(files.initrd))}</initrd>"
            f"<cmdline>{escape(files.cmdline)}</cmdline></os>")


def serial_xml(files: GuestFiles) -> str:
    return (f"<serial type='file'><source path={quoteattr(str(files.serial_log))}/>"
            "<target port='0'/></serial>")


def domain_xml(files: GuestFiles, *, machine: str = "pc", memory_mib: int = 256,
               vcpus: int = 1, current_vcpus: int | None = None,
               devices: str = "") -> str:
    """A whole <domain type='qemu'> (TCG): direct kernel boot, ACPI on (hot-unplug is
    ACPI's), the serial console in files.serial_log, no graphics, plus `devices` (XML)."""
    current = f" current='{current_vcpus}'" if current_vcpus is not None else ""
    return (f"<domain type='qemu'><name>{escape(files.name)}</name>"
            f"<memory unit='MiB'>{memory_mib}</memory>"
            f"<vcpu placement='static'{current}>{vcpus}</vcpu>"
            f"{os_xml(files, machine)}<features><acpi/><apic/></features>"
            "<on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>"
            f"<devices>{serial_xml(files)}<memballoon model='none'/>{devices}</devices>"
            "</domain>")


def spec(files: GuestFiles, *, machine: str = "pc", memory: str = "256MiB",
         vcpus: int | dict[str, int] = 1) -> dict[str, Any]:
    """The same guest as a virtctl YAML spec (a dict: yaml.safe_dump it, or add disks,
    interfaces, ... first). See docs/spec-format.md."""
    return {
        "kind": "Domain",
        "name": files.name,
        "type": "qemu",
        "memory": memory,
        "vcpus": vcpus,
        "os": {"type": "hvm", "arch": "x86_64", "machine": machine,
               "kernel": str(files.kernel), "initrd": str(files.initrd),
               "cmdline": files.cmdline},
        "features": {"acpi": True, "apic": True},
        "onReboot": "destroy",
        "onCrash": "destroy",
        "serials": [{"type": "file", "source": {"path": str(files.serial_log)},
                     "target": {"port": 0}}],
        "memballoon": {"model": "none"},
    }


# -- waiting -----------------------------------------------------------------------------


def wait_ready(log_path: Path, timeout: float = 120.0, marker: str = READY_MARKER,
               interval: float = 0.1, dom: Any = None) -> float:
    """Poll the serial log until the guest prints `marker`; return the seconds waited.
    Raises TimeoutError with the log's tail after `timeout` seconds, or at once if `dom`
    (a libvirt virDomain) is given and stops running (a guest panic ends it)."""
    start = time.monotonic()
    deadline = start + timeout
    needle = marker.encode()
    seen = b""
    offset = 0
    while True:
        try:
            with log_path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            seen = (seen + chunk)[-65536:]
            if needle in seen:
                return time.monotonic() - start
        now = time.monotonic()
        stopped = dom is not None and not chunk and not dom.isActive()
        if now >= deadline or stopped:
            tail = seen[-2000:].decode(errors="replace")
            why = "the guest stopped" if stopped else f"after {timeout:g}s"
            raise TimeoutError(f"no {marker!r} in {log_path}: {why}; the log ends:\n{tail}")
        time.sleep(min(interval, deadline - now))


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> float:
    """Poll `predicate()` until true; return the seconds waited, or raise TimeoutError."""
    start = time.monotonic()
    deadline = start + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true after {timeout:g}s: {predicate}")
        time.sleep(interval)
    return time.monotonic() - start


# -- all of it at once -------------------------------------------------------------------


@dataclass(frozen=True)
class Booted:
    dom: Any  # libvirt.virDomain, persistent and running
    files: GuestFiles
    boot_seconds: float  # create() to the ready marker


def virtio_disk_xml(path: Path, target: str, fmt: str = "qcow2") -> str:
    return (f"<disk type='file' device='disk'><driver name='qemu' type={quoteattr(fmt)}/>"
            f"<source file={quoteattr(str(path))}/>"
            f"<target dev={quoteattr(target)} bus='virtio'/></disk>")


def remove_guest(conn: Any, name: str) -> None:
    """Destroy and undefine the domain `name` if it exists; never raises for a domain
    that is already stopped or gone."""
    import libvirt

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    for step in (dom.destroy, dom.undefine):
        with contextlib.suppress(libvirt.libvirtError):
            step()


@contextlib.contextmanager
def booted_guest(conn: Any, *, name: str | None = None, machine: str = "pc",
                 memory_mib: int = 256, vcpus: int = 1, current_vcpus: int | None = None,
                 disks: Sequence[str] = (), devices: str = "",
                 timeout: float = 120.0) -> Iterator[Booted]:
    """Define, start and wait for a guest named `name` (vctl-gos-<random> by default) on
    the libvirt connection `conn`; on leaving, however it is left, destroy and undefine
    it and delete its files. `disks` are targets ("vdb", ...) each given a fresh 16M
    qcow2 (<target>.qcow2 in files.directory) on the virtio bus."""
    name = name or "vctl-gos-" + secrets.token_hex(4)
    files = prepare_guest(name)
    try:
        extra = "".join(virtio_disk_xml(files.image(f"{t}.qcow2"), t) for t in disks)
        dom = conn.defineXML(domain_xml(files, machine=machine, memory_mib=memory_mib,
                                        vcpus=vcpus, current_vcpus=current_vcpus,
                                        devices=extra + devices))
        dom.create()
        seconds = wait_ready(files.serial_log, timeout, dom=dom)
        yield Booted(dom, files, seconds)
    finally:
        remove_guest(conn, name)
        files.remove()
