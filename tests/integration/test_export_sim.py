"""`virtctl export` on the sim host, through the CLI in-process: a host built by hand
(unmanaged objects defined straight through SimDriver, as another tool would) is brought
under virtctl with `export --to DIR` then `apply --adopt -f DIR`: only adoption
redefines, nothing restarted, then `diff` is clean."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import DomainState, Kind

D, N = Kind.DOMAIN, Kind.NETWORK


def unmanaged_host(driver: SimDriver) -> None:
    """lan (active, autostart) and four guests in every state a spec can declare."""
    driver.define(N, "<network><name>lan</name><forward mode='nat'/>"
                     "<ip address='10.8.0.1' netmask='255.255.255.0'/></network>")
    driver.start(N, "lan")
    driver.set_autostart(N, "lan", True)
    driver.define(N, "<network><name>spare</name><bridge name='vbr-spare'/></network>")
    for name in ("web", "db", "off"):
        nic = "<interface type='network'><source network='lan'/></interface>"
        driver.define(D, f"<domain type='kvm'><name>{name}</name>"
                         "<memory unit='MiB'>256</memory><vcpu>2</vcpu>"
                         f"<os><type arch='x86_64'>hvm</type></os><devices>{nic}</devices>"
                         "</domain>")
    driver.start(D, "web")
    driver.set_autostart(D, "web", True)
    driver.start(D, "db")
    driver.suspend("db")


def runtime_of(driver: SimDriver) -> dict[str, Any]:
    live = driver.snapshot()
    return {
        **{f"domain/{d.name}": (d.state, d.id, d.autostart, d.uuid) for d in
           live.domains.values()},
        **{f"network/{n.name}": (n.active, n.autostart, n.uuid) for n in
           live.networks.values()},
    }


@pytest.mark.parametrize("fmt", ["yaml", "xml"])
def test_export_then_adopt_only_marks_ownership(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path, fmt: str,
    driver_calls: list[str],
) -> None:
    driver = sim()
    unmanaged_host(driver)
    before = runtime_of(driver)
    folder = tmp_path / "exported"
    exported = cli("export", "--to", str(folder), "-o", fmt)
    assert exported.code == 0, exported.err
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"domain-{n}.{fmt}" for n in ("db", "off", "web")]
        + [f"network-{n}.{fmt}" for n in ("lan", "spare")])
    driver_calls.clear()

    applied = cli("apply", "--adopt", "-f", str(folder), "-o", "json")
    assert applied.code == 0, applied.out + applied.err
    doc = applied.json()
    steps = {(o["kind"], o["name"]): [s["op"] for s in o["steps"]] for o in doc["objects"]}
    assert steps == {(k, n): ["define"] for k, n in [
        ("domain", "db"), ("domain", "off"), ("domain", "web"),
        ("network", "lan"), ("network", "spare")]}
    assert all(o["changes"] == [] for o in doc["objects"])
    assert all(c.startswith("define(") for c in driver_calls), driver_calls
    assert runtime_of(driver) == before  # nothing restarted, paused, stopped or renamed
    live = driver.snapshot()
    assert all(d.managed for d in live.domains.values())
    assert all(n.managed for n in live.networks.values())

    again = cli("diff", "-f", str(folder))
    assert again.code == 0, again.out


def test_export_state_matches_the_host(
    cli: Callable[..., Any], sim: Callable[..., SimDriver]
) -> None:
    unmanaged_host(sim())
    result = cli("export")
    assert result.code == 0, result.err
    docs = {d["name"]: d for d in yaml.safe_load_all(result.out)}
    assert (docs["web"]["state"], docs["web"]["autostart"]) == ("running", True)
    assert (docs["db"]["state"], docs["db"]["autostart"]) == ("paused", False)
    assert (docs["off"]["state"], docs["off"]["autostart"]) == ("shutoff", False)
    assert (docs["lan"]["active"], docs["lan"]["autostart"]) == (True, True)
    assert (docs["spare"]["active"], docs["spare"]["autostart"]) == (False, False)
    live = sim().snapshot()
    assert docs["web"]["uuid"] == live.domains["web"].uuid
    assert docs["web"]["interfaces"][0]["mac"] == live.domains["web"].xml.split(
        "mac address=\"")[1].split("\"")[0]


def test_managed_only_leaves_out_unmanaged_objects(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], specs: Path, kit: Any
) -> None:
    unmanaged_host(sim())
    kit.write(specs, "mine.xml", kit.domain_xml("mine", state="shutoff"))
    assert cli("apply", "-f", str(specs)).code == 0
    result = cli("export", "--managed-only")
    assert result.code == 0, result.err
    assert [d["name"] for d in yaml.safe_load_all(result.out)] == ["mine"]
    assert "owner" not in result.out and "virtctl:" not in result.out


def test_xml_to_stdout_needs_exactly_one_object(
    cli: Callable[..., Any], sim: Callable[..., SimDriver]
) -> None:
    unmanaged_host(sim())
    many = cli("export", "-o", "xml")
    assert many.code == 1 and many.out == ""
    assert "use --to DIR" in many.err
    sim().undefine(N, "spare")
    for name in ("web", "db", "off"):
        driver = sim()
        if driver.snapshot().domains[name].state is not DomainState.SHUTOFF:
            driver.destroy(D, name)
        driver.undefine(D, name)
    one = cli("export", "-o", "xml")
    assert one.code == 0, one.err
    assert one.out.startswith("<network>") and "<name>lan</name>" in one.out


def test_export_overwrites_its_own_files_and_leaves_others(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path
) -> None:
    unmanaged_host(sim())
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "domain-web.yaml").write_text("stale\n")
    (folder / "README").write_text("mine\n")
    assert cli("export", "--to", str(folder)).code == 0
    assert (folder / "README").read_text() == "mine\n"
    assert "name: web" in (folder / "domain-web.yaml").read_text()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


# -- storage (issue 20: export wrote no pools or volumes) -------------------------------------

P = Kind.POOL
STORAGE_CALLS = ("build_pool", "create_volume", "delete_volume", "resize_volume",
                 "upload_volume", "resize_disk")


@pytest.fixture
def storage_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every storage write of SimDriver while the test runs: (op, pool, volume...)."""
    calls: list[str] = []
    for op in STORAGE_CALLS:
        original = getattr(SimDriver, op)

        def spy(self: SimDriver, *args: object, _op: str = op, _orig: Any = original,
                **kwargs: object) -> object:
            calls.append(f"{_op}{args[:2]}")
            return _orig(self, *args, **kwargs)

        monkeypatch.setattr(SimDriver, op, spy)
    return calls


