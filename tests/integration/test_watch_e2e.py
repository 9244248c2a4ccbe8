"""End to end: a real `virtctl watch` process on the sim driver.

Each test starts the watcher as a subprocess (JSON logs to a file), changes spec files
or the host behind its back, and polls the sim's state until it converges, with
bounded waits. The host is read and changed from this process through SimDriver, as
another tool on the host would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import DomainState, Kind, LiveDomain
from virtctl.uri import parse_uri

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("<metadata><virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1' "
           "state='{state}'/></metadata>")


def domain_xml(name: str, *, memory: int = 64, state: str = "running") -> str:
    return (f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory}</memory>"
            f"<os><type arch='x86_64'>hvm</type></os>{RUNTIME.format(state=state)}</domain>\n")


def _watch_command() -> list[str]:
    """`virtctl watch` through the CLI once it knows the verb, else the package entry."""
    from virtctl.cli.commands import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["watch", "-f", "x"])
    except SystemExit:
        return [sys.executable, "-m", "virtctl.watch"]
    return [sys.executable, "-m", "virtctl", "watch"]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


class Watcher:
    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.log_path = tmp / "watch.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*_watch_command(), *args, "--log-format", "json"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=self._log,
        )

    def records(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event]

    def wait_event(self, event: str, count: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        found: list[dict[str, Any]] = wait_for(
            lambda: len(self.events(event)) >= count and self.events(event),
            timeout=timeout, what=f"{count} '{event}' log record(s)",
        )
        return found[count - 1]

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self._log.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cleared = ("VIRTCTL_CONNECT", "LIBVIRT_DEFAULT_URI")
    out = {k: v for k, v in os.environ.items() if k not in cleared}
    out.update(VIRTCTL_STATE_DIR=str(tmp_path / "state"), VIRTCTL_SIM_FSYNC="0",
               PYTHONPATH=str(REPO) + os.pathsep + out.get("PYTHONPATH", ""))
    return out


@pytest.fixture
def host(env: dict[str, str]) -> SimDriver:
    return SimDriver(parse_uri("sim:///default"), env=env)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    return folder


@pytest.fixture
def start_watch(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(*args: str, paths: tuple[str, ...] = ("specs",)) -> Watcher:
        watcher = Watcher(tmp_path, [a for p in paths for a in ("-f", p)] + list(args), env)
        started.append(watcher)
        watcher.wait_event("reconciled")
        return watcher

    yield start
    for watcher in started:
        if watcher.proc.poll() is None:
            watcher.proc.kill()
            watcher.proc.wait()


def dom(host: SimDriver, name: str) -> LiveDomain | None:
    return host.snapshot().domains.get(name)


def state_of(host: SimDriver, name: str) -> DomainState | None:
    found = dom(host, name)
    return found.state if found is not None else None


def memory_of(host: SimDriver, name: str) -> str | None:
    found = dom(host, name)
    if found is None:
        return None
    text = found.xml
    return text.split("<memory", 1)[1].split(">", 1)[1].split("<", 1)[0]


def memory_is(host: SimDriver, name: str, mib: int) -> Callable[[], bool]:
    return lambda: memory_of(host, name) == str(mib * 1024)


def save(path: Path, text: str) -> None:
    """Save as editors do: write a hidden temporary file, then rename it over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def define_unmanaged(host: SimDriver, name: str) -> dict[str, Any]:
    host.define(Kind.DOMAIN, domain_xml(name).replace(RUNTIME.format(state="running"), ""))
    host.start(Kind.DOMAIN, name)
    return record(host, name)


def record(host: SimDriver, name: str) -> dict[str, Any]:
    found = host.store.get(Kind.DOMAIN, name)
    assert found is not None
    return found


# -- tests ---------------------------------------------------------------------------


