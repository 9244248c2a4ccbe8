"""`virtctl watch --fleet NAME` (docs/fleet.md, "Membership" and "Status"), against a
real 3-member etcd cluster on loopback (etcdcluster.py) and real watch processes:

- 3 members share 60 sim hosts and qemu:///system: every host converges and is owned
  by exactly one member (its rendezvous owner); a member killed with SIGKILL: its hosts
  converge again within TTL + interval; when it comes back the hosts rebalance; the sim
  hosts' pass logs (passes.log, written under the host lock) never show two passes on
  one host overlapping;
- etcd faults: one etcd member stopped, the fleet goes on; quorum lost, members do
  nothing (no lock), say so in logs, metrics and `virtctl status`, and resume when
  quorum returns;
- a SIGSTOPped member's hosts show `stale` in `virtctl status`, then are taken over;
- an agent's host is left to the agent while it lives, and taken back when it dies.

TTLs and intervals are short (TTL 3 s, interval 2 s) to keep CI time small; every wait
is for a condition, with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, purge_libvirt, require_connection
from tests.integration.etcdcluster import EtcdCluster
from tests.integration.test_libvirt_reconcile import domain_yaml
from virtctl.coord.etcd import EtcdClient
from virtctl.watch.membership import read_status
from virtctl.coord.rendezvous import owner
from virtctl.coord.status import HostStatus, rows_from
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import Kind
from virtctl.uri import parse_uri

REPO = Path(__file__).resolve().parents[2]
TTL, INTERVAL = 3, 2.0
QEMU = "qemu:///system"


def until(condition: Callable[[], object], timeout: float, what: str,
          describe: Callable[[], str] = lambda: "") -> float:
    """Wait for `condition`; the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{describe()}")
        time.sleep(0.1)
    return time.monotonic() - began


def env_for(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTCTL_CONNECT", "LIBVIRT_DEFAULT_URI", "VIRTCTL_COORDINATION",
                        "VIRTCTL_ETCD_USER", "VIRTCTL_ETCD_PASSWORD", "VIRTCTL_LOCK_DIR")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0",
               VIRTCTL_SIM_FSYNC="0")
    return env