def unmanaged_storage(driver: SimDriver, outside: Path) -> None:
    """Pool images (active, autostart): a qcow2 base, an overlay on it (backing file by
    path, as virsh makes it), a raw volume of an odd size with data in it, and an
    overlay on a file outside any pool."""
    driver.define(P, "<pool type='dir'><name>images</name>"
                     "<target><path>/srv/images</path></target></pool>")
    driver.build_pool("images")
    driver.start(P, "images")
    driver.set_autostart(P, "images", True)
    driver.create_volume("images", "<volume><name>base.qcow2</name><capacity unit='MiB'>"
                                   "64</capacity><target><format type='qcow2'/></target>"
                                   "</volume>")
    driver.create_volume("images", "<volume><name>web.qcow2</name><capacity unit='MiB'>"
                                   "128</capacity><target><format type='qcow2'/></target>"
                                   "<backingStore><path>/srv/images/base.qcow2</path>"
                                   "<format type='qcow2'/></backingStore></volume>")
    driver.create_volume("images", "<volume><name>data.img</name><capacity unit='bytes'>"
                                   "1537</capacity><target><format type='raw'/></target>"
                                   "</volume>")
    import io
    driver.upload_volume("images", "data.img", io.BytesIO(b"x" * 1537), 1537)
    outside.write_bytes(b"\0" * 4096)
    driver.create_volume("images", "<volume><name>ext.qcow2</name><capacity unit='MiB'>"
                                   "8</capacity><target><format type='qcow2'/></target>"
                                   f"<backingStore><path>{outside}</path>"
                                   "<format type='raw'/></backingStore></volume>")