def test_applies_at_start_then_follows_edits(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    bystander = define_unmanaged(host, "bystander")
    (specs / "web.xml").write_text(domain_xml("web"))
    watcher = start_watch("--prune")
    assert state_of(host, "web") is DomainState.RUNNING

    save(specs / "web.xml", domain_xml("web", memory=128))
    wait_for(lambda: memory_of(host, "web") == str(128 * 1024), what="web redefined")
    (specs / "db.xml").write_text(domain_xml("db", state="shutoff"))
    wait_for(lambda: state_of(host, "db") is DomainState.SHUTOFF, what="db defined")

    assert state_of(host, "web") is DomainState.RUNNING
    assert record(host, "bystander") == bystander
    assert watcher.stop() == 0
    assert watcher.events("stopped")


def test_a_guest_stopped_behind_its_back_is_running_again_within_a_second(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    (specs / "web.xml").write_text(domain_xml("web"))
    watcher = start_watch()
    for attempt in range(3):
        host.destroy(Kind.DOMAIN, "web")
        stopped = time.monotonic()
        wait_for(lambda: state_of(host, "web") is DomainState.RUNNING, timeout=2.0,
                 what="web restarted")
        assert time.monotonic() - stopped < 1.0, f"attempt {attempt}"
    host.undefine(Kind.DOMAIN, "web")  # running, so it becomes transient
    wait_for(lambda: (d := dom(host, "web")) is not None and d.persistent, timeout=2.0,
             what="web defined again")
    assert watcher.stop() == 0


def test_its_own_actions_do_not_wake_it(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    for name in ("a", "b", "c"):
        (specs / f"{name}.xml").write_text(domain_xml(name))
    watcher = start_watch()
    host.destroy(Kind.DOMAIN, "b")
    wait_for(lambda: len(watcher.events("reconciled")) == 2, what="the event round")
    time.sleep(0.5)  # time for any echo of its own actions to arrive and wake it
    rounds = watcher.events("reconciled")
    assert [r["trigger"] for r in rounds] == ["start", "event"]
    assert [r["object"] for r in watcher.events("host-event")] == ["domain/b"]
    assert watcher.stop() == 0


def test_a_broken_spec_keeps_its_last_good_state_until_fixed(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    (specs / "web.xml").write_text(domain_xml("web"))
    (specs / "db.xml").write_text(domain_xml("db"))
    watcher = start_watch("--prune")

    save(specs / "web.xml", "<domain type='kvm'><name>web</name>")  # truncated
    invalid = watcher.wait_event("spec-invalid")
    assert invalid["file"] == "specs/web.xml"
    host.destroy(Kind.DOMAIN, "web")  # still declared running by its last good spec
    wait_for(lambda: state_of(host, "web") is DomainState.RUNNING, what="web restarted")

    save(specs / "db.xml", domain_xml("db", memory=96))  # the other files keep going
    wait_for(lambda: memory_of(host, "db") == str(96 * 1024), what="db redefined")
    assert memory_of(host, "web") == str(64 * 1024)

    save(specs / "web.xml", domain_xml("web", state="shutoff"))
    watcher.wait_event("spec-valid")
    wait_for(lambda: state_of(host, "web") is DomainState.SHUTOFF, what="web stopped")
    assert watcher.stop() == 0


def test_deleted_spec_is_pruned_but_a_broken_one_is_not(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher], tmp_path: Path,
    env: dict[str, str],
) -> None:
    for name in ("web", "db", "cache"):
        (specs / f"{name}.xml").write_text(domain_xml(name))
    subprocess.run([*_watch_command()[:1], "-m", "virtctl", "apply", "-f", "specs"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    bystander = define_unmanaged(host, "bystander")
    (specs / "cache.xml").write_text("<domain")  # broken before the watcher ever saw it
    (specs / "web.xml").write_text(domain_xml("web").replace("<name>", "<nam>"))
    watcher = start_watch("--prune")
    assert {r["file"] for r in watcher.events("spec-invalid")} == {
        "specs/cache.xml", "specs/web.xml"}
    assert dom(host, "web") is not None
    assert dom(host, "cache") is not None

    (specs / "db.xml").unlink()
    wait_for(lambda: dom(host, "db") is None, what="db pruned")
    assert dom(host, "web") is not None
    assert dom(host, "cache") is not None
    assert record(host, "bystander") == bystander
    assert watcher.stop() == 0


def test_partial_writes_and_save_by_rename_are_seen_whole(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    (specs / "web.xml").write_text(domain_xml("web"))
    watcher = start_watch()
    text = domain_xml("web", memory=80)
    with open(specs / "web.xml", "w") as handle:  # two writes, a short pause between
        handle.write(text[:40])
        handle.flush()
        time.sleep(0.01)
        handle.write(text[40:])
    wait_for(lambda: memory_of(host, "web") == str(80 * 1024), what="web redefined")
    save(specs / "web.xml", domain_xml("web", memory=88))
    wait_for(lambda: memory_of(host, "web") == str(88 * 1024), what="web redefined again")
    assert watcher.events("spec-invalid") == []
    assert watcher.stop() == 0


def test_a_single_watched_file_is_followed_across_renames_over_it(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    (specs / "web.xml").write_text(domain_xml("web"))
    (specs / "other.xml").write_text(domain_xml("other"))
    watcher = start_watch(paths=("specs/web.xml",))
    assert dom(host, "other") is None
    for memory in (72, 76):
        save(specs / "web.xml", domain_xml("web", memory=memory))
        wait_for(memory_is(host, "web", memory), what=f"web at {memory} MiB")
    assert dom(host, "other") is None
    assert watcher.stop() == 0


def test_sigterm_finishes_the_action_in_flight_and_exits_zero(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    watcher = start_watch()
    host.inject_fault("start", Kind.DOMAIN, "a", action="stall", seconds=1.0)
    (specs / "a.xml").write_text(domain_xml("a"))
    (specs / "b.xml").write_text(domain_xml("b"))
    watcher.wait_event("plan")
    wait_for(lambda: dom(host, "b") is not None, what="both defined")  # start a is stalling
    assert watcher.stop(signal.SIGTERM) == 0
    assert state_of(host, "a") is DomainState.RUNNING  # the action in flight finished
    assert state_of(host, "b") is DomainState.SHUTOFF  # the next one never began
    assert watcher.events("stopped")


def test_sigint_exits_zero_and_metrics_are_served(
    specs: Path, host: SimDriver, start_watch: Callable[..., Watcher]
) -> None:
    (specs / "web.xml").write_text(domain_xml("web"))
    watcher = start_watch("--metrics-port", "0")
    port = watcher.events("metrics")[0]["port"]
    host.destroy(Kind.DOMAIN, "web")
    watcher.wait_event("reconciled", count=2)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert 'virtctl_watch_reconcile_runs_total{trigger="start"} 1' in body
    assert 'virtctl_watch_reconcile_runs_total{trigger="event"} 1' in body
    assert 'virtctl_watch_actions_total{action="start",object="domain",result="done"} 2' in body
    assert "virtctl_watch_objects_drifted 1" in body
    assert "virtctl_watch_reconcile_duration_seconds_count 2" in body
    assert watcher.stop(signal.SIGINT) == 0


def test_refuses_to_start_on_a_missing_path(tmp_path: Path, env: dict[str, str]) -> None:
    done = subprocess.run([*_watch_command(), "-f", "nowhere"], check=False, cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 1
    assert "nowhere" in done.stderr
