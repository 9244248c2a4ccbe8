"""The live-update scenarios of issue 13, written once and run on every host kind: the
sim (test_live_updates.py), libvirt's test driver (the same file) and a real QEMU guest
on qemu:///system (test_live_updates_qemu.py).

Each step writes the specs, reconciles through the API (plan, apply, verify) and checks
what the issue asks: the change reached the running guest or network (read back from
its running definition), the guest never restarted (same domain id, no stop or start
in the plan), the network kept running, and a second run plans nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from virtctl import api
from virtctl.model import Kind
from virtctl.reconciler.plan.liverules import find, unreleased, vcpu_counts
from virtctl.xmlutil import parse


@dataclass
class Lab:
    """One guest on one isolated network, declared in `specs`; `os` and `devices` let a
    host kind give its guest what it needs to run (a kernel, a serial log)."""

    uri: str
    specs: Path
    guest: str
    network: str
    subnet: int  # 192.168.SUBNET.0/24
    bridge: str
    images: Path  # disk and ISO files QEMU can read
    os: dict[str, Any] = field(default_factory=lambda: {
        "type": "hvm", "arch": "x86_64", "machine": "pc"})
    dom_type: str = "qemu"
    extra: dict[str, Any] = field(default_factory=dict)  # more keys (serials, features...)
    timeout: float = 30.0  # detach timeout: how long the guest may take to release
    acpi: bool = True  # PCI hot-plug goes through ACPI
    disk_format: str = "raw"  # of the disk images (qemu-img's names)
    history: list[api.Result] = field(default_factory=list)

    # -- specs ------------------------------------------------------------------------

    def write(self, *, disks: Sequence[str] = (), nics: Sequence[str] = (),
              cdrom: str | None = "", vcpus: tuple[int, int] = (2, 1),
              dhcp_hosts: Sequence[tuple[str, str]] = (),
              update_policy: str | None = None, portgroups: Sequence[str] = (),
              current_memory: str | None = None) -> None:
        """The guest with virtio disks `disks` (targets vdb, vdc... of image names),
        NICs with MACs `nics`, an IDE CD-ROM (None: none; '': empty tray; else an image),
        vcpus (maximum, current), a current memory (of 128 MiB); the network with DHCP
        hosts (mac, ip) and port groups (names)."""
        base = f"192.168.{self.subnet}"
        dhcp: dict[str, Any] = {"ranges": [{"start": f"{base}.100", "end": f"{base}.150"}]}
        if dhcp_hosts:
            dhcp["hosts"] = [{"mac": m, "ip": f"{base}.{ip}"} for m, ip in dhcp_hosts]
        net: dict[str, Any] = {"kind": "Network", "name": self.network,
                               "bridge": {"name": self.bridge},
                               "ips": [{"address": f"{base}.1", "prefix": 24, "dhcp": dhcp}]}
        if portgroups:
            net["extraXML"] = [f'<portgroup name="{g}"/>' for g in portgroups]
        self._dump("net.yaml", net)
        devices: list[dict[str, Any]] = [
            {"type": "file", "device": "disk", "source": str(self.images / d),
             "target": f"vd{chr(ord('b') + i)}", "bus": "virtio",
             "driver": {"name": "qemu", "type": self.disk_format}}
            for i, d in enumerate(disks)]
        if cdrom is not None:
            tray: dict[str, Any] = {"type": "file", "device": "cdrom", "target": "hdc",
                                    "bus": "ide", "readonly": True}
            if cdrom:
                tray["source"] = str(self.images / cdrom)
            devices.append(tray)
        guest: dict[str, Any] = {
            "kind": "Domain", "name": self.guest, "type": self.dom_type, "memory": "128MiB",
            "vcpus": {"count": vcpus[0], "current": vcpus[1]}, "os": self.os,
            **({"features": {"acpi": True}} if self.acpi else {}),
            "shutdownTimeout": 2, **self.extra}
        if current_memory:
            guest["currentMemory"] = current_memory
        if update_policy:
            guest["updatePolicy"] = update_policy
        if devices:
            guest["disks"] = devices
        if nics:
            guest["interfaces"] = [{"type": "network", "mac": m,
                                    "source": {"network": self.network}, "model": "virtio"}
                                   for m in nics]
        self._dump("guest.yaml", guest)

    def _dump(self, name: str, doc: dict[str, Any]) -> None:
        (self.specs / name).write_text(yaml.safe_dump(doc, sort_keys=False))

    # -- running it ---------------------------------------------------------------------

    def apply(self, policy: api.Policy | None = None) -> api.Result:
        policy = policy or api.Policy(detach_timeout=self.timeout, force_stop=True)
        desired = api.load([str(self.specs)], use_cache=False)
        with api.connect(self.uri) as driver:
            result = api.reconcile(desired, driver, policy=policy)
        self.history.append(result)
        failures = [r for r in result.report.results if r.outcome != "done"]
        assert result.report.return_code == 0, failures
        assert result.remaining.empty, result.remaining.actions
        return result

    def settled(self, policy: api.Policy | None = None) -> api.Result:
        """Apply, then apply again and expect nothing to do: a live change must leave no
        difference behind (no phantom diff from the running definition)."""
        first = self.apply(policy)
        again = self.apply(policy)
        assert again.plan.empty, again.plan.actions
        assert not again.plan.pending, again.plan.pending  # no phantom restart either
        return first

    def running(self, kind: Kind = Kind.DOMAIN) -> object:
        name = self.guest if kind is Kind.DOMAIN else self.network
        with api.connect(self.uri) as driver:
            return parse(driver.definition(kind, name, running=True))

    def guest_id(self) -> int | None:
        with api.connect(self.uri) as driver:
            return driver.snapshot().domains[self.guest].id


def verbs(result: api.Result, name: str) -> list[str]:
    return [a.verb for a in result.plan.actions if a.name == name]


def assert_live_only(result: api.Result, lab: Lab, *expected: str) -> None:
    """The plan changed the guest live: these live verbs, no stop, start or destroy."""
    steps = verbs(result, lab.guest)
    assert not {"shutdown", "destroy", "start"} & set(steps), steps
    for verb in expected:
        assert verb in steps, steps


def device(root: object, key: str) -> object:
    return find(root, key)  # type: ignore[arg-type]


def vcpus_running(root: object) -> int:
    counts = vcpu_counts(root.find("vcpu"))  # type: ignore[attr-defined]
    assert counts is not None
    return counts[0]


def held(root: object) -> frozenset[str]:
    return unreleased(root)  # type: ignore[arg-type]
