"""A DomainSet of two tiny real guests on qemu:///system (issue 24): each gets the
address the set reserved for it, which `virtctl addresses` finds through the network's
DHCP leases (the guest asks for one: guestos.py's `vctl.dhcp`), `get -o wide` shows and
`virtctl ssh --print` connects to; scaled to one with --prune, the other goes with its
reservation; `-l` narrows `get`."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, free_subnet, purge_libvirt, require_connection
from tests.integration.guestos import DEFAULT_CMDLINE, prepare_guest
from virtctl.xmlutil import parse

URI = "qemu:///system"
REPO = Path(__file__).resolve().parents[2]


def virtctl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0")
    return subprocess.run([sys.executable, "-m", "virtctl", "-c", URI, *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def prefix() -> Iterator[str]:
    require_connection(URI)
    prefix = f"{PREFIX}{secrets.token_hex(2)}-"
    try:
        yield prefix
    finally:
        purge_libvirt(URI, prefix=prefix)
        for guest in (f"{prefix}web-1", f"{prefix}web-2"):
            shutil.rmtree(Path("/var/lib/libvirt/images") / guest, ignore_errors=True)


def test_two_real_guests_get_their_reserved_addresses_through_dhcp_leases(
        tmp_path: Path, prefix: str) -> None:
    for index in (1, 2):
        prepare_guest(f"{prefix}web-{index}", cmdline=DEFAULT_CMDLINE + " vctl.dhcp")
    net = f"{prefix}lan"
    subnet = free_subnet()
    images = "/var/lib/libvirt/images/{name}"
    (tmp_path / "specs.yaml").write_text(textwrap.dedent(f"""\
        kind: Network
        name: {net}
        ips: [{{address: {subnet}.1, prefix: 24,
                dhcp: {{ranges: [{{start: {subnet}.2, end: {subnet}.50}}]}}}}]
        ---
        kind: DomainSet
        name: {prefix}web
        replicas: 2
        pattern: "{prefix}web-{{index}}"
        labels: {{role: web}}
        network: {{name: {net}, range: {{start: {subnet}.100, end: {subnet}.109}}}}
        template:
          type: qemu
          memory: 128MiB
          os: {{type: hvm, arch: x86_64, machine: pc, kernel: "{images}/vmlinuz",
                initrd: "{images}/initramfs.cpio", cmdline: "{DEFAULT_CMDLINE} vctl.dhcp"}}
          features: {{acpi: true, apic: true}}
          onReboot: destroy
          serials: [{{type: file, source: {{path: "{images}/serial.log"}}, target: {{port: 0}}}}]
          interfaces: [{{type: network, source: {{network: {net}}}, model: virtio}}]
          memballoon: {{model: none}}
        """))
    state = tmp_path / "state"
    applied = virtctl(state, "apply", "-f", str(tmp_path / "specs.yaml"))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"[DomainSet {prefix}web]" in applied.stdout

    deadline = time.monotonic() + 240  # TCG boot + DHCP on a busy 2-core machine
    found: dict[str, list[dict[str, object]]] = {}
    while time.monotonic() < deadline:
        run = virtctl(state, "addresses", "-o", "json")
        found = {k: v for k, v in json.loads(run.stdout or "{}").items()
                 if k.startswith(prefix)}
        if len(found) == 2 and all(found.values()):
            break
        time.sleep(1)
    assert {k: [(a["ip"], a["source"]) for a in v] for k, v in found.items()} == {
        f"{prefix}web-1": [(f"{subnet}.100", "lease")],
        f"{prefix}web-2": [(f"{subnet}.101", "lease")]}

    wide = virtctl(state, "get", "domains", "-o", "wide", "-l", f"domainset={prefix}web")
    assert f"{subnet}.101" in wide.stdout and "role=web" in wide.stdout
    assert set(line.split()[0] for line in wide.stdout.splitlines()[1:]) == {
        f"{prefix}web-1", f"{prefix}web-2"}
    line = virtctl(state, "ssh", "--user", "root", "--print", f"{prefix}web-2", "--", "uptime")
    assert json.loads(line.stdout) == ["ssh", "-l", "root", "--", f"{subnet}.101", "uptime"]

    (tmp_path / "specs.yaml").write_text((tmp_path / "specs.yaml").read_text().replace(
        "replicas: 2", "replicas: 1"))
    down = virtctl(state, "apply", "--prune", "-f", str(tmp_path / "specs.yaml"))
    assert down.returncode == 0, down.stdout + down.stderr
    import libvirt

    conn = libvirt.open(URI)
    try:
        names = {d.name() for d in conn.listAllDomains(0)}
        assert f"{prefix}web-1" in names and f"{prefix}web-2" not in names
        xml = conn.networkLookupByName(net).XMLDesc(0)
        assert f"{subnet}.100" in xml and f"{subnet}.101" not in xml
    finally:
        conn.close()


def test_volume_template_overlays_on_a_dir_pool_kept_on_scale_down_unless_told(
        tmp_path: Path, prefix: str) -> None:
    """A dir pool under /var/tmp/vctl-test-*, a qcow2 base volume, a DomainSet of two
    guests (defined, not started: no OS needed) each on its own overlay of the base;
    scaled to one, the second overlay stays on disk, no longer managed; with
    deletePolicy: delete recorded, scaled to none, the last one is deleted."""
    import libvirt

    pool = f"{prefix}images"
    directory = Path("/var/tmp") / pool
    specs = tmp_path / "specs.yaml"

    def write(replicas: int, policy: str = "") -> None:
        specs.write_text(textwrap.dedent(f"""\
            kind: StoragePool
            name: {pool}
            type: dir
            target: {{path: {directory}}}
            ---
            kind: Volume
            name: base.qcow2
            pool: {pool}
            capacity: 16MiB
            format: qcow2
            ---
            kind: DomainSet
            name: {prefix}web
            replicas: {replicas}
            pattern: "{prefix}web-{{index}}"
            volumeTemplate: {{pool: {pool}, backingVolume: base.qcow2, capacity: 32MiB{policy}}}
            template:
              type: qemu
              memory: 64MiB
              state: shutoff
              os: {{type: hvm, arch: x86_64, machine: pc}}
            """))

    def volumes() -> dict[str, str | None]:
        conn = libvirt.open(URI)
        try:
            found = conn.storagePoolLookupByName(pool)
            found.refresh(0)
            return {v.name(): parse(v.XMLDesc(0)).findtext("backingStore/path")
                    for v in found.listAllVolumes(0)}
        finally:
            conn.close()

    def managed() -> dict[str, bool]:
        rows = json.loads(virtctl(state, "get", "volumes", "-o", "json").stdout)
        return {r["name"]: r["managed"] for r in rows if r["pool"] == pool}

    state = tmp_path / "state"
    write(2)
    first = virtctl(state, "apply", "-f", str(specs))
    assert first.returncode == 0, first.stdout + first.stderr
    have = volumes()
    for i in (1, 2):
        assert have[f"{prefix}web-{i}.qcow2"] == str(directory / "base.qcow2")
    info = subprocess.run(["qemu-img", "info", "--output=json", "-U",
                           str(directory / f"{prefix}web-1.qcow2")],
                          capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["backing-filename"] == str(directory / "base.qcow2")
    conn = libvirt.open(URI)
    try:
        disk = parse(conn.lookupByName(f"{prefix}web-2").XMLDesc(0)).find(
            "devices/disk/source")
        assert disk is not None and disk.get("volume") == f"{prefix}web-2.qcow2"
    finally:
        conn.close()

    write(1)
    down = virtctl(state, "apply", "--prune", "-f", str(specs))
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"[DomainSet {prefix}web]" in next(
        line for line in down.stdout.splitlines() if f"volume/{pool}/{prefix}web-2" in line)
    assert (directory / f"{prefix}web-2.qcow2").exists()  # retained with its data
    assert managed()[f"{prefix}web-2.qcow2"] is False
    assert managed()[f"{prefix}web-1.qcow2"] is True

    write(1, ", deletePolicy: delete")
    assert virtctl(state, "apply", "--prune", "-f", str(specs)).returncode == 0
    write(0, ", deletePolicy: delete")
    gone = virtctl(state, "apply", "--prune", "-f", str(specs))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not (directory / f"{prefix}web-1.qcow2").exists()
    assert (directory / f"{prefix}web-2.qcow2").exists() and "base.qcow2" in volumes()
