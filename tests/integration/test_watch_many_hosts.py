"""`virtctl watch` over several hosts: a real watcher process, one reconcile loop per host.

Specs name their host with `connect:` (a URI or a name from a `kind: Hosts` document);
the rest go to `-c`. Each test starts the watcher as a subprocess (JSON logs), changes
specs or hosts behind its back, and polls the hosts' state with bounded waits. The sim
hosts share one state directory (one sim per name), read and changed from this process
as another tool would. The last test runs the watcher over two private loopback libvirtd
daemons.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import purge_libvirt
from tests.integration.libvirtd_tcp import RemoteLibvirtd
from tests.integration.test_libvirt_reconcile import domain_yaml, name
from tests.integration.test_many_hosts import hosts_doc, sim_domain
from tests.integration.test_watch_e2e import REPO, Watcher, save, wait_for
from virtctl.drivers import connect
from virtctl.drivers.sim.driver import SimDriver
from virtctl.coord.hostlock import host_lock
from virtctl.model import DomainState, Kind
from virtctl.uri import parse_uri

DOWN = "qemu+tcp://127.0.0.1:9/system"  # nothing listens on the discard port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cleared = ("VIRTCTL_CONNECT", "LIBVIRT_DEFAULT_URI")
    out = {k: v for k, v in os.environ.items() if k not in cleared}
    out.update(VIRTCTL_STATE_DIR=str(tmp_path / "state"), VIRTCTL_SIM_FSYNC="0",
               VIRTCTL_CACHE="0", PYTHONPATH=str(REPO) + os.pathsep + out.get("PYTHONPATH", ""))
    return out


@pytest.fixture
def sim(env: dict[str, str]) -> Callable[[str], SimDriver]:
    return lambda host: SimDriver(parse_uri(f"sim:///{host}"), env=env)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    return folder


@pytest.fixture
def start_watch(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(*args: str) -> Watcher:
        watcher = Watcher(tmp_path, ["-f", "specs", "--interval", "1h", *args], env)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        if watcher.proc.poll() is None:
            watcher.proc.kill()
            watcher.proc.wait()


def state_of(host: SimDriver, dom: str) -> DomainState | None:
    found = host.snapshot().domains.get(dom)
    return found.state if found is not None else None


def running(host: SimDriver, *doms: str) -> Callable[[], bool]:
    return lambda: all(state_of(host, d) is DomainState.RUNNING for d in doms)


def in_sync(watcher: Watcher, host: str, after: int = 0) -> Callable[[], bool]:
    """A run on `host` ended in sync after the first `after` log records."""
    return lambda: any(r.get("event") == "reconciled" and r.get("host") == host
                       and r.get("in_sync") for r in watcher.records()[after:])


def by_host(watcher: Watcher, event: str, host: str) -> list[dict[str, Any]]:
    return [r for r in watcher.events(event) if r.get("host") == host]


@pytest.fixture
def fleet(specs: Path) -> Path:
    (specs / "hosts.yaml").write_text(hosts_doc(a="sim:///a", b="sim:///b"))
    (specs / "a.yaml").write_text(sim_domain("web", connect_to="a"))
    (specs / "b.yaml").write_text(sim_domain("db", connect_to="b")
                                  + sim_domain("cache", connect_to="sim:///b"))
    (specs / "plain.yaml").write_text(sim_domain("local", connect_to="x")
                                      .replace("connect: x\n", ""))
    return specs


def test_every_host_converges_and_each_is_put_back_on_its_own(
    fleet: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    watcher = start_watch("-c", "sim:///lab")
    a, b, lab = sim("a"), sim("b"), sim("lab")
    wait_for(running(a, "web"), what="web on a")
    wait_for(running(b, "db", "cache"), what="db and cache on b")
    wait_for(running(lab, "local"), what="local on lab (no connect: goes to -c)")
    assert sorted(a.snapshot().domains) == ["web"]
    assert sorted(lab.snapshot().domains) == ["local"]
    started = watcher.events("started")[0]
    assert started["hosts"] == ["sim:///a", "sim:///b", "sim:///lab"]
    for host in ("sim:///a", "sim:///b", "sim:///lab"):
        wait_for(in_sync(watcher, host), what=f"{host} in sync")

    web_before = a.store.get(Kind.DOMAIN, "web")
    mark = len(watcher.records())
    b.destroy(Kind.DOMAIN, "db")
    wait_for(running(b, "db"), timeout=2.0, what="db restarted on b")
    wait_for(in_sync(watcher, "sim:///b", after=mark), what="b in sync again")
    assert a.store.get(Kind.DOMAIN, "web") == web_before
    assert [r["object"] for r in by_host(watcher, "host-event", "sim:///b")] == ["domain/db"]
    assert by_host(watcher, "host-event", "sim:///a") == []
    assert [(r["action"], r["object"]) for r in watcher.records()[mark:]
            if r.get("event") == "action"] == [("start", "domain/db")]
    assert watcher.stop(signal.SIGTERM) == 0
    assert watcher.events("stopped")


def test_an_unreachable_host_fails_only_itself(
    specs: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    (specs / "hosts.yaml").write_text(hosts_doc(up="sim:///up", down=DOWN))
    (specs / "up.yaml").write_text(sim_domain("alive", connect_to="up"))
    (specs / "down.yaml").write_text(sim_domain("lost", connect_to="down"))
    watcher = start_watch()
    up = sim("up")
    wait_for(running(up, "alive"), what="alive on the reachable host")
    failed = watcher.wait_event("driver-error")
    assert failed["host"] == DOWN
    assert failed["code"] == "connection" or "127.0.0.1" in failed["msg"]
    assert by_host(watcher, "driver-error", "sim:///up") == []

    save(specs / "up.yaml", sim_domain("alive", connect_to="up")
         + sim_domain("later", connect_to="up"))
    wait_for(running(up, "alive", "later"), what="an edit applied on the reachable host")
    retries = by_host(watcher, "retry-scheduled", DOWN)
    assert retries and retries[0]["seconds"] >= 1
    assert watcher.stop(signal.SIGTERM) == 0


def test_a_spec_error_in_one_file_only_affects_that_files_objects(
    fleet: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    # --prune-all: host b ends up with no specs at all, which --prune alone refuses.
    watcher = start_watch("-c", "sim:///lab", "--prune", "--prune-all")
    a, b = sim("a"), sim("b")
    wait_for(running(b, "db", "cache"), what="db and cache on b")
    wait_for(running(a, "web"), what="web on a")

    save(fleet / "b.yaml", sim_domain("db", connect_to="b") + "memory: [")
    invalid = watcher.wait_event("spec-invalid")
    assert invalid["file"] == "specs/b.yaml" and "host" not in invalid
    assert len(watcher.events("spec-invalid")) == 1  # once, not once per host
    b.destroy(Kind.DOMAIN, "cache")  # still declared by b.yaml's last good specs
    wait_for(running(b, "cache"), what="cache restarted from its last good spec")
    save(fleet / "a.yaml", sim_domain("web", connect_to="a").replace("64MiB", "96MiB"))
    wait_for(lambda: "98304" in a.snapshot().domains["web"].xml, what="web redefined on a")
    assert sorted(b.snapshot().domains) == ["cache", "db"]  # nothing of b.yaml pruned

    save(fleet / "b.yaml", sim_domain("db", connect_to="b"))
    watcher.wait_event("spec-valid")
    wait_for(lambda: sorted(b.snapshot().domains) == ["db"], what="cache pruned once valid")
    assert watcher.stop(signal.SIGTERM) == 0


def test_a_file_failing_one_hosts_check_still_applies_on_the_others(
    specs: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    b = sim("b")
    b.define(Kind.DOMAIN, "<domain type='kvm'><name>db</name><memory unit='MiB'>64</memory>"
             "<os><type arch='x86_64'>hvm</type></os></domain>")  # not virtctl's
    unmanaged = b.store.get(Kind.DOMAIN, "db")
    (specs / "hosts.yaml").write_text(hosts_doc(a="sim:///a", b="sim:///b"))
    (specs / "mixed.yaml").write_text(sim_domain("web", connect_to="a")
                                      + sim_domain("db", connect_to="b"))
    watcher = start_watch()
    wait_for(running(sim("a"), "web"), what="web on a")
    invalid = watcher.wait_event("spec-invalid")
    assert (invalid["file"], invalid["host"]) == ("specs/mixed.yaml", "sim:///b")
    assert "not managed" in " ".join(invalid["errors"])
    wait_for(in_sync(watcher, "sim:///b"), what="b settled")
    assert b.store.get(Kind.DOMAIN, "db") == unmanaged
    assert len(watcher.events("spec-invalid")) == 1
    assert watcher.stop(signal.SIGTERM) == 0


def test_hosts_that_appear_later_are_watched_and_dropped_ones_stop(
    fleet: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    # --prune-all: host b ends up with no specs at all, which --prune alone refuses.
    watcher = start_watch("-c", "sim:///lab", "--prune", "--prune-all")
    wait_for(running(sim("b"), "db"), what="db on b")
    (fleet / "c.yaml").write_text(sim_domain("extra", connect_to="sim:///c"))
    wait_for(running(sim("c"), "extra"), what="extra on a host that appeared later")
    assert [r["host"] for r in watcher.events("host-added")] == ["sim:///c"]

    (fleet / "c.yaml").unlink()  # c: no spec targets it, no Hosts document names it
    removed = watcher.wait_event("host-removed")
    assert removed["host"] == "sim:///c"
    assert sorted(sim("c").snapshot().domains) == ["extra"]  # left alone, not pruned
    (fleet / "b.yaml").unlink()  # b is named in hosts.yaml: still watched, so pruned
    wait_for(lambda: sim("b").snapshot().domains == {}, what="b emptied by --prune")
    assert [r["host"] for r in watcher.events("host-removed")] == ["sim:///c"]
    assert watcher.stop(signal.SIGINT) == 0


def test_each_pass_holds_the_host_lock_and_only_during_the_pass(
    fleet: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher],
    env: dict[str, str],
) -> None:
    watcher = start_watch("-c", "sim:///lab")
    a, b = sim("a"), sim("b")
    wait_for(running(a, "web"), what="web on a")
    wait_for(in_sync(watcher, "sim:///a"), what="a in sync")
    # b too: the test stops b's guest below, so b must have made it first.
    wait_for(running(b, "db"), what="db on b")
    wait_for(in_sync(watcher, "sim:///b"), what="b in sync")
    root = Path(env["VIRTCTL_STATE_DIR"])
    took = threading.Event()

    def take() -> None:
        with host_lock("sim:///a", root):
            took.set()

    taker = threading.Thread(target=take)
    taker.start()
    taker.join(timeout=5)
    assert took.is_set(), "an idle watcher must not hold the host's lock"

    with host_lock("sim:///a", root):  # as a `virtctl apply` on host a would
        a.destroy(Kind.DOMAIN, "web")
        b.destroy(Kind.DOMAIN, "db")
        wait_for(running(b, "db"), what="b goes on while a is locked")
        # a's pass has begun and waits for the lock (its notice is logged at once).
        wait_for(lambda: any("sim:///a" in str(r.get("message", "")) or r.get("host") == "sim:///a"
                             for r in watcher.events("lock-wait")), what="a waits for the lock")
        assert state_of(a, "web") is DomainState.SHUTOFF  # a waits for the lock
    wait_for(running(a, "web"), what="web restarted once the lock is free")
    assert watcher.stop(signal.SIGTERM) == 0


def test_metrics_carry_the_host(
    fleet: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    import urllib.request

    watcher = start_watch("-c", "sim:///lab", "--metrics-port", "0")
    port = watcher.wait_event("metrics")["port"]
    for host in ("sim:///a", "sim:///b", "sim:///lab"):
        wait_for(in_sync(watcher, host), what=f"{host} in sync")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'virtctl_watch_reconcile_runs_total{host="sim:///b",trigger="start"} 1' in body
    assert ('virtctl_watch_actions_total{host="sim:///b",action="start",object="domain",'
            'result="done"} 2') in body
    assert 'virtctl_watch_spec_files{host="sim:///a",state="valid"} 4' in body
    assert watcher.stop(signal.SIGTERM) == 0


# -- two real libvirt daemons on loopback --------------------------------------------------


def test_two_libvirt_hosts_are_watched_concurrently(
    daemons: list[RemoteLibvirtd], specs: Path, start_watch: Callable[..., Watcher]
) -> None:
    one, two = daemons
    dom_one, dom_two = name(), name()
    (specs / "hosts.yaml").write_text(hosts_doc(one=one.uri, two=two.uri))
    (specs / "one.yaml").write_text(domain_yaml(dom_one) + "connect: one\n")
    (specs / "two.yaml").write_text(domain_yaml(dom_two) + "connect: two\n")
    watcher = start_watch("--shutdown-timeout", "5")
    try:
        hosts = {one.uri: connect(one.uri), two.uri: connect(two.uri)}

        def guest_running(uri: str, dom: str) -> Callable[[], bool]:
            def check() -> bool:
                found = hosts[uri].snapshot().domains.get(dom)
                return found is not None and found.state is DomainState.RUNNING
            return check

        wait_for(guest_running(one.uri, dom_one), timeout=20, what="guest on daemon one")
        wait_for(guest_running(two.uri, dom_two), timeout=20, what="guest on daemon two")
        assert dom_two not in hosts[one.uri].snapshot().domains
        mark = len(watcher.records())
        hosts[two.uri].destroy(Kind.DOMAIN, dom_two)
        wait_for(guest_running(two.uri, dom_two), timeout=10, what="guest restarted on two")
        acted = [(r["host"], r["action"]) for r in watcher.records()[mark:]
                 if r.get("event") == "action"]
        assert acted == [(two.uri, "start")]
        assert watcher.stop(signal.SIGTERM) == 0
        for driver in hosts.values():
            driver.close()
    finally:
        for daemon in daemons:
            purge_libvirt(daemon.uri)


def test_the_log_names_no_host_when_only_one_is_involved(
    specs: Path, sim: Callable[[str], SimDriver], start_watch: Callable[..., Watcher]
) -> None:
    (specs / "web.yaml").write_text(sim_domain("web", connect_to="x").replace("connect: x\n", ""))
    watcher = start_watch("-c", "sim:///solo")
    wait_for(running(sim("solo"), "web"), what="web on solo")
    watcher.wait_event("reconciled")
    assert all("host" not in r for r in watcher.records())
    assert watcher.events("started")[0]["uri"] == "sim:///solo"
    assert watcher.stop(signal.SIGTERM) == 0
    assert json.dumps(watcher.events("started")[0]).count("hosts") == 0
