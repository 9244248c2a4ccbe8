"""What one spec change costs a watched host (issue 21's 1,000-host target): the change
is applied and verified in one round under one hold of the host's lock, and the git
commit that follows (no file changed) moves the status record's commit without a pass;
a wake that finds the host or its share changed still runs the full pass. Real sim hosts,
real files and git, the real Watcher and Fleet; only the fleet's etcd part is a recorder."""

from __future__ import annotations

import contextlib
import io
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from virtctl.coord.status import StatusRecord
from virtctl.drivers import connect
from virtctl.drivers.base import Driver
from virtctl.model import Kind
from virtctl.reconciler.plan.plan import Policy
from virtctl.watch import loop
from virtctl.watch.fleet import Catalog, Fleet, HostSpecs
from virtctl.watch.logs import Log, LogFormat
from virtctl.watch.loop import PassResult, Watcher
from virtctl.watch.metrics import WatchMetrics
from virtctl.watch.sources import Debouncer, Expectations, Inbox, Trigger

HOSTS = [f"sim:///round{i}" for i in range(3)]


def host_file(uri: str, memory: int) -> str:
    host = uri.rsplit("/", 1)[1]
    return "".join(
        f"---\nkind: Domain\nname: {host}-vm{d}\ntype: kvm\nmemory: {memory}MiB\n"
        f"os: {{type: hvm, arch: x86_64}}\nconnect: {uri}\n" for d in range(3))


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, text=True,
                          capture_output=True).stdout.strip()


class Recorder:
    """The fleet member's hook (loop.FleetHook), recording instead of writing to etcd;
    its status records go to `table` (etcd's status keys), shared between members."""

    def __init__(self, member: str = "m1",
                 table: dict[str, StatusRecord] | None = None) -> None:
        self.member = member
        self.table = {} if table is None else table
        self.passes: dict[str, int] = {}
        self.rounds: list[tuple[str, PassResult, str]] = []
        self.skipping = ""

    def skip(self, uri: str, driver: Driver) -> str:
        return self.skipping

    def passed(self, driver: Driver, started: float, ended: float) -> None:
        self.passes[driver.uri] = self.passes.get(driver.uri, 0) + 1

    def round_done(self, uri: str, driver: Driver | None, result: PassResult, *,
                   duration: float, commit: str, restart_pending: int,
                   key: str = "") -> None:
        self.rounds.append((uri, result, commit))
        in_sync = result.in_sync and not restart_pending
        self.table[uri] = StatusRecord(
            host=uri, uri=uri, outcome="in-sync" if in_sync else "failed",
            member=self.member, time=time.time(), interval=300.0, commit=commit,
            restart_pending=restart_pending, key=key if in_sync else "")

    def previous(self, driver: Driver) -> StatusRecord | None:
        return self.table.get(driver.uri)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "test@example.invalid")
    git(folder, "config", "user.name", "test")
    write(folder, 64)
    return folder


def write(folder: Path, memory: int, *, commit: bool = True) -> str:
    for uri in HOSTS:
        (folder / f"{uri.rsplit('/', 1)[1]}.yaml").write_text(host_file(uri, memory))
    if not commit:
        return ""
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", f"memory {memory}")
    return git(folder, "rev-parse", "HEAD")


@pytest.fixture
def locks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count every hold of a host's lock (the real lock is taken)."""
    held: dict[str, int] = {}
    real = loop.host_lock

    @contextlib.contextmanager
    def counted(uri: str, *args: object, **kwargs: object) -> Iterator[None]:
        with real(uri, *args, **kwargs):  # type: ignore[arg-type]
            held[uri] = held.get(uri, 0) + 1
            yield

    monkeypatch.setattr(loop, "host_lock", counted)
    return held


def watchers(repo: Path, state: Path, hook: Recorder,
             policy: Policy | None = None) -> list[Watcher]:
    journal = Log(io.StringIO(), fmt=LogFormat("json"))
    metrics = WatchMetrics()
    catalog = Catalog([str(repo)], default="sim:///default", journal=journal,
                      metrics=metrics)
    return [Watcher(uri, HostSpecs(catalog, uri),
                    Inbox(debounce=Debouncer(), expectations=Expectations()),
                    journal=journal, metrics=metrics, policy=policy or Policy(),
                    interval=300.0,
                    driver=connect(uri, env={"VIRTCTL_STATE_DIR": str(state)}),
                    lock_root=state, fleet=hook) for uri in HOSTS]


def memory_kib(state: Path, uri: str) -> set[int]:
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    return {int(d.xml.split('<memory unit="KiB">')[1].split("<")[0])
            for d in driver.snapshot().domains.values()}


