"""The fleet's Catalog: the spec files are read and routed once per change for every host,
not once per host pass; a resync still finds edits no event announced; the git commit is
computed once per change. Real files, the real SpecSet and route (counted, not replaced)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virtctl.model import DomainSpec
from virtctl.watch import fleet
from virtctl.watch.fleet import Catalog, HostSpecs
from virtctl.watch.logs import Log, LogFormat
from virtctl.watch.metrics import WatchMetrics
from virtctl.watch.routing import Routed
from virtctl.watch.specs import SpecSet

HOSTS = [f"sim:///h{i}" for i in range(6)]


def host_file(uri: str, memory: int = 64, domains: int = 3) -> str:
    host = uri.rsplit("/", 1)[1]
    return "".join(
        f"---\nkind: Domain\nname: {host}-vm{d}\ntype: kvm\nmemory: {memory}MiB\n"
        f"os: {{type: hvm, arch: x86_64}}\nconnect: {uri}\n" for d in range(domains))


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    for uri in HOSTS:
        (folder / f"{uri.rsplit('/', 1)[1]}.yaml").write_text(host_file(uri))
    return folder


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count every SpecSet.read and route the fleet makes (the real ones run)."""
    calls = {"read": 0, "route": 0}
    real_read, real_route = SpecSet.read, fleet.route

    def read(self: SpecSet) -> object:
        calls["read"] += 1
        return real_read(self)

    def route(*args: object, **kwargs: object) -> Routed:
        calls["route"] += 1
        return real_route(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SpecSet, "read", read)
    monkeypatch.setattr(fleet, "route", route)
    return calls


def catalog_of(folder: Path, log: io.StringIO | None = None) -> Catalog:
    journal = Log(log or io.StringIO(), fmt=LogFormat("json"))
    return Catalog([str(folder)], default="sim:///default", journal=journal,
                   metrics=WatchMetrics())


def memory_of(xml: str) -> int:
    found = re.search(r'<memory unit="KiB">(\d+)</memory>', xml)
    assert found is not None, xml
    return int(found.group(1))


def memories(hosts: HostSpecs) -> set[int]:
    """The memory (KiB) of every domain in this host's share of the current view."""
    return {memory_of(s.xml) for specs in hosts.read().parsed.values() for s in specs
            if isinstance(s, DomainSpec)}


def test_host_passes_after_one_change_cost_one_read_and_route(
        specs: Path, counted: dict[str, int]) -> None:
    catalog = catalog_of(specs)
    hosts = [HostSpecs(catalog, uri) for uri in HOSTS]
    for _ in range(3):  # several passes per host, no change: the first reading only
        for host in hosts:
            host.read()
    assert counted == {"read": 1, "route": 1}
    for uri in HOSTS:
        (specs / f"{uri.rsplit('/', 1)[1]}.yaml").write_text(host_file(uri, memory=128))
    catalog.changed()  # what the file watcher does on the events of those writes
    for _ in range(3):
        for host in hosts:
            assert memories(host) == {128 * 1024}
    assert counted == {"read": 2, "route": 2}


def test_each_host_gets_exactly_the_share_route_gives_it(specs: Path) -> None:
    catalog = catalog_of(specs)
    (specs / "h0.yaml").write_text(host_file(HOSTS[0]) + host_file(HOSTS[1]).replace(
        "-vm", "-extra"))
    catalog.changed()
    routed = catalog.refresh()
    for uri in [*HOSTS, "sim:///default"]:
        want = routed.scan_for(uri)
        got = HostSpecs(catalog, uri).read() if uri in HOSTS else catalog.view().scan_for(uri)
        assert got.parsed == want.parsed
        assert list(got.parsed) == list(want.parsed)  # every file, in the same order
        assert got.errors == want.errors
    assert {s.name for s in routed.scan_for(HOSTS[1]).parsed[str(specs / "h0.yaml")]} == {
        "h1-extra0", "h1-extra1", "h1-extra2"}


