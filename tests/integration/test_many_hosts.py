"""Many hosts: specs that name their host (`connect:`, `kind: Hosts`), reconciled per host.

On several `sim` hosts (one state directory, one sim per name) and on two private
loopback libvirtd daemons: each host gets its own objects; an unreachable host fails its
own objects only; a spec error on any host stops the run before anything is applied; a
second run against a host waits for the first (per-host lock).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.contract.support import purge_libvirt
from tests.integration.libvirtd_tcp import RemoteLibvirtd
from tests.integration.test_libvirt_reconcile import domain_yaml, name, network_yaml
from virtctl.drivers import connect
from virtctl.coord.hostlock import host_lock
from virtctl.model import Kind

REPO = Path(__file__).resolve().parents[2]


def sim_domain(dom: str, *, connect_to: str, net: str | None = None) -> str:
    nic = f"interfaces: [{{type: network, source: {{network: {net}}}}}]\n" if net else ""
    return (f"---\nkind: Domain\nname: {dom}\ntype: kvm\nmemory: 64MiB\n"
            f"os: {{type: hvm, arch: x86_64}}\nconnect: {connect_to}\n{nic}")


def sim_network(net: str, *, connect_to: str, octet: int) -> str:
    return (f"---\nkind: Network\nname: {net}\nconnect: {connect_to}\n"
            f"ips: [{{address: 192.168.{octet}.1, netmask: 255.255.255.0}}]\n")


def hosts_doc(**hosts: str) -> str:
    lines = "".join(f"  {k}: {v}\n" for k, v in hosts.items())
    return f"---\nkind: Hosts\nhosts:\n{lines}"


def virtctl(state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0")
    return subprocess.run([sys.executable, "-m", "virtctl", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def sim_names(state: Path, host: str) -> tuple[list[str], list[str]]:
    live = connect(f"sim:///{host}", env={"VIRTCTL_STATE_DIR": str(state)}).snapshot()
    return sorted(live.domains), sorted(live.networks)


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Path, Path]:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "hosts.yaml").write_text(hosts_doc(a="sim:///a", b="sim:///b"))
    (specs / "a.yaml").write_text(sim_network("lan", connect_to="a", octet=10)
                                  + sim_domain("web", connect_to="a", net="lan"))
    (specs / "b.yaml").write_text(sim_domain("db", connect_to="b")
                                  + sim_domain("cache", connect_to="sim:///b"))
    return specs, tmp_path / "state"


def test_each_host_gets_its_own_objects(fleet: tuple[Path, Path]) -> None:
    specs, state = fleet
    first = virtctl(state, "apply", "-f", str(specs))
    assert first.returncode == 0, first.stderr
    assert "=== sim:///a" in first.stdout and "=== sim:///b" in first.stdout
    assert sim_names(state, "a") == (["web"], ["lan"])
    assert sim_names(state, "b") == (["cache", "db"], [])
    assert sim_names(state, "default") == ([], [])
    again = virtctl(state, "diff", "-f", str(specs))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("No changes") == 2


def test_json_output_is_one_document_per_run(fleet: tuple[Path, Path]) -> None:
    specs, state = fleet
    result = virtctl(state, "apply", "-o", "json", "-f", str(specs))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["kind"] == "MultiHostApplyResult"
    by_uri = {h["uri"]: h for h in doc["hosts"]}
    assert set(by_uri) == {"sim:///a", "sim:///b"}
    assert {o["name"] for o in by_uri["sim:///b"]["objects"]} == {"db", "cache"}
    assert by_uri["sim:///a"]["report"]["failed"] == 0


def test_an_unreachable_host_fails_only_its_own_objects(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    # Nothing listens on 127.0.0.1:9 (discard): the connection is refused at once.
    (specs / "hosts.yaml").write_text(hosts_doc(up="sim:///up",
                                                down="qemu+tcp://127.0.0.1:9/system"))
    (specs / "up.yaml").write_text(sim_domain("alive", connect_to="up"))
    (specs / "down.yaml").write_text(sim_domain("lost", connect_to="down"))
    state = tmp_path / "state"
    result = virtctl(state, "apply", "-f", str(specs))
    assert result.returncode == 1
    assert "error: qemu+tcp://127.0.0.1:9/system" in result.stderr
    assert sim_names(state, "up") == (["alive"], [])


def test_a_spec_error_on_one_host_stops_every_host(fleet: tuple[Path, Path]) -> None:
    specs, state = fleet
    # An object virtctl does not own on host b: without --adopt, nothing is applied at all.
    connect("sim:///b", env={"VIRTCTL_STATE_DIR": str(state)}).define(
        Kind.DOMAIN, "<domain type='kvm'><name>db</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>")
    result = virtctl(state, "apply", "-f", str(specs))
    assert result.returncode == 1
    assert "domain/db exists on the host but is not managed" in result.stderr
    assert sim_names(state, "a") == ([], [])
    assert sim_names(state, "b") == (["db"], [])


def test_prune_empties_a_named_host_without_specs(fleet: tuple[Path, Path]) -> None:
    specs, state = fleet
    assert virtctl(state, "apply", "-f", str(specs)).returncode == 0
    (specs / "b.yaml").unlink()
    # Everything a set holds on a host goes only when asked for by name (--prune-all).
    refused = virtctl(state, "apply", "--prune", "-f", str(specs))
    assert refused.returncode == 1
    assert "sim:///b: refusing to prune 2 object(s)" in refused.stderr
    assert "the specs declare nothing for this host" in refused.stderr
    assert sim_names(state, "b") == (["cache", "db"], [])
    result = virtctl(state, "apply", "--prune", "--prune-all", "-f", str(specs))
    assert result.returncode == 0, result.stderr
    assert sim_names(state, "b") == ([], [])
    assert sim_names(state, "a") == (["web"], ["lan"])


def test_an_unknown_host_name_is_a_spec_error(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "x.yaml").write_text(sim_domain("web", connect_to="nowhere"))
    result = virtctl(tmp_path / "state", "apply", "-f", str(specs))
    assert result.returncode == 1
    assert "x.yaml" in result.stderr and "connect" in result.stderr
    assert "'nowhere' is neither a URI nor a host named" in result.stderr


def test_a_second_run_on_a_host_waits_for_the_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(sim_domain("web", connect_to="sim:///a"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with host_lock("sim:///a", state):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        env = {k: v for k, v in os.environ.items() if k != "VIRTCTL_CONNECT"}
        env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-m", "virtctl", "apply", "-f", str(specs)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stderr is not None
        # Its first words: it waits, and says so (read, not timed).
        assert "virtctl: waiting for the lock on sim:///a held by pid" in \
            proc.stderr.readline()
        assert proc.poll() is None, "apply must wait while another run holds the host"
        assert sim_names(state, "a") == ([], [])
    finally:
        release.set()
        holder.join()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert sim_names(state, "a") == (["web"], [])


# -- two real libvirt daemons on loopback --------------------------------------------------


def test_two_libvirt_hosts_reconcile_concurrently(daemons: list[RemoteLibvirtd],
                                                  tmp_path: Path) -> None:
    one, two = daemons
    dom_one, dom_two, net = name(), name(), name()
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "hosts.yaml").write_text(hosts_doc(one=one.uri, two=two.uri))
    (specs / "one.yaml").write_text(
        "---\n" + network_yaml(net) + "connect: one\n"
        + "---\n" + domain_yaml(dom_one) + "connect: one\n")
    (specs / "two.yaml").write_text("---\n" + domain_yaml(dom_two) + "connect: two\n")
    state = tmp_path / "state"
    try:
        result = virtctl(state, "apply", "-f", str(specs))
        assert result.returncode == 0, result.stdout + result.stderr
        first = json.loads(virtctl(state, "-c", one.uri, "get", "domains", "-o", "json").stdout)
        second = json.loads(virtctl(state, "-c", two.uri, "get", "domains", "-o",
                                    "json").stdout)
        assert [(d["name"], d["state"]) for d in first] == [(dom_one, "running")]
        assert [(d["name"], d["state"]) for d in second] == [(dom_two, "running")]
        assert virtctl(state, "diff", "-f", str(specs)).returncode == 0
        removed = virtctl(state, "delete", "--shutdown-timeout", "5", "-f", str(specs))
        assert removed.returncode == 0, removed.stdout + removed.stderr
        for daemon in daemons:
            assert json.loads(virtctl(state, "-c", daemon.uri, "get", "domains", "-o",
                                      "json").stdout) == []
    finally:
        for daemon in daemons:
            purge_libvirt(daemon.uri)


def test_validate_checks_every_host(fleet: tuple[Path, Path]) -> None:
    specs, state = fleet
    assert virtctl(state, "validate", "-f", str(specs)).returncode == 0
    connect("sim:///b", env={"VIRTCTL_STATE_DIR": str(state)}).define(
        Kind.DOMAIN, "<domain type='kvm'><name>cache</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>")
    # An unmanaged object is fine for validate (apply --adopt could take it) ...
    assert virtctl(state, "validate", "-f", str(specs)).returncode == 0
    # ... but a guest host b cannot run is not.
    (specs / "b.yaml").write_text(sim_domain("db", connect_to="b").replace(
        "arch: x86_64", "arch: aarch64"))
    result = virtctl(state, "validate", "-f", str(specs))
    assert result.returncode == 1 and "b.yaml" in result.stderr
    assert "aarch64" in result.stderr
