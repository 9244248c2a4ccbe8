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

from virtctl.drivers.sim import SimDriver
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