def storage_state(driver: SimDriver) -> dict[str, Any]:
    """Pools and volumes as the host has them (virtctl's records left out)."""
    found = driver.storage()
    return {
        **{f"pool/{p.name}": (p.uuid, p.xml, p.active, p.autostart) for p in
           found.pools.values()},
        **{f"volume/{k}": (v.xml, v.capacity) for k, v in found.volumes.items()},
        "data.img": driver.download_volume("images", "data.img", limit=1 << 20),
    }


@pytest.mark.parametrize("fmt", ["yaml", "xml"])
def test_storage_export_then_adopt_only_records_it(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path, fmt: str,
    storage_calls: list[str],
) -> None:
    driver = sim()
    unmanaged_storage(driver, tmp_path / "outside.img")
    before = storage_state(driver)
    folder = tmp_path / "exported"
    exported = cli("export", "--to", str(folder), "-o", fmt)
    assert exported.code == 0, exported.err
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"pool-images.{fmt}"] + [f"volume-images--{v}.{fmt}" for v in
                                  ("base.qcow2", "data.img", "ext.qcow2", "web.qcow2")])
    storage_calls.clear()

    applied = cli("apply", "--adopt", "-f", str(folder), "-o", "json")
    assert applied.code == 0, applied.out + applied.err
    doc = applied.json()
    steps = {(o["kind"], o["name"]): [s["op"] for s in o["steps"]] for o in doc["objects"]}
    assert steps == {("pool", "images"): ["record"],
                     **{("volume", f"images/{v}"): ["record"] for v in
                        ("base.qcow2", "data.img", "ext.qcow2", "web.qcow2")}}
    # Only virtctl's own record was written: no volume made, grown, written or deleted.
    assert storage_calls and all("virtctl-state.json" in c for c in storage_calls), \
        storage_calls
    assert storage_state(driver) == before
    got = cli("get", "volumes", "-o", "json")
    assert [(r["name"], r["managed"]) for r in got.json()] == [
        (v, True) for v in ("base.qcow2", "data.img", "ext.qcow2", "web.qcow2")]
    again = cli("diff", "-f", str(folder))
    assert again.code == 0, again.out + again.err


def test_storage_export_says_what_a_user_declares(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path
) -> None:
    unmanaged_storage(sim(), tmp_path / "outside.img")
    result = cli("export")
    assert result.code == 0, result.err
    docs = {(d["kind"], d["name"]): d for d in yaml.safe_load_all(result.out)}
    pool = docs[("StoragePool", "images")]
    assert (pool["type"], pool["active"], pool["autostart"], pool["target"]) == (
        "dir", True, True, {"path": "/srv/images"})
    assert pool["uuid"] == sim().storage().pools["images"].uuid
    assert docs[("Volume", "web.qcow2")] == {
        "kind": "Volume", "apiVersion": "virtctl/v1", "name": "web.qcow2",
        "pool": "images", "capacity": "128MiB", "format": "qcow2",
        "backingStore": {"volume": "base.qcow2", "format": "qcow2"}}
    assert docs[("Volume", "data.img")]["capacity"] == 1537
    assert docs[("Volume", "ext.qcow2")]["backingStore"] == {
        "path": str(tmp_path / "outside.img"), "format": "raw"}
    assert not any(n == "virtctl-state.json" for _, n in docs)