class Member:
    """One `virtctl watch --fleet` process (JSON logs to a file, metrics on a free port)."""

    def __init__(self, tmp: Path, cluster: EtcdCluster, fleet: str, name: str,
                 specs: Path, state: Path, *extra: str, interval: float = INTERVAL,
                 ttl: int = TTL) -> None:
        self.name = name
        self.log = tmp / f"{name}-{secrets.token_hex(2)}.log"
        argv = [sys.executable, "-m", "virtctl", "watch", "-f", str(specs),
                "--interval", f"{interval:g}s", "--coordination", cluster.url,
                "--lease-ttl", str(ttl), "--fleet", fleet, "--member", name,
                "--log-format", "json", "--metrics-port", "0", *extra]
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(argv, env=env_for(state), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def records(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def events(self, event: str) -> list[dict[str, object]]:
        return [r for r in self.records() if r.get("event") == event]

    def metrics(self) -> dict[str, float]:
        found = self.events("metrics")
        if not found:
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{found[0]['port']}/metrics",
                                        timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return {}
        values = {}
        for line in text.splitlines():
            match = re.match(r"^(virtctl_fleet_\w+)\{member=\"[^\"]+\"\} (\S+)$", line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values

    def stop(self) -> None:
        if self.proc.poll() is None:
            with_signal(self.proc, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def with_signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signum)


@pytest.fixture
def members(tmp_path: Path) -> Iterator[list[Member]]:
    started: list[Member] = []
    yield started
    for member in started:
        member.stop()


def sim_spec(host: str, dom: str) -> str:
    return (f"---\nkind: Domain\nname: {dom}\ntype: kvm\nmemory: 64MiB\nstate: shutoff\n"
            f"os: {{type: hvm}}\nconnect: sim:///{host}\n")


def write_specs(folder: Path, hosts: list[str], doms: tuple[str, ...] = ("vm",),
                extra: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(sim_spec(h, f"{d}-{h}") for h in hosts for d in doms) + extra
    tmp = folder / ".vms.yaml.tmp"
    tmp.write_text(text)
    tmp.replace(folder / "vms.yaml")  # one change, never a half-written file


def sim(state: Path, host: str) -> SimDriver:
    return SimDriver(parse_uri(f"sim:///{host}"), env={"VIRTCTL_STATE_DIR": str(state)})


def domains(state: Path, host: str) -> set[str]:
    return set(sim(state, host).snapshot().domains)


def status(client: EtcdClient, fleet: str) -> dict[str, HostStatus]:
    """uri -> row, read as `virtctl status` reads it."""
    records, live = read_status(client, fleet)
    return {row.uri: row for row in rows_from(records, live)}


def virtctl_status(cluster: EtcdCluster, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virtctl", "status", "--coordination",
                           cluster.url, *args], env=env_for(state), capture_output=True,
                          text=True, timeout=60, check=False)


def passes(state: Path, host: str) -> list[dict[str, float | str]]:
    log = state / "sim" / host / "passes.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def assert_no_overlap(state: Path, hosts: list[str]) -> int:
    """No two passes on one host overlap; the number of passes seen."""
    seen = 0
    for host in hosts:
        ordered = sorted(passes(state, host), key=lambda p: float(p["start"]))
        seen += len(ordered)
        for first, second in zip(ordered, ordered[1:]):
            assert float(second["start"]) >= float(first["end"]), (
                f"two passes on {host} overlap: {first} and {second}")
    return seen


def fleet_name() -> str:
    return f"f{secrets.token_hex(3)}"


def all_in_sync(client: EtcdClient, fleet: str, uris: list[str],
                owners: Callable[[str], str] | None = None) -> Callable[[], bool]:
    def check() -> bool:
        try:
            rows = status(client, fleet)
        except Exception:  # noqa: BLE001 (etcd between states: not yet)
            return False
        return all(uri in rows and rows[uri].state == "in-sync"
                   and (owners is None or rows[uri].member == owners(uri)) for uri in uris)
    return check


def table(client: EtcdClient, fleet: str) -> str:
    try:
        rows = status(client, fleet)
    except Exception as exc:  # noqa: BLE001
        return repr(exc)
    return "\n".join(f"{u} {r.state} {r.member} {r.why_stale}" for u, r in sorted(rows.items()))


def test_members_share_hosts_take_over_and_rebalance(
        etcd_cluster: EtcdCluster, tmp_path: Path, members: list[Member]) -> None:
    require_connection(QEMU)
    prefix = f"{PREFIX}{secrets.token_hex(3)}-"
    state, specs, fleet = tmp_path / "state", tmp_path / "specs", fleet_name()
    hosts = [f"{prefix}fleet-{i:03d}" for i in range(60)]
    qemu_dom = f"{prefix}fleetvm"
    write_specs(specs, hosts, extra="---\n" + domain_yaml(qemu_dom, state="shutoff")
                + f"connect: {QEMU}\n")
    uris = [f"sim:///{h}" for h in hosts] + [QEMU]
    client = etcd_cluster.client()
    names = ["m1", "m2", "m3"]
    try:
        for name in names:
            members.append(Member(tmp_path, etcd_cluster, fleet, name, specs, state))

        def owned_by(live: list[str]) -> Callable[[str], str]:
            return lambda uri: owner(uri, live) or ""

        # All converge, each host owned by exactly one member: its rendezvous owner.
        until(all_in_sync(client, fleet, uris, owned_by(names)), 120,
              "61 hosts in sync, each by its rendezvous owner", lambda: table(client, fleet))
        for host in hosts:
            assert domains(state, host) == {f"vm-{host}"}
        assert qemu_dom in subprocess.run(
            ["virsh", "-c", QEMU, "list", "--all", "--name"], capture_output=True,
            text=True, check=True).stdout.split()
        owned = {m.name: m.metrics().get("virtctl_fleet_hosts_owned") for m in members}
        expected = {n: sum(1 for u in uris if owner(u, names) == n) for n in names}
        assert owned == expected, (owned, expected)
        cli = virtctl_status(etcd_cluster, state, "--fleet", fleet, "-o", "json")
        doc = json.loads(cli.stdout)
        assert cli.returncode == 0, cli.stderr
        assert doc["totals"]["hosts"] == 61 and doc["totals"]["in-sync"] == 61

        # kill -9 one member; its hosts, changed behind its back, converge again.
        victim = members[1]
        lost = [h for h in hosts if owner(f"sim:///{h}", names) == victim.name]
        victim.proc.kill()
        victim.proc.wait()
        killed = time.time()
        for host in lost:
            sim(state, host).undefine(Kind.DOMAIN, f"vm-{host}")
        rest = [n for n in names if n != victim.name]

        def converged_again() -> bool:
            return all(domains(state, h) == {f"vm-{h}"} for h in lost) and all_in_sync(
                client, fleet, uris, owned_by(rest))()

        until(converged_again, 60, "the killed member's hosts converging again",
              lambda: table(client, fleet))
        # Each of its hosts was taken over (a pass by another member began) within
        # TTL + one interval of the kill, plus a second for a busy 2-core box; the
        # passes themselves then take what they take (the wait above bounds them).
        for host in lost:
            first = min(float(p["start"]) for p in passes(state, host)
                        if p["member"] != victim.name and float(p["start"]) > killed)
            assert first - killed <= TTL + INTERVAL + 1.0, (
                f"{host} taken over {first - killed:.1f} s after the kill")
        takeovers = sum(m.metrics().get("virtctl_fleet_takeovers_total", 0)
                        for m in members if m is not victim)
        assert takeovers == len(lost) + (owner(QEMU, names) == victim.name)

        # It comes back (same name): its share returns to it, and only its share moves.
        members[1] = Member(tmp_path, etcd_cluster, fleet, victim.name, specs, state)
        until(all_in_sync(client, fleet, uris, owned_by(names)), 60,
              "the hosts rebalanced onto the rejoined member", lambda: table(client, fleet))
        assert members[1].metrics().get("virtctl_fleet_hosts_owned") == expected[victim.name]
        # Those hosts were in sync, as the others' records say with their run keys: the
        # rejoined member recorded them so without a pass (loop.py `_taken_over`), where
        # the lost hosts above, changed behind the victim's back, each had a full pass.
        assert '"event": "taken-over"' in members[1].log.read_text()

        for member in members:
            member.stop()
        # Passes on each host never overlapped, and hosts did change hands.
        seen = assert_no_overlap(state, hosts)
        assert seen >= 2 * len(hosts)
        assert all(len({p["member"] for p in passes(state, h)}) >= 2 for h in lost)
    finally:
        # The agents first: one still running would define the guest again after the purge.
        for member in members:
            member.stop()
        purge_libvirt(QEMU, prefix=prefix)


def test_etcd_faults(etcd_cluster: EtcdCluster, tmp_path: Path,
                     members: list[Member]) -> None:
    """One etcd member down: the fleet goes on. Quorum lost: no action without a lock,
    said in logs, metrics and status; resumes when quorum returns."""
    state, specs, fleet = tmp_path / "state", tmp_path / "specs", fleet_name()
    hosts = [f"faults-{i}" for i in range(8)]
    write_specs(specs, hosts)
    uris = [f"sim:///{h}" for h in hosts]
    client = etcd_cluster.client()
    for name in ("m1", "m2"):
        members.append(Member(tmp_path, etcd_cluster, fleet, name, specs, state))
    until(all_in_sync(client, fleet, uris), 60, "hosts in sync", lambda: table(client, fleet))

    # One etcd member stopped: a spec change still reaches every host.
    etcd_cluster.stop_member(0)
    write_specs(specs, hosts, doms=("vm", "one"))
    until(lambda: all(domains(state, h) == {f"vm-{h}", f"one-{h}"} for h in hosts), 60,
          "a change applied with one etcd member down")
    until(all_in_sync(client, fleet, uris), 30, "status in sync with one member down",
          lambda: table(client, fleet))
    etcd_cluster.restart(0)

    # Quorum lost: two of three members down.
    etcd_cluster.kill(1)
    etcd_cluster.kill(2)
    until(lambda: all(m.events("member-lease-lost") for m in members), 90,
          "every member saying it lost its lease")
    for member in members:
        assert member.metrics().get("virtctl_fleet_lease_alive") == 0
    # A change now must not be applied by anyone: no lock, no action.
    write_specs(specs, hosts, doms=("vm", "one", "two"))
    until(lambda: all(m.events("lock-unavailable") for m in members), 90,
          "every member logging lock-unavailable for its hosts")
    deadline = time.monotonic() + 2 * INTERVAL
    while time.monotonic() < deadline:
        for host in hosts:
            assert f"two-{host}" not in domains(state, host), "acted without a lock"
        time.sleep(0.2)
    cli = virtctl_status(etcd_cluster, state, "--fleet", fleet)
    assert cli.returncode == 1 and "etcd" in cli.stderr, (cli.stdout, cli.stderr)
    assert all(m.metrics().get("virtctl_fleet_lease_alive") == 0 for m in members)

    # Quorum back: the members register again and apply the change, whole.
    etcd_cluster.restart(1)
    etcd_cluster.restart(2)
    until(lambda: all(domains(state, h) == {f"vm-{h}", f"one-{h}", f"two-{h}"}
                      for h in hosts), 60, "the change applied once quorum returned")
    until(all_in_sync(client, fleet, uris), 30, "status in sync again",
          lambda: table(client, fleet))
    until(lambda: all(m.metrics().get("virtctl_fleet_lease_alive") == 1 for m in members),
          30, "members registered again")
    for member in members:
        member.stop()
    assert_no_overlap(state, hosts)


def test_a_stopped_members_hosts_show_stale_then_are_taken_over(
        etcd_cluster: EtcdCluster, tmp_path: Path, members: list[Member]) -> None:
    # A TTL longer than 3 intervals: the records go stale by age before the lease ends.
    interval, ttl = 2.0, 15
    state, specs, fleet = tmp_path / "state", tmp_path / "specs", fleet_name()
    hosts = [f"paused-{i}" for i in range(8)]
    write_specs(specs, hosts)
    uris = [f"sim:///{h}" for h in hosts]
    client = etcd_cluster.client()
    for name in ("m1", "m2"):
        members.append(Member(tmp_path, etcd_cluster, fleet, name, specs, state,
                              interval=interval, ttl=ttl))
    until(all_in_sync(client, fleet, uris, lambda u: owner(u, ["m1", "m2"]) or ""), 60,
          "hosts in sync, each by its owner", lambda: table(client, fleet))
    frozen = [u for u in uris if owner(u, ["m1", "m2"]) == "m1"]
    assert frozen
    with_signal(members[0].proc, signal.SIGSTOP)
    try:
        until(lambda: all(status(client, fleet)[u].state == "stale" for u in frozen), 30,
              "the stopped member's hosts shown stale", lambda: table(client, fleet))
        cli = virtctl_status(etcd_cluster, state, "--fleet", fleet)
        assert cli.returncode == 1, cli.stdout
        lines = cli.stdout.splitlines()
        assert len(lines) == 1 + len(hosts) + 1  # heading, every host, totals
        for uri in frozen:  # (the other member's may be late too on a busy box)
            assert any(line.split()[:2] == [uri, "stale"] for line in lines[1:-1]), lines
        until(all_in_sync(client, fleet, uris, lambda u: "m2"), 30,
              "the stopped member's hosts taken over", lambda: table(client, fleet))
    finally:
        with_signal(members[0].proc, signal.SIGCONT)
    # Woken, it registers again and takes its share back, one pass at a time per host.
    until(all_in_sync(client, fleet, uris, lambda u: owner(u, ["m1", "m2"]) or ""), 60,
          "the woken member's share back", lambda: table(client, fleet))
    for member in members:
        member.stop()
    assert_no_overlap(state, hosts)


def test_an_agents_host_is_left_to_it_while_it_lives(
        etcd_cluster: EtcdCluster, tmp_path: Path, members: list[Member]) -> None:
    state, fleet = tmp_path / "state", fleet_name()
    hosts = ["agent-a", "agent-b"]
    central, local = tmp_path / "central", tmp_path / "local"
    write_specs(central, hosts, doms=("central",))
    local.mkdir()
    (local / "vm.yaml").write_text("kind: Domain\nname: local\ntype: kvm\nmemory: 64MiB\n"
                                   "state: shutoff\nos: {type: hvm}\n")
    client = etcd_cluster.client()
    members.append(Member(tmp_path, etcd_cluster, fleet, "agent-on-a", local, state,
                          "-c", "sim:///agent-a"))
    until(lambda: members[0].events("started"), 30, "the agent started")
    members.append(Member(tmp_path, etcd_cluster, fleet, "central", central, state))
    until(all_in_sync(client, fleet, ["sim:///agent-a", "sim:///agent-b"],
                      lambda u: "agent-on-a" if u.endswith("agent-a") else "central"), 60,
          "the agent's host by the agent, the other by the central member",
          lambda: table(client, fleet))
    assert domains(state, "agent-a") == {"local"}  # the central member left it alone
    assert domains(state, "agent-b") == {"central-agent-b"}
    assert members[1].events("host-skipped")
    # The agent dies: the central member takes its host within TTL + interval.
    members[0].proc.kill()
    members[0].proc.wait()
    killed = time.time()
    until(lambda: "central-agent-a" in domains(state, "agent-a"), 30,
          "the central member taking the agent's host")
    first = min(float(p["start"]) for p in passes(state, "agent-a")
                if p["member"] == "central")
    assert first - killed <= TTL + INTERVAL + 1.0, first - killed
    until(all_in_sync(client, fleet, ["sim:///agent-a"], lambda u: "central"), 30,
          "its status by the central member", lambda: table(client, fleet))
    members[1].stop()
    assert_no_overlap(state, hosts)
