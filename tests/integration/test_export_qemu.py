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


# -- storage (issue 20: export wrote no pools or volumes) -------------------------------------


def pool_xml(pool: str, path: Path) -> str:
    return (f"<pool type='dir'><name>{pool}</name><target><path>{path}</path>"
            "<permissions><mode>0755</mode></permissions></target></pool>")


def storage_facts(conn: Any, pool: str) -> dict[str, Any]:
    """What adopting must not change: the pool's identity and state, each volume's
    sizes, format, backing store and bytes (virtctl's state volume left out)."""
    import hashlib

    from virtctl.xmlutil import parse

    found = conn.storagePoolLookupByName(pool)
    out: dict[str, Any] = {pool: (found.UUIDString(), found.isActive(), found.autostart())}
    for vol in found.listAllVolumes(0):
        if vol.name() == "virtctl-state.json":
            continue
        root = parse(vol.XMLDesc(0))
        out[vol.name()] = (vol.info(), root.find("target/format").get("type"),
                           root.findtext("backingStore/path"),
                           hashlib.sha256(Path(vol.path()).read_bytes()).hexdigest())
    return out


def test_storage_export_then_adopt_only_records_it(tmp_path: Path) -> None:
    """A dir pool made with libvirt (active, autostart), a qcow2 base, an overlay on it
    (backing file by path, as virsh makes it) and a raw volume of an odd size holding
    data: exported as a user would declare them, adopted with one `record` each."""
    import shutil
    import subprocess

    from tests.contract.support import purge_libvirt, shared_dir

    require_connection(URI)
    if not shutil.which("qemu-img"):
        pytest.fail("qemu-img is not installed (apt-get install qemu-utils)")
    conn = libvirt_module().open(URI)
    pool = name()
    with shared_dir() as root:
        target = root / "images"
        target.mkdir(mode=0o755)
        try:
            found = conn.storagePoolDefineXML(pool_xml(pool, target), 0)
            found.create(0)
            found.setAutostart(1)
            found.createXML("<volume><name>base.qcow2</name><capacity unit='MiB'>16"
                            "</capacity><target><format type='qcow2'/></target></volume>", 0)
            found.createXML("<volume><name>web.qcow2</name><capacity unit='MiB'>64"
                            "</capacity><target><format type='qcow2'/></target>"
                            f"<backingStore><path>{target}/base.qcow2</path>"
                            "<format type='qcow2'/></backingStore></volume>", 0)
            found.createXML("<volume><name>data.img</name><capacity unit='bytes'>1537"
                            "</capacity><target><format type='raw'/></target></volume>", 0)
            (target / "data.img").write_bytes(b"data" * 384 + b"!")
            found.refresh(0)
            before = storage_facts(conn, pool)
            assert before["web.qcow2"][2] == f"{target}/base.qcow2"

            virtctl = run_cli(URI, tmp_path / "state")
            exported = tmp_path / "exported"
            ok(virtctl("export", "--to", str(exported)))
            ours = {f"pool-{pool}.yaml"} | {f"volume-{pool}--{v}.yaml" for v in
                                            ("base.qcow2", "web.qcow2", "data.img")}
            assert ours <= {p.name for p in exported.iterdir()}
            assert f"volume-{pool}--virtctl-state.json.yaml" not in ours
            specs = tmp_path / "specs"
            specs.mkdir()
            for file_name in ours:
                (exported / file_name).rename(specs / file_name)
            web = (specs / f"volume-{pool}--web.qcow2.yaml").read_text()
            assert "volume: base.qcow2" in web and "capacity: 64MiB" in web

            result = json.loads(ok(virtctl("apply", "--adopt", "-f", str(specs),
                                           "-o", "json")))
            steps = {o["name"]: [s["op"] for s in o["steps"]] for o in result["objects"]}
            assert steps == {pool: ["record"], **{f"{pool}/{v}": ["record"] for v in
                                                  ("base.qcow2", "web.qcow2", "data.img")}}
            assert storage_facts(conn, pool) == before
            info = subprocess.run(["qemu-img", "info", "-U", "--output=json",
                                   str(target / "web.qcow2")], capture_output=True,
                                  text=True, check=True).stdout
            assert json.loads(info)["backing-filename"] == f"{target}/base.qcow2"

            rows = {r["name"]: r for r in json.loads(ok(virtctl("get", "volumes", "-o",
                                                                "json")))
                    if r["pool"] == pool}
            assert sorted(rows) == ["base.qcow2", "data.img", "web.qcow2"]
            assert all(r["managed"] and r["set"] for r in rows.values())
            assert rows["data.img"]["capacity"] == 1537
            pools = {r["name"]: r for r in json.loads(ok(virtctl("get", "pools", "-o",
                                                                 "json")))}
            assert (pools[pool]["managed"], pools[pool]["volumes"]) == (True, 3)
            ok(virtctl("diff", "-f", str(specs)), 0)
        finally:
            conn.close()
            purge_libvirt(URI, [pool])