def test_a_change_and_its_commit_cost_one_locked_round_of_two_passes_per_host(
        repo: Path, tmp_path: Path, locks: dict[str, int]) -> None:
    state = tmp_path / "state"
    hook = Recorder()
    hosts = watchers(repo, state, hook)
    head = git(repo, "rev-parse", "HEAD")
    for watcher in hosts:
        watcher._round({Trigger.START})
    # Apply, then verify: two passes, one lock hold, per host.
    assert hook.passes == dict.fromkeys(HOSTS, 2)
    assert locks == dict.fromkeys(HOSTS, 1)
    assert [(u, r.in_sync, c) for u, r, c in hook.rounds] == [(u, True, head) for u in HOSTS]

    # The files change (not committed yet), every host is woken: apply and verify again.
    write(repo, 96, commit=False)
    hosts[0].specs.catalog.changed()  # type: ignore[attr-defined] (the file watcher's call)
    hook.rounds.clear()
    for watcher in hosts:
        watcher._round({Trigger.SPEC})
    assert hook.passes == dict.fromkeys(HOSTS, 4)
    assert locks == dict.fromkeys(HOSTS, 2)
    assert all(memory_kib(state, uri) == {96 * 1024} for uri in HOSTS)
    assert {c for _, _, c in hook.rounds} == {head + "-dirty"}

    # The commit lands (no file changes): each host records it in sync, with no pass and
    # no lock; the hosts are as the last pass left them and their shares are the same.
    head = write(repo, 96)
    hook.rounds.clear()
    for watcher in hosts:
        watcher._round({Trigger.SPEC})
    assert hook.passes == dict.fromkeys(HOSTS, 4)
    assert locks == dict.fromkeys(HOSTS, 2)
    assert [(u, r.in_sync, c) for u, r, c in hook.rounds] == [(u, True, head) for u in HOSTS]


def test_a_wake_runs_the_full_pass_when_the_host_or_its_share_changed(
        repo: Path, tmp_path: Path, locks: dict[str, int]) -> None:
    state = tmp_path / "state"
    hook = Recorder()
    first, second, third = watchers(repo, state, hook)
    for watcher in (first, second, third):
        watcher._round({Trigger.START})
    assert hook.passes == dict.fromkeys(HOSTS, 2)

    # Someone changes a guest on the first host by hand (its event aside: a spec wake
    # alone must still see it, by the snapshot's fingerprint).
    other = connect(HOSTS[0], env={"VIRTCTL_STATE_DIR": str(state)})
    name = "round0-vm1"
    other.define(Kind.DOMAIN, other.snapshot().domains[name].xml.replace(
        '<memory unit="KiB">65536</memory>', '<memory unit="KiB">131072</memory>'))
    assert memory_kib(state, HOSTS[0]) == {65536, 131072}
    first._round({Trigger.SPEC})
    assert hook.passes[HOSTS[0]] == 4
    assert memory_kib(state, HOSTS[0]) == {65536}

    # Only the second host's file changes: its share differs, the third's does not.
    (repo / "round1.yaml").write_text(host_file(HOSTS[1], 80))
    first.specs.catalog.changed()  # type: ignore[attr-defined]
    second._round({Trigger.SPEC})
    third._round({Trigger.SPEC})
    assert (hook.passes[HOSTS[1]], hook.passes[HOSTS[2]]) == (4, 2)
    assert memory_kib(state, HOSTS[1]) == {80 * 1024}

    # Other triggers always pass: a resync is the level check that finds what no
    # event announced, and a host event is a change on the host.
    third._round({Trigger.RESYNC})
    third._round({Trigger.SPEC, Trigger.EVENT})
    assert hook.passes[HOSTS[2]] == 4

    # A host an agent took over is left alone, not recorded in sync by the shortcut.
    hook.skipping = "its agent has it"
    hook.rounds.clear()
    third._round({Trigger.SPEC})
    assert hook.rounds == [] and hook.passes[HOSTS[2]] == 4