def test_an_inactive_pool_is_exported_inactive_and_adopting_it_starts_nothing(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path,
    driver_calls: list[str],
) -> None:
    sim().define(P, "<pool type='dir'><name>spare</name>"
                    "<target><path>/srv/spare</path></target></pool>")
    folder = tmp_path / "exported"
    assert cli("export", "--to", str(folder)).code == 0
    doc = yaml.safe_load((folder / "pool-spare.yaml").read_text())
    assert (doc["active"], doc["autostart"]) == (False, False)
    driver_calls.clear()
    applied = cli("apply", "--adopt", "-f", str(folder))
    assert applied.code == 0, applied.out + applied.err
    assert driver_calls == []
    assert not sim().storage().pools["spare"].active
    assert cli("diff", "--adopt", "-f", str(folder)).code == 0


CLOUD = """\
kind: StoragePool
name: images
type: dir
target: {path: /srv/images}
---
kind: Volume
name: data.img
pool: images
capacity: 1MiB
format: raw
deletePolicy: delete
---
kind: Domain
name: web
type: kvm
memory: 256MiB
os: {type: hvm}
cloudInit:
  pool: images
  userData: {users: [{name: ops}]}
"""


def test_export_leaves_out_cloud_init_seeds_and_honours_managed_only(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path,
    storage_calls: list[str],
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text(CLOUD)
    assert cli("apply", "-f", str(specs)).code == 0
    driver = sim()
    assert "images/web-cidata.iso" in driver.storage().volumes
    driver.create_volume("images", "<volume><name>theirs.img</name><capacity unit='MiB'>1"
                                   "</capacity><target><format type='raw'/></target></volume>")
    driver.define(P, "<pool type='dir'><name>other</name>"
                     "<target><path>/srv/other</path></target></pool>")

    every = {(d["kind"], d["name"]) for d in yaml.safe_load_all(cli("export").out)}
    assert {k for k in every if k[0] in ("StoragePool", "Volume")} == {
        ("StoragePool", "images"), ("StoragePool", "other"), ("Volume", "data.img"),
        ("Volume", "theirs.img")}  # no seed: cloudInit makes it again

    folder = tmp_path / "mine"
    assert cli("export", "--managed-only", "--to", str(folder)).code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "domain-web.yaml", "pool-images.yaml", "volume-images--data.img.yaml"]
    data = yaml.safe_load((folder / "volume-images--data.img.yaml").read_text())
    assert (data["deletePolicy"], data["capacity"]) == ("delete", "1MiB")
    storage_calls.clear()
    applied = cli("apply", "--adopt", "-f", str(folder), "-o", "json")
    assert applied.code == 0, applied.out + applied.err
    assert all("virtctl-state.json" in c for c in storage_calls), storage_calls
    assert "images/web-cidata.iso" in sim().storage().volumes
    assert cli("diff", "-f", str(folder)).code == 0