def test_a_broken_file_is_judged_once_and_reported_once(specs: Path,
                                                        counted: dict[str, int]) -> None:
    log = io.StringIO()
    catalog = catalog_of(specs, log)
    hosts = [HostSpecs(catalog, uri) for uri in HOSTS]
    for host in hosts:
        host.read()
    (specs / "h2.yaml").write_text("kind: Domain\nname: [broken\n")
    catalog.changed()
    scans = [host.read() for host in hosts]
    assert counted["route"] == 2
    assert all(list(scan.errors) == [str(specs / "h2.yaml")] for scan in scans)
    # Its last good specs still stand for its own host (protected from prune).
    assert catalog.refresh().chosen[str(specs / "h2.yaml")]
    events = [json.loads(line)["event"] for line in log.getvalue().splitlines()]
    assert events.count("spec-invalid") == 1


def test_a_resync_finds_an_edit_no_event_announced_and_parses_only_that_file(
        specs: Path, counted: dict[str, int]) -> None:
    catalog = catalog_of(specs)
    woken: list[str] = []
    catalog.listen(lambda: woken.append("targets"), on_edits=lambda: woken.append("edits"))
    host = HostSpecs(catalog, HOSTS[3])
    assert memories(host) == {64 * 1024}
    parses = catalog._files.parses
    path = specs / "h3.yaml"
    path.write_text(host_file(HOSTS[3], memory=256))
    assert memories(host) == {64 * 1024}  # no event: the shared view stands
    catalog.resync()
    assert woken == ["edits"]  # the fleet wakes every host on this
    assert memories(host) == {256 * 1024}
    assert catalog._files.parses == parses + 1
    # A resync that finds nothing new wakes nobody and routes nothing.
    routes = counted["route"]
    catalog.resync()
    assert woken == ["edits"]
    assert counted["route"] == routes


def test_an_old_view_is_reread_on_use_after_the_interval(specs: Path) -> None:
    catalog = catalog_of(specs)
    catalog.interval = 0.0  # every use is past the interval
    host = HostSpecs(catalog, HOSTS[4])
    assert memories(host) == {64 * 1024}
    (specs / "h4.yaml").write_text(host_file(HOSTS[4], memory=96))
    assert memories(host) == {96 * 1024}


def test_concurrent_host_passes_share_one_reading(specs: Path,
                                                  counted: dict[str, int]) -> None:
    catalog = catalog_of(specs)
    catalog.refresh()
    (specs / "h5.yaml").write_text(host_file(HOSTS[5], memory=80))
    catalog.changed()
    start = threading.Barrier(len(HOSTS) * 4)
    seen: list[set[int]] = []

    def one(uri: str) -> None:
        start.wait(timeout=30)
        seen.append(memories(HostSpecs(catalog, uri)))

    threads = [threading.Thread(target=one, args=(uri,)) for uri in HOSTS * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) == len(threads)
    assert counted["route"] == 2
    assert {80 * 1024} in seen


@pytest.fixture
def repo(specs: Path) -> Iterator[Callable[..., str]]:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_NOSYSTEM="1", HOME=str(specs.parent))

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=specs, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    yield git


def test_the_commit_is_computed_once_per_change(specs: Path, repo: Callable[..., str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = catalog_of(specs)
    hosts = [HostSpecs(catalog, uri) for uri in HOSTS]
    head = repo("rev-parse", "HEAD")
    for host in hosts * 3:
        host.read()
        assert host.commit_id() == head
    assert catalog._commits.computed == 1
    (specs / "h0.yaml").write_text(host_file(HOSTS[0], memory=72))
    catalog.changed()
    for host in hosts:
        host.read()
        assert host.commit_id() == head + "-dirty"
    assert catalog._commits.computed == 2
    # A commit touches no spec file (no event): git's own state says the commit moved,
    # which the fleet polls to wake every host so each records it.
    before = catalog.git_state()
    assert catalog.git_state() == before
    repo("commit", "-q", "-am", "two")
    assert catalog.git_state() != before
    new = repo("rev-parse", "HEAD")
    assert new != head
    assert [host.commit_id() for host in hosts] == [new] * len(hosts)
    assert catalog._commits.computed == 3
