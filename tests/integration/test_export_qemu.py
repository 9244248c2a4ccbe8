"""`virtctl export` then `apply --adopt` on qemu:///system, with guests libvirt itself
filled in (addresses, default controllers, pcie-root-ports on q35, virtio-serial for a
channel, a pty console), made outside virtctl through libvirt-python. The round trip
marks them managed and changes nothing else: same domain ids (no restart), same states,
uuids and MACs; then `diff` is clean.

Everything is named vctl-test-* and removed even when the test fails. Only our own
files from the export are applied: the host may hold objects that are not ours (for
instance libvirt's `default` network), and this test must not adopt them. Skipped with
a reason only outside CI when libvirt is unavailable.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import libvirt_module, require_connection
from tests.integration.test_libvirt_reconcile import URI, name, ok, run_cli

CONSOLE = ("<console type='pty'/><channel type='unix'>"
           "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")


def guest_xml(dom: str, *, machine: str, devices: str = "") -> str:
    return (f"<domain type='qemu'><name>{dom}</name><memory unit='MiB'>64</memory>"
            f"<vcpu>1</vcpu><os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
            f"<devices>{devices}</devices></domain>")


def network_xml(net: str) -> str:
    # Isolated, no DHCP and no DNS: libvirt starts no dnsmasq; the address only
    # configures the bridge.
    third = secrets.randbelow(250) + 1
    return (f"<network><name>{net}</name><bridge name='vctlx{secrets.token_hex(3)}'/>"
            f"<dns enable='no'/><ip address='10.254.{third}.1' netmask='255.255.255.0'/>"
            "</network>")


@pytest.fixture
def host() -> Iterator[tuple[Any, list[str]]]:
    """A libvirt connection and a list of names to remove afterwards (ours only: other
    sessions may be testing on the same daemon)."""
    require_connection(URI)
    libvirt = libvirt_module()
    conn = libvirt.open(URI)
    names: list[str] = []
    try:
        yield conn, names
    finally:
        for obj_name in names:
            for lookup in (conn.lookupByName, conn.networkLookupByName):
                try:
                    obj = lookup(obj_name)
                except libvirt.libvirtError:
                    continue
                for step in ("destroy", "undefine"):
                    with contextlib.suppress(libvirt.libvirtError):  # not running / gone
                        getattr(obj, step)()
        conn.close()


def facts(conn: Any, doms: list[str], net: str) -> dict[str, Any]:
    from virtctl.xmlutil import parse

    out: dict[str, Any] = {}
    for dom in doms:
        guest = conn.lookupByName(dom)
        root = parse(guest.XMLDesc(0))
        macs = [m.get("address") for m in root.iterfind("devices/interface/mac")]
        out[dom] = (guest.ID(), guest.state()[0], guest.autostart(), guest.UUIDString(), macs)
    bridge = conn.networkLookupByName(net)
    out[net] = (bridge.isActive(), bridge.autostart(), bridge.UUIDString())
    return out


def managed(obj: Any, inactive_flag: int) -> bool:
    """The persistent definition carries the owner mark (a running guest's live one
    keeps its old metadata until it restarts, which is the point)."""
    return "https://virtctl.dev/xmlns/1" in obj.XMLDesc(inactive_flag)


@pytest.mark.parametrize("fmt", ["yaml", "xml"])
def test_export_then_adopt_restarts_nothing(
    host: tuple[Any, list[str]], tmp_path: Path, fmt: str
) -> None:
    conn, names = host
    pc, q35, paused, net = name(), name(), name(), name()
    names += [pc, q35, paused, net]
    conn.networkDefineXML(network_xml(net)).create()
    conn.defineXML(guest_xml(pc, machine="pc", devices=CONSOLE + "<interface type='user'/>"))
    conn.lookupByName(pc).create()
    conn.lookupByName(pc).setAutostart(1)
    conn.defineXML(guest_xml(q35, machine="q35", devices=CONSOLE + (
        f"<interface type='network'><source network='{net}'/><model type='virtio'/>"
        "</interface>")))
    conn.defineXML(guest_xml(paused, machine="pc"))
    conn.lookupByName(paused).create()
    conn.lookupByName(paused).suspend()
    before = facts(conn, [pc, q35, paused], net)

    virtctl = run_cli(URI, tmp_path / "state")
    exported = tmp_path / "exported"
    ok(virtctl("export", "--to", str(exported), "-o", fmt))
    ours = {f"domain-{d}.{fmt}" for d in (pc, q35, paused)} | {f"network-{net}.{fmt}"}
    assert ours <= {p.name for p in exported.iterdir()}
    specs = tmp_path / "specs"
    specs.mkdir()
    for file_name in ours:
        (exported / file_name).rename(specs / file_name)

    result = json.loads(ok(virtctl("apply", "--adopt", "-f", str(specs), "-o", "json")))
    steps = {o["name"]: [s["op"] for s in o["steps"]] for o in result["objects"]}
    assert steps == {n: ["define"] for n in (pc, q35, paused, net)}
    assert all(o["changes"] == [] for o in result["objects"])
    assert facts(conn, [pc, q35, paused], net) == before
    libvirt = libvirt_module()
    assert all(managed(conn.lookupByName(d), libvirt.VIR_DOMAIN_XML_INACTIVE)
               for d in (pc, q35, paused))
    assert managed(conn.networkLookupByName(net), libvirt.VIR_NETWORK_XML_INACTIVE)
    ok(virtctl("diff", "-f", str(specs)), 0)