def test_get_pools_and_volumes(cli: Callable[..., Any], sim: Callable[..., SimDriver],
                               tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text(CLOUD)
    assert cli("apply", "--set", "lab", "-f", str(specs)).code == 0
    sim().create_volume("images", "<volume><name>theirs.img</name><capacity unit='KiB'>"
                                  "1536</capacity><target><format type='raw'/></target>"
                                  "</volume>")

    pools = cli("get", "pools")
    assert pools.code == 0, pools.err
    lines = pools.out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATE", "AUTOSTART", "CAPACITY",
                                "ALLOCATION", "VOLUMES", "MANAGED", "SET"]
    assert lines[1].split() == ["images", "dir", "active", "no", "-", "-", "3", "yes", "lab"]

    volumes = cli("get", "volumes")
    assert volumes.code == 0, volumes.err
    table = [line.split() for line in volumes.out.splitlines()]
    assert table[0] == ["NAME", "POOL", "CAPACITY", "ALLOCATION", "FORMAT", "MANAGED", "SET"]
    rows = {r[0]: r for r in table[1:]}
    assert rows["data.img"][1:4] == ["images", "1", "MiB"]
    assert rows["data.img"][-3:] == ["raw", "yes", "lab"]
    assert rows["theirs.img"][2:4] == ["1.5", "MiB"] and rows["theirs.img"][-2:] == ["no", "-"]
    assert "web-cidata.iso" in rows  # listed: it is on the host

    wide = cli("get", "volumes", "-o", "wide").out.splitlines()
    assert wide[0].split()[7:] == ["PATH", "BACKING", "DELETE-POLICY", "USED-BY", "SOURCE",
                                   "COMMIT", "LABELS"]
    seed = next(r for r in wide if r.startswith("web-cidata.iso "))
    assert " web hdd " in seed  # the running guest that has it as its CD-ROM

    as_json = {r["name"]: r for r in cli("get", "volumes", "-o", "json").json()}
    assert as_json["theirs.img"]["capacity"] == 1536 * 1024
    assert (as_json["data.img"]["deletePolicy"], as_json["data.img"]["set"]) == ("delete", "lab")
    assert as_json["data.img"]["source"] == str(specs / "web.yaml")
    as_yaml = yaml.safe_load(cli("get", "pools", "-o", "yaml").out)
    assert [(p["name"], p["managed"], p["volumes"]) for p in as_yaml] == [("images", True, 3)]


def test_adopting_an_export_keeps_what_virtctl_knows_of_a_volumes_content(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path,
    storage_calls: list[str],
) -> None:
    """An export has no content (no host says where a volume's data came from); adopting
    it must not make virtctl forget the checksum it wrote, or the original spec would
    then ask to replace the volume's data."""
    import hashlib

    image = tmp_path / "base.img"
    image.write_bytes(bytes(range(256)) * 16)
    digest = "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "s.yaml").write_text(
        "kind: StoragePool\nname: images\ntype: dir\ntarget: {path: /srv/images}\n---\n"
        "kind: Volume\nname: base.img\npool: images\nformat: raw\n"
        f"content: {{file: {image}, checksum: '{digest}'}}\n")
    assert cli("apply", "-f", str(specs)).code == 0
    folder = tmp_path / "exported"
    assert cli("export", "--managed-only", "--to", str(folder)).code == 0
    assert "content" not in (folder / "volume-images--base.img.yaml").read_text()
    assert cli("apply", "--adopt", "-f", str(folder)).code == 0

    again = cli("diff", "-f", str(specs))
    assert "would replace" not in again.out and "recreate" not in again.out, again.out
    storage_calls.clear()
    back = cli("apply", "-f", str(specs))
    assert back.code == 0, back.out + back.err
    assert all("virtctl-state.json" in c for c in storage_calls), storage_calls
    assert sim().download_volume("images", "base.img", limit=1 << 20) == image.read_bytes()
    assert cli("diff", "-f", str(specs)).code == 0


def test_get_domains_and_networks_say_their_set_as_pools_and_volumes_do(
    cli: Callable[..., Any], sim: Callable[..., SimDriver], tmp_path: Path, kit: Any
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    kit.write(specs, "mine.xml", kit.domain_xml("mine", state="shutoff"))
    kit.write(specs, "mynet.xml", kit.network_xml("mynet"))
    assert cli("apply", "--set", "lab", "-f", str(specs)).code == 0
    unmanaged_host(sim())
    for what, name in (("domains", "mine"), ("networks", "mynet")):
        rows = {r["name"]: r for r in cli("get", what, "-o", "json").json()}
        assert rows[name]["set"] == "lab"
        assert all(r["set"] is None for n, r in rows.items() if n != name)
        wide = cli("get", what, "-o", "wide").out.splitlines()
        header = wide[0].split()
        at = header.index("SET")
        assert header[at:at + 3] == ["SET", "SOURCE", "COMMIT"], header
        row = next(line.split() for line in wide[1:] if line.split()[0] == name)
        assert row[header.index("SET")] == "lab"
