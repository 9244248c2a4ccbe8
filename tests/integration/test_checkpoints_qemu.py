"""Checkpoints, the health gate and rollback on qemu:///system with a real guest
(issue 25; docs/checkpoints.md): the tiny Linux of guestos.py, whose init answers the
QEMU guest agent's ping when its kernel command line says `vctl.agent`, prints what its
disk starts with at boot (`vctl.disk`) and then writes a word there (`vctl.write=W`).
The machine-type change is pc-i440fx-7.2 -> pc-i440fx-6.2 (a restart-class change the
guest boots under either way); health fails for real when the new definition's command
line leaves out `vctl.agent`.

Names are vctl-test-XXXX-cp<random> (tests/contract/support.py's PREFIX); the pool's
directory is /var/tmp/<name>/images. The guest, its snapshots, the pool and the files
are removed afterwards, however a test ends.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.support import PREFIX, libvirt_module, purge_libvirt, require_connection
from tests.integration import guestos
from virtctl.xmlutil import parse

pytestmark = pytest.mark.slow

URI = "qemu:///system"
OLD, NEW = "pc-i440fx-7.2", "pc-i440fx-6.2"


@dataclass
class Lab:
    name: str
    directory: Path
    files: guestos.GuestFiles
    specs: Path
    cli: Callable[..., Any]

    def spec(self, machine: str, *, agent: bool = True, write: str = "",
             timeout: str = "300s", keep: int = 3, probe: bool = True) -> None:
        dom = guestos.spec(self.files, machine=machine)
        flags = " vctl.disk" + (" vctl.agent" if agent else "") + (
            f" vctl.write={write}" if write else "")
        dom["os"]["cmdline"] = guestos.DEFAULT_CMDLINE + flags
        dom["serials"][0]["source"]["append"] = True  # every boot's lines stay
        dom["disks"] = [{"type": "volume", "device": "disk",
                         "driver": {"name": "qemu", "type": "qcow2"},
                         "source": {"pool": self.name, "volume": "root.qcow2"},
                         "target": "vda", "bus": "virtio"}]
        dom["channels"] = [{"type": "unix", "target": {"type": "virtio",
                                                       "name": "org.qemu.guest_agent.0"}}]
        dom["updatePolicy"] = {"mode": "restart", "checkpoint": {"keep": keep}}
        if probe:  # else the gate only waits for the guest to run
            dom["health"] = {"agent": True, "timeout": timeout}
        docs = [
            {"kind": "StoragePool", "name": self.name, "type": "dir",
             "target": {"path": str(self.directory / "images"),
                        "permissions": {"mode": "0755"}}},
            {"kind": "Volume", "pool": self.name, "name": "root.qcow2", "format": "qcow2",
             "capacity": "16MiB"},
            dom,
        ]
        (self.specs / "guest.yaml").write_text(yaml.safe_dump_all(docs))

    def apply(self, *flags: str) -> Any:
        return self.cli("apply", "-c", URI, "--shutdown-timeout", "120", *flags, "-f",
                        str(self.specs))

    def machine(self, *, running: bool = True) -> str:
        libvirt = libvirt_module()
        conn = libvirt.open(URI)
        try:
            dom = conn.lookupByName(self.name)
            xml = dom.XMLDesc(0 if running else libvirt.VIR_DOMAIN_XML_INACTIVE)
            assert not running or dom.isActive()
            return parse(xml).find("os/type").get("machine")
        finally:
            conn.close()

    def log(self) -> str:
        return self.files.serial_log.read_text(errors="replace")

    def checkpoints(self) -> list[str]:
        result = self.cli("checkpoints", "-c", URI, self.name, "-o", "json")
        assert result.code == 0, result.err
        return [c["name"] for c in result.json()["checkpoints"]]


def remove_guest_with_snapshots(name: str) -> None:
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        conn.close()
        return
    try:
        with contextlib.suppress(libvirt.libvirtError):
            dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    finally:
        conn.close()


@contextlib.contextmanager
def guest_space(name: str,
                extra: tuple[str, ...] = ()) -> Iterator[tuple[Path, guestos.GuestFiles]]:
    """A test guest's directory in /var/tmp (its pool's target, which libvirt's qemu
    user must reach) and its boot files; afterwards the guest with its snapshots, the
    libvirt objects named `name` and `extra`, the files and the directory go."""
    directory = Path("/var/tmp") / name
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    files = guestos.prepare_guest(name)
    try:
        yield directory, files
    finally:
        try:
            remove_guest_with_snapshots(name)
            purge_libvirt(URI, [name, *extra])
        finally:
            files.remove()
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def lab(cli: Callable[..., Any], specs: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    require_connection(URI)
    monkeypatch.setenv("VIRTCTL_CACHE_DIR", str(tmp_path / "cache"))
    name = f"{PREFIX}cp{secrets.token_hex(3)}"
    with guest_space(name) as (directory, files):
        yield Lab(name, directory, files, specs, cli)


def disk_lines(log: str) -> list[str]:
    return re.findall(r"VCTL-DISK=\[([^\]]*)\]", log)


def booted(lab: Lab, times: int) -> None:
    """The guest printed its ready line `times` times (the log keeps every boot)."""
    guestos.wait_until(lambda: lab.log().count(guestos.READY_MARKER) >= times, 300, 0.2)


def test_a_machine_change_that_passes_keeps_the_new_definition(lab: Lab) -> None:
    lab.spec(OLD, write="BEFORE")
    first = lab.apply()
    assert first.code == 0, first.out + first.err
    booted(lab, 1)
    lab.spec(NEW)
    result = lab.apply()
    assert result.code == 0, result.out + result.err
    assert "checkpoint before restart, then health gate (agent)" in result.out
    assert lab.machine() == NEW
    assert len(lab.checkpoints()) == 1
    # The second boot found the disk as the first left it: nothing was rolled back.
    assert disk_lines(lab.log())[-1] == "BEFORE"
    again = lab.cli("diff", "-c", URI, "-f", str(lab.specs))
    assert again.code == 0, again.out + again.err


def test_a_change_that_fails_health_is_rolled_back_with_its_disk(lab: Lab) -> None:
    lab.spec(OLD, write="BEFORE")
    assert lab.apply().code == 0
    booted(lab, 1)
    # The new definition boots, writes AFTER over the disk and never answers its agent.
    lab.spec(NEW, agent=False, write="AFTER", timeout="60s")
    result = lab.apply()
    assert result.code == 1, result.out + result.err
    assert "change failed health and was rolled back" in result.out
    assert lab.machine() == OLD and lab.machine(running=False) == OLD
    booted(lab, 3)
    log = lab.log()
    assert "VCTL-WROTE=[AFTER]" in log  # the failed definition did write its disk
    # ...and the boot after the rollback found the disk as it was at the checkpoint.
    assert disk_lines(log)[-1] == "BEFORE", disk_lines(log)


def test_rollback_to_an_older_checkpoint_and_retention(lab: Lab) -> None:
    lab.spec(OLD, keep=2)
    assert lab.apply().code == 0
    booted(lab, 1)  # acpid runs: the restarts below shut it down gracefully
    seen = []
    for machine in (NEW, OLD, NEW):
        lab.spec(machine, keep=2)
        result = lab.apply()
        assert result.code == 0, result.out + result.err
        seen.append(lab.checkpoints()[-1])
        assert len(lab.checkpoints()) <= 2
    assert lab.checkpoints() == seen[-2:]  # the oldest went first
    older = lab.checkpoints()[0]  # taken before the change to OLD: the guest ran NEW
    dry = lab.cli("rollback", "-c", URI, lab.name, "--to", older, "--dry-run")
    assert dry.code == 2 and older in dry.out
    done = lab.cli("rollback", "-c", URI, lab.name, "--to", older)
    assert done.code == 0, done.out + done.err
    assert lab.machine() == NEW
