"""`virtctl apply/diff/delete` against real QEMU guests and networks on qemu:///system.

Each step runs the real CLI (`python -m virtctl -c qemu:///system ...`) in a subprocess,
and outcomes are checked through libvirt-python directly, not through virtctl. Guests are
type qemu, x86_64, machine pc, 64 MiB, no disk and no NIC; networks are isolated (no
<forward>) with DNS and DHCP off, so libvirt runs no dnsmasq and nothing sends traffic.
Everything is named vctl-test-* and removed by the fixture, even when a test fails.
Skipped with a reason only outside CI when libvirt is unavailable; CI fails instead.

Also here: test:///default through the Python API (it lives inside one process, so a
subprocess would always see a fresh one), proving virtctl never touches the objects it
does not own there: the pre-made domain `test` and network `default`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import (
    PREFIX,
    free_bridge,
    free_subnet,
    libvirt_module,
    purge_libvirt,
    require_connection,
)

REPO = Path(__file__).resolve().parents[2]
URI = "qemu:///system"
Run = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(uri: str, state: Path) -> Run:
    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",)}
        env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO))
        return subprocess.run(
            [sys.executable, "-m", "virtctl", "-c", uri, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run


@pytest.fixture
def qemu_host() -> Iterator[Any]:
    """A raw libvirt connection to qemu:///system for checking outcomes; purged after."""
    require_connection(URI)
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    try:
        yield conn
    finally:
        conn.close()
        purge_libvirt(URI)


@pytest.fixture
def virtctl(tmp_path: Path, qemu_host: Any) -> Run:
    return run_cli(URI, tmp_path / "state")


def name() -> str:
    return PREFIX + secrets.token_hex(4)


def domain_yaml(
    dom: str, *, memory: str = "64MiB", state: str = "running", autostart: bool = False
) -> str:
    return textwrap.dedent(
        f"""\
        kind: Domain
        name: {dom}
        type: qemu
        memory: {memory}
        vcpus: 1
        os: {{type: hvm, arch: x86_64, machine: pc}}
        state: {state}
        autostart: {str(autostart).lower()}
        """
    )


_NETWORKS: dict[str, tuple[str, str]] = {}  # name -> (subnet, bridge), kept per name


def network_yaml(net: str, *, active: bool = True, autostart: bool = False) -> str:
    """An isolated network on a subnet and bridge free on this host (the same ones
    again for the same name, so a spec can be rewritten)."""
    subnet, bridge = _NETWORKS.setdefault(net, (free_subnet(), free_bridge()))
    return textwrap.dedent(
        f"""\
        kind: Network
        name: {net}
        active: {str(active).lower()}
        autostart: {str(autostart).lower()}
        bridge: {{name: {bridge}}}
        dns: {{enable: false}}
        ips:
          - {{address: {subnet}.1, netmask: 255.255.255.0}}
        """
    )


def write_specs(folder: Path, *documents: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "specs.yaml").write_text("---\n".join(documents))
    return folder


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def in_sync(virtctl: Run, specs: Path) -> None:
    ok(virtctl("diff", "-f", str(specs)), 0)


def memory_kib(dom: Any, libvirt: Any) -> int:
    from virtctl.xmlutil import parse

    text = parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext("memory")
    return int(text or 0)


def test_apply_starts_guest_and_network_and_reapply_changes_nothing(
    virtctl: Run, qemu_host: Any, tmp_path: Path
) -> None:
    dom, net = name(), name()
    specs = write_specs(tmp_path / "specs", domain_yaml(dom), network_yaml(net))
    ok(virtctl("apply", "-f", str(specs)))
    guest = qemu_host.lookupByName(dom)
    bridge = qemu_host.networkLookupByName(net)
    assert guest.isActive() and guest.isPersistent() and bridge.isActive()
    in_sync(virtctl, specs)
    again = json.loads(ok(virtctl("apply", "-f", str(specs), "-o", "json")))
    assert (again["inSync"], again["objects"], again["report"]["done"]) == (True, [], 0)
    assert qemu_host.lookupByName(dom).ID() == guest.ID()  # not restarted
    listed = {d["name"]: d for d in json.loads(ok(virtctl("get", "domains", "-o", "json")))}
    assert (listed[dom]["state"], listed[dom]["managed"]) == ("running", True)