def test_a_takeover_of_an_in_sync_host_runs_no_pass_when_its_run_key_matches(
        repo: Path, tmp_path: Path, locks: dict[str, int]) -> None:
    """Member m1 brings the hosts in sync and records each with its run key; then m2 (a
    process of its own: its own catalog, connections and watchers) takes them over. The
    host as m1 left it is recorded in sync by m2 with no pass and no lock; a host changed
    by hand, or whose specs changed at the same commit, gets the full pass."""
    state = tmp_path / "state"
    write(repo, 96, commit=False)  # a dirty tree: the commit stays 'HEAD-dirty' below
    first = Recorder("m1")
    for watcher in watchers(repo, state, first):
        watcher._round({Trigger.START})
    assert first.passes == dict.fromkeys(HOSTS, 2)
    keys = {uri: record.key for uri, record in first.table.items()}
    assert all(keys.values()) and len(set(keys.values())) == len(HOSTS)

    other = connect(HOSTS[1], env={"VIRTCTL_STATE_DIR": str(state)})
    other.define(Kind.DOMAIN, other.snapshot().domains["round1-vm1"].xml.replace(
        '<memory unit="KiB">98304</memory>', '<memory unit="KiB">131072</memory>'))
    (repo / "round2.yaml").write_text(host_file(HOSTS[2], 80))

    second = Recorder("m2", table=first.table)
    taker = watchers(repo, state, second)
    for watcher in taker:
        watcher._round({Trigger.START})
    assert second.passes == {HOSTS[1]: 2, HOSTS[2]: 2}
    assert locks == {HOSTS[0]: 1, HOSTS[1]: 2, HOSTS[2]: 2}
    assert memory_kib(state, HOSTS[1]) == {96 * 1024}
    assert memory_kib(state, HOSTS[2]) == {80 * 1024}
    head = git(repo, "rev-parse", "HEAD") + "-dirty"
    assert all(r.member == "m2" and r.outcome == "in-sync" and r.commit == head
               for r in first.table.values()), first.table
    assert first.table[HOSTS[0]].key == keys[HOSTS[0]]  # the same key in both members
    assert first.table[HOSTS[2]].key != keys[HOSTS[2]]

    # The shortcut is the first round's only: m2's later wakes are as before.
    taker[0]._round({Trigger.RESYNC})
    assert second.passes[HOSTS[0]] == 1

    # A member with other flags has another key (its pass could plan otherwise), as
    # does a record that is not in sync at the specs' commit.
    third = Recorder("m3", table=first.table)
    adopting = watchers(repo, state, third, Policy(adopt=True))
    adopting[0]._round({Trigger.START})
    first.table[HOSTS[1]] = replace(first.table[HOSTS[1]], commit="elsewhere")
    adopting[1]._round({Trigger.START})
    assert third.passes == {HOSTS[0]: 1, HOSTS[1]: 1}


def test_a_burst_of_file_events_wakes_each_host_once(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to many files is many file events; each must not wake every host (that
    was O(hosts x events) wake-ups): the fleet debounces them and wakes each host once."""
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    journal = Log(io.StringIO(), fmt=LogFormat("json"))
    metrics = WatchMetrics()
    catalog = Catalog([str(repo)], default="sim:///default", journal=journal,
                      metrics=metrics)
    fleet = Fleet(catalog, journal=journal, metrics=metrics, policy=Policy(),
                  interval=300.0, debounce=0.2, lock_root=None)
    pokes: dict[str, int] = {}
    rounds: dict[str, list[frozenset[Trigger]]] = {}
    changed = threading.Condition()
    real_round = Watcher._round

    def counted_round(self: Watcher, triggers: set[Trigger]) -> float:
        outcome = real_round(self, triggers)
        with changed:
            rounds.setdefault(self.uri, []).append(frozenset(triggers))
            changed.notify_all()
        return outcome

    real_poke = Inbox.spec_changed

    def counted_poke(self: Inbox) -> None:
        owner = next((u for u in fleet.hosts() if fleet._running[u].watcher.inbox is self),
                     None)
        if owner is not None:
            pokes[owner] = pokes.get(owner, 0) + 1
        real_poke(self)

    monkeypatch.setattr(Watcher, "_round", counted_round)
    monkeypatch.setattr(Inbox, "spec_changed", counted_poke)
    runner = threading.Thread(target=fleet.run, daemon=True)
    for uri in HOSTS:
        fleet.add(uri)
    runner.start()
    try:
        with changed:
            assert changed.wait_for(lambda: len(rounds) == len(HOSTS), 60), rounds
        write(repo, 96, commit=False)
        for _ in range(200):  # as watchdog reports a burst of edits
            fleet.spec_changed()

        def applied() -> bool:
            return all(len(r) >= 2 for r in rounds.values()) and all(
                memory_kib(tmp_path / "state", u) == {96 * 1024} for u in HOSTS)

        with changed:
            assert changed.wait_for(applied, 60), rounds
        # Once each (a very slow box may see the burst as two), never once per event.
        assert set(pokes) == set(HOSTS) and all(n <= 2 for n in pokes.values()), pokes
        assert all(set().union(*r[1:]) == {Trigger.SPEC} for r in rounds.values()), rounds
        assert catalog.readings <= 3  # the fleet's thread read and routed it for all
    finally:
        fleet.stop()
        runner.join(30)
    assert not runner.is_alive()
