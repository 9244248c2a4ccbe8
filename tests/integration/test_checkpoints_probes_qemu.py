"""The health gate's TCP and cloud-init probes, and a checkpoint with memory state, on
qemu:///system with a real guest (issue 25; docs/checkpoints.md). The sim's versions
are in test_checkpoints_sim.py.

The guest is guestos.py's tiny Linux on a network of the test's own: it takes a DHCP
lease (`vctl.dhcp`: the probe finds the address in the lease, as for any guest), listens
on a TCP port (`vctl.tcp=PORT`), and writes cloud-init's boot-finished file
(`vctl.cloudinit`), which its guest agent reports through guest-file-open as qemu-ga
does (test_cloud_guest_qemu.py checks the probe against cloud-init and qemu-ga
themselves). A definition that leaves one of them out fails its gate for that reason.

One guest for the module (CI time), in order: a machine-type change gated on both
probes passes; one whose guest does not open its port fails and is rolled back; one
under a memory checkpoint whose guest never finishes cloud-init is rolled back to the
running guest's memory (libvirt says it runs "from snapshot": no boot). Each test
first applies the spec the one before should have left, a no-op when it passed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.support import (
    PREFIX,
    free_subnet,
    libvirt_module,
    require_connection,
)
from tests.integration import guestos
from tests.integration.crashkit import virtctl
from tests.integration.test_checkpoints_qemu import NEW, OLD, URI, guest_space
from virtctl.drivers import connect
from virtctl.xmlutil import parse

pytestmark = pytest.mark.slow

PORT = 2222
FAILING = "12s"  # a failing definition's gate (the passing one shows the probe reads the port)


@dataclass
class Guest:
    name: str
    net: str
    subnet: str
    directory: Path
    files: guestos.GuestFiles
    specs: Path
    state: Path
    machine: str = OLD  # what the last passing test left running

    def spec(self, machine: str, *, tcp: bool = True, cloudinit: bool = True,
             memory: bool = False, timeout: str = "300s") -> None:
        dom = guestos.spec(self.files, machine=machine, memory="128MiB")
        dom["os"]["cmdline"] = guestos.DEFAULT_CMDLINE + " vctl.dhcp vctl.agent" + (
            f" vctl.tcp={PORT}" if tcp else "") + (" vctl.cloudinit" if cloudinit else "")
        dom["serials"][0]["source"]["append"] = True  # every boot's lines stay
        dom["disks"] = [{"type": "volume", "device": "disk",
                         "driver": {"name": "qemu", "type": "qcow2"},
                         "source": {"pool": self.name, "volume": "root.qcow2"},
                         "target": "vda", "bus": "virtio"}]
        dom["channels"] = [{"type": "unix", "target": {"type": "virtio",
                                                       "name": "org.qemu.guest_agent.0"}}]
        dom["interfaces"] = [{"type": "network", "source": {"network": self.net},
                              "model": "virtio"}]
        dom["updatePolicy"] = {"mode": "restart",
                               "checkpoint": {"keep": 2} | ({"memory": True} if memory else {})}
        dom["health"] = {"tcp": {"port": PORT}, "cloudInit": "done", "timeout": timeout}
        docs = [
            {"kind": "Network", "name": self.net,
             "ips": [{"address": f"{self.subnet}.1", "prefix": 24,
                      "dhcp": {"ranges": [{"start": f"{self.subnet}.2",
                                           "end": f"{self.subnet}.50"}]}}]},
            {"kind": "StoragePool", "name": self.name, "type": "dir",
             "target": {"path": str(self.directory / "images"),
                        "permissions": {"mode": "0755"}}},
            {"kind": "Volume", "pool": self.name, "name": "root.qcow2", "format": "qcow2",
             "capacity": "16MiB"},
            dom,
        ]
        (self.specs / "guest.yaml").write_text(yaml.safe_dump_all(docs))

    def apply(self) -> Any:
        return virtctl(self.state, "apply", "-c", URI, "--shutdown-timeout", "120", "-f",
                       str(self.specs))

    def settled(self) -> None:
        """The guest runs self.machine, healthy, in sync (a no-op after a passing test)."""
        self.spec(self.machine)
        done = self.apply()
        assert done.returncode == 0, done.stdout + done.stderr
        with self.driver() as driver:
            guestos.wait_until(lambda: driver.tcp_open(self.name, PORT)
                               and driver.cloud_init_done(self.name), 300, 0.2)

    @contextlib.contextmanager
    def driver(self) -> Iterator[Any]:
        driver = connect(URI)
        try:
            yield driver
        finally:
            driver.close()

    def dom(self) -> tuple[str, int, int]:
        """(the running machine type, libvirt's state and its reason)."""
        conn = libvirt_module().open(URI)
        try:
            dom = conn.lookupByName(self.name)
            state, reason = dom.state()
            return parse(dom.XMLDesc(0)).find("os/type").get("machine"), state, reason
        finally:
            conn.close()

    def checkpoints(self) -> list[dict[str, Any]]:
        listed = virtctl(self.state, "checkpoints", "-c", URI, self.name, "-o", "json")
        assert listed.returncode == 0, listed.stderr
        return json.loads(listed.stdout)["checkpoints"]


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    require_connection(URI)
    root = tmp_path_factory.mktemp("cpprobes")
    specs = root / "specs"
    specs.mkdir()
    name = f"{PREFIX}cq{secrets.token_hex(3)}"
    with guest_space(name, (f"{name}n",)) as (directory, files):
        yield Guest(name, f"{name}n", free_subnet(), directory, files, specs,
                    root / "state")


def test_a_change_gated_on_tcp_and_cloud_init_passes_when_the_guest_answers(
        guest: Guest) -> None:
    guest.settled()  # created: the first boot takes no checkpoint and has no gate
    with guest.driver() as driver:
        # What the gate reads: the port the guest opened, not any other; the file.
        assert not driver.tcp_open(guest.name, PORT + 1)
    guest.spec(NEW)
    result = guest.apply()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "health gate (tcp port 2222 + cloud-init done)" in result.stdout, result.stdout
    assert guest.dom()[0] == NEW
    guest.machine = NEW
    assert len(guest.checkpoints()) == 1


def test_a_guest_that_does_not_open_its_port_is_rolled_back(guest: Guest) -> None:
    guest.settled()
    guest.spec(OLD, tcp=False, timeout=FAILING)
    result = guest.apply()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "change failed health and was rolled back" in result.stdout, result.stdout
    assert f"TCP port {PORT} is closed" in result.stdout, result.stdout
    assert guest.dom()[0] == NEW


def test_a_memory_checkpoint_brings_the_running_guest_back_without_a_boot(
        guest: Guest) -> None:
    guest.settled()  # booted after the rollback before: port open, cloud-init done
    libvirt = libvirt_module()
    guest.spec(OLD, cloudinit=False, memory=True, timeout=FAILING)
    began = time.monotonic()
    result = guest.apply()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "change failed health and was rolled back" in result.stdout, result.stdout
    assert "cloud-init has not finished" in result.stdout, result.stdout
    machine, state, reason = guest.dom()
    # Running from the checkpoint's memory: not booted again (that would be BOOTED).
    assert (machine, state, reason) == (
        NEW, libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT)
    with guest.driver() as driver:  # the restored guest answers (as it ran: port, file)
        waited = guestos.wait_until(lambda: driver.tcp_open(guest.name, PORT)
                                    and driver.cloud_init_done(guest.name), 120, 0.2)
    assert guest.dom()[1:] == (libvirt.VIR_DOMAIN_RUNNING,
                               libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT)  # still no boot
    newest = guest.checkpoints()[-1]
    assert newest["memory"] is True, newest
    print(f"\nmemory checkpoint, failed gate and rollback: {time.monotonic() - began:.1f}s;"
          f" answered {waited:.1f}s after")