def test_memory_change_redefines_in_place(virtctl: Run, qemu_host: Any, tmp_path: Path) -> None:
    libvirt = libvirt_module()
    dom = name()
    specs = write_specs(tmp_path / "specs", domain_yaml(dom, state="shutoff"))
    ok(virtctl("apply", "-f", str(specs)))
    uuid = qemu_host.lookupByName(dom).UUIDString()
    write_specs(specs, domain_yaml(dom, memory="96MiB", state="shutoff"))
    ok(virtctl("diff", "-f", str(specs)), 2)
    ok(virtctl("apply", "-f", str(specs)))
    guest = qemu_host.lookupByName(dom)
    assert (guest.UUIDString(), memory_kib(guest, libvirt)) == (uuid, 96 * 1024)
    in_sync(virtctl, specs)


def test_stop_and_autostart(virtctl: Run, qemu_host: Any, tmp_path: Path) -> None:
    libvirt = libvirt_module()
    dom = name()
    specs = write_specs(tmp_path / "specs", domain_yaml(dom))
    ok(virtctl("apply", "-f", str(specs)))
    assert qemu_host.lookupByName(dom).isActive()
    write_specs(specs, domain_yaml(dom, state="shutoff", autostart=True))
    ok(virtctl("apply", "-f", str(specs), "--shutdown-timeout", "10", "--force-stop"))
    guest = qemu_host.lookupByName(dom)
    assert guest.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert guest.autostart() == 1
    in_sync(virtctl, specs)


def test_isolated_network_lifecycle(virtctl: Run, qemu_host: Any, tmp_path: Path) -> None:
    net = name()
    specs = write_specs(tmp_path / "specs", network_yaml(net, active=False))
    ok(virtctl("apply", "-f", str(specs)))
    bridge = qemu_host.networkLookupByName(net)
    assert (bridge.isActive(), bridge.isPersistent(), bridge.autostart()) == (0, 1, 0)
    write_specs(specs, network_yaml(net, active=True, autostart=True))
    ok(virtctl("apply", "-f", str(specs)))
    bridge = qemu_host.networkLookupByName(net)
    assert (bridge.isActive(), bridge.autostart()) == (1, 1)
    in_sync(virtctl, specs)
    ok(virtctl("delete", "-f", str(specs)))
    assert net not in [n.name() for n in qemu_host.listAllNetworks(0)]


def test_delete_removes_guest_and_leaves_unmanaged_alone(
    virtctl: Run, qemu_host: Any, tmp_path: Path
) -> None:
    dom, theirs, their_net = name(), name(), name()
    specs = write_specs(tmp_path / "specs", domain_yaml(dom))
    ok(virtctl("apply", "-f", str(specs)))
    # Bystanders virtctl does not own, one running: they must come out exactly as they
    # were. (The rest of the host may be changed by other work meanwhile: not compared.)
    qemu_host.networkDefineXML(f"<network><name>{their_net}</name></network>")
    qemu_host.defineXML(
        f"<domain type='qemu'><name>{theirs}</name><memory unit='MiB'>32</memory>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>").create()
    before = (qemu_host.networkLookupByName(their_net).XMLDesc(0),
              qemu_host.lookupByName(theirs).XMLDesc(0))
    ok(virtctl("delete", "-f", str(specs), "--shutdown-timeout", "10", "--force-stop"), 0)
    assert dom not in [d.name() for d in qemu_host.listAllDomains(0)]
    after = (qemu_host.networkLookupByName(their_net).XMLDesc(0),
             qemu_host.lookupByName(theirs).XMLDesc(0))
    assert after == before
    assert qemu_host.lookupByName(theirs).isActive()


def test_prune_on_test_driver_never_touches_unmanaged_objects(tmp_path: Path) -> None:
    libvirt_module()
    from virtctl import api
    from virtctl.drivers import connect
    from virtctl.reconciler.plan.plan import Policy

    def spec(dom: str) -> str:
        # test:///default offers only 'test' guests on i686 in its capabilities.
        folder = tmp_path / dom
        write_specs(
            folder,
            f"kind: Domain\nname: {dom}\ntype: test\nmemory: 64MiB\n"
            "os: {type: hvm, arch: i686}\nstate: running\n",
        )
        return str(folder)

    first, second = name(), name()
    driver = connect("test:///default")  # the state lives while this connection is open
    try:
        before = driver.snapshot()
        assert "test" in before.domains and "default" in before.networks
        pruning = Policy(prune=True)
        assert api.reconcile(api.load([spec(first)]), driver, policy=pruning).return_code == 0
        result = api.reconcile(api.load([spec(second)]), driver, policy=pruning)
        assert result.return_code == 0 and result.remaining.empty
        after = driver.snapshot()
        assert first not in after.domains and after.domains[second].state.active
        assert after.domains["test"] == before.domains["test"]
        assert after.networks["default"] == before.networks["default"]
    finally:
        driver.close()
