"""Faults: libvirtd restarted in the middle of an apply and under a watcher, a guest that
cannot start (its disk is missing), a bridge another network already uses. Each gives a
clear error without a traceback, the rest happens as documented (docs/reliability.md),
and the next run converges.

The restarted daemon is a private loopback libvirtd (libvirtd_tcp.py), never the host's.
Waits are on conditions: the daemon's listing, the watcher's log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import (
    PREFIX,
    libvirt_module,
    purge_libvirt,
    require_connection,
    remote_daemon,
)
from tests.integration.crashkit import virtctl, virtctl_env
from tests.integration.libvirtd_tcp import RemoteLibvirtd
from virtctl.drivers import connect
from virtctl.coord.hostlock import LockTimeout, host_lock
from virtctl.model import DomainState, Kind

QEMU = "qemu:///system"


def guests_yaml(prefix: str, count: int, *, state: str = "shutoff", disk: str | None = None,
                first: int = 0) -> str:
    disks = (f"disks: [{{type: file, driver: {{name: qemu, type: qcow2}}, source: {disk}, "
             "target: vda, bus: virtio}]\n") if disk else ""
    return "".join(
        f"---\nkind: Domain\nname: {prefix}{i:02d}\ntype: qemu\nmemory: 32MiB\n"
        f"state: {state}\nos: {{type: hvm, arch: x86_64, machine: pc}}\n{disks}"
        for i in range(first, first + count))


def managed(uri: str, prefix: str) -> dict[str, DomainState]:
    driver = connect(uri)
    try:
        return {n: d.state for n, d in driver.snapshot().domains.items()
                if n.startswith(prefix) and d.managed}
    finally:
        driver.close()


@pytest.fixture
def prefix() -> str:
    return f"{PREFIX}{secrets.token_hex(3)}-"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteLibvirtd]:
    with remote_daemon(tmp_path_factory.mktemp("libvirtd-faults")) as remote:
        yield remote


def defined_count(uri: str, prefix: str) -> int:
    libvirt = libvirt_module()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return 0
    try:
        return sum(1 for d in conn.listAllDomains(0) if d.name().startswith(prefix))
    finally:
        conn.close()


# -- libvirtd restarted ---------------------------------------------------------------------


@pytest.mark.slow
def test_libvirtd_restarted_mid_apply_then_the_next_run_converges(
        daemon: RemoteLibvirtd, prefix: str, tmp_path: Path) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "guests.yaml").write_text(guests_yaml(prefix, 60))
    proc = subprocess.Popen(
        [sys.executable, "-m", "virtctl", "-c", daemon.uri, "apply", "-f", str(specs)],
        env=virtctl_env(state), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and defined_count(daemon.uri, prefix) < 5:
            pass  # polling the daemon's listing until the apply is under way
        daemon.stop()
        daemon.start()
        _out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err
    if proc.returncode != 0:  # it lost its daemon part way: it says so
        assert proc.returncode == 1
        assert "error:" in err
    again = virtctl(state, "-c", daemon.uri, "apply", "-f", str(specs))
    assert again.returncode == 0, again.stderr
    assert virtctl(state, "-c", daemon.uri, "diff", "-f", str(specs)).returncode == 0
    assert sorted(managed(daemon.uri, prefix)) == [f"{prefix}{i:02d}" for i in range(60)]


@pytest.mark.slow
def test_libvirtd_restarted_under_a_watcher_which_reconnects(
        daemon: RemoteLibvirtd, prefix: str, tmp_path: Path) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "guests.yaml").write_text(guests_yaml(prefix, 3))
    watch = subprocess.Popen(
        [sys.executable, "-m", "virtctl", "-c", daemon.uri, "watch", "-f", str(specs),
         "--interval", "1h", "--log-format", "json"],
        env=virtctl_env(state), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        assert watch.stderr is not None
        for line in watch.stderr:
            lines.put(json.loads(line))

    def until(event: str, msg: str | None = None) -> dict[str, Any]:
        while True:
            entry = lines.get(timeout=180)
            if entry.get("event") == event and (msg is None or entry.get("msg") == msg):
                return entry

    threading.Thread(target=pump, daemon=True).start()
    try:
        until("reconciled", "in sync")
        daemon.stop()
        until("connection-lost")
        daemon.start()
        (specs / "more.yaml").write_text(guests_yaml(prefix, 1, first=3))
        while defined_count(daemon.uri, prefix) < 4:
            until("reconciled")  # each pass, until the new guest is there
    finally:
        watch.terminate()
        code = watch.wait(timeout=60)
    assert code == 0
    assert sorted(managed(daemon.uri, prefix)) == [f"{prefix}{i:02d}" for i in range(4)]


# -- a guest that cannot start ----------------------------------------------------------------


@pytest.fixture
def qemu_prefix(prefix: str) -> Iterator[str]:
    require_connection(QEMU)
    try:
        yield prefix
    finally:
        purge_libvirt(QEMU, prefix=prefix)


@pytest.mark.slow
def test_a_guest_whose_disk_is_missing_fails_alone_and_converges_once_it_exists(
        qemu_prefix: str, tmp_path: Path) -> None:
    images = Path("/var/tmp") / qemu_prefix.rstrip("-")
    images.mkdir(mode=0o755)
    disk = images / "missing.qcow2"
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "broken.yaml").write_text(guests_yaml(f"{qemu_prefix}disk", 1, state="running",
                                                   disk=str(disk)))
    (specs / "fine.yaml").write_text(guests_yaml(f"{qemu_prefix}fine", 1, state="running"))
    try:
        first = virtctl(state, "-c", QEMU, "apply", "-f", str(specs))
        assert first.returncode == 1
        assert "Traceback" not in first.stderr
        report = first.stdout + first.stderr
        assert f"start domain/{qemu_prefix}disk00" in report and str(disk) in report
        states = managed(QEMU, qemu_prefix)
        assert states == {f"{qemu_prefix}disk00": DomainState.SHUTOFF,
                          f"{qemu_prefix}fine00": DomainState.RUNNING}
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"],
                       check=True)
        disk.chmod(0o644)
        again = virtctl(state, "-c", QEMU, "apply", "-f", str(specs))
        assert again.returncode == 0, again.stdout + again.stderr
        assert set(managed(QEMU, qemu_prefix).values()) == {DomainState.RUNNING}
    finally:
        purge_libvirt(QEMU, [f"{qemu_prefix}disk00", f"{qemu_prefix}fine00"])
        disk.unlink(missing_ok=True)
        images.rmdir()


# -- a bridge already in use -------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["sim:///default", QEMU])
def test_a_bridge_in_use_stops_the_run_before_any_action(
        uri: str, prefix: str, tmp_path: Path) -> None:
    if uri == QEMU:
        require_connection(QEMU)
    state = tmp_path / "state"
    bridge = "vb" + secrets.token_hex(4)  # 10 characters: under IFNAMSIZ
    theirs = f"{prefix}theirs"
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "net.yaml").write_text(f"kind: Network\nname: {prefix}mine\n"
                                    f"bridge: {{name: {bridge}}}\n")
    (specs / "guest.yaml").write_text(guests_yaml(f"{prefix}g", 1))
    try:
        driver.define(Kind.NETWORK, f"<network><name>{theirs}</name>"
                                    f"<bridge name='{bridge}'/></network>")
        result = virtctl(state, "-c", uri, "apply", "-f", str(specs))
        assert result.returncode == 1
        assert (f"net.yaml:1: bridge/@name: bridge '{bridge}' is already used by network "
                f"'{theirs}' on the host") in result.stderr
        live = driver.snapshot()
        assert f"{prefix}mine" not in live.networks and f"{prefix}g00" not in live.domains
        (specs / "net.yaml").write_text(f"kind: Network\nname: {prefix}mine\n")
        assert virtctl(state, "-c", uri, "apply", "-f", str(specs)).returncode == 0
        assert f"{prefix}mine" in driver.snapshot().networks
    finally:
        driver.close()
        if uri == QEMU:
            purge_libvirt(QEMU, [theirs, f"{prefix}mine", f"{prefix}g00"])


# -- a daemon that stops answering (SIGSTOP) ----------------------------------------------

CALL_TIMEOUT = 5.0
MARGIN = 25.0  # starting the interpreter, the report, exiting, on a slow 2-core machine


THAW_AFTER = 600  # seconds: a guard thaws the daemon even if this test process dies


@contextlib.contextmanager
def stopped(daemon: RemoteLibvirtd) -> Iterator[Callable[[], None]]:
    """The private daemon frozen with SIGSTOP when the block calls `freeze()`; always
    thawed (SIGCONT) after, so the module's purge and the next tests find it answering.
    A detached guard thaws it after THAW_AFTER s should pytest be killed meanwhile (a
    stopped daemon never reaches its idle exit)."""
    assert daemon.process is not None
    pid = daemon.process.pid  # libvirtd itself: unshare and sh exec it
    guard = subprocess.Popen(["sh", "-c", f"sleep {THAW_AFTER}; kill -CONT {pid}"],
                             start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)

    try:
        yield freeze
    finally:
        os.kill(pid, signal.SIGCONT)
        os.killpg(guard.pid, signal.SIGTERM)  # the guard's shell and its sleep
        guard.wait(timeout=60)


def lock_is_free(uri: str, state: Path) -> bool:
    try:
        with host_lock(uri, state, timeout=0):
            return True
    except LockTimeout:
        return False


def unix_uri(daemon: RemoteLibvirtd) -> str:
    """The private daemon through its unix socket: a local URI, without keepalive."""
    return f"qemu+unix:///system?socket={daemon.root / 'sock' / 'libvirt-sock'}"


@pytest.mark.slow
@pytest.mark.parametrize(("transport", "call_timeout"), [
    ("tcp", CALL_TIMEOUT), ("unix", CALL_TIMEOUT), ("tcp", 300.0)],
    ids=["tcp-call-deadline", "unix-call-deadline", "tcp-keepalive"])
def test_a_daemon_that_stops_answering_mid_apply_stops_the_run_promptly(
        daemon: RemoteLibvirtd, prefix: str, tmp_path: Path, transport: str,
        call_timeout: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirtd SIGSTOPped part way through an apply: the run gives up on the call in
    flight (at --call-timeout, or sooner over TCP, where libvirt's keepalive finds the
    daemon dead), exits 1 naming that action as uncertain and the rest as not run, and
    leaves the lock free. Once the daemon answers again, the next run converges."""
    uri = daemon.uri if transport == "tcp" else unix_uri(daemon)
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    count = 100
    (specs / "guests.yaml").write_text(guests_yaml(prefix, count))
    env = virtctl_env(state) | {"VIRTCTL_LOCK_DIR": str(tmp_path / "locks")}
    monkeypatch.setenv("VIRTCTL_LOCK_DIR", str(tmp_path / "locks"))
    bound = min(call_timeout, 20.0)  # keepalive: 3 probes 5 s apart unanswered
    with stopped(daemon) as freeze:
        proc = subprocess.Popen(
            [sys.executable, "-m", "virtctl", "-c", uri, "apply", "-f", str(specs),
             "--call-timeout", f"{call_timeout:g}"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            while proc.poll() is None and defined_count(daemon.uri, prefix) < 3:
                pass  # polling the daemon's listing until the apply is under way
            assert proc.poll() is None, "the apply ended before the daemon was stopped"
            freeze()
            frozen = time.monotonic()
            out, err = proc.communicate(timeout=bound + MARGIN + 60)
            took = time.monotonic() - frozen
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
        assert "Traceback" not in err
        assert proc.returncode == 1, out + err
        assert took < bound + MARGIN, f"took {took:.1f} s after SIGSTOP\n{out}{err}"
        uncertain = re.findall(rf"^  uncertain (\S+) domain/({re.escape(prefix)}\d+): (.*)$",
                               out, re.MULTILINE)
        assert len(uncertain) == 1, out
        assert "may or may not have happened" in uncertain[0][2]
        assert re.search(r"Applied: \d+ done, 0 failed, \d+ skipped, 1 uncertain\.", out), out
        assert re.search(r"^  skipped \S+ domain/\S+: not run: .* stopped answering during ",
                         out, re.MULTILINE), out
        assert f"error: {uri} stopped answering during" in err
        assert lock_is_free(uri, state)  # with the daemon still stopped
    again = virtctl(state, "-c", uri, "apply", "-f", str(specs))
    assert again.returncode == 0, again.stdout + again.stderr
    assert virtctl(state, "-c", uri, "diff", "-f", str(specs)).returncode == 0
    assert sorted(managed(daemon.uri, prefix)) == [f"{prefix}{i:02d}" for i in range(count)]


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["diff", "apply", "get"])
def test_a_daemon_that_does_not_answer_at_all_fails_the_run_at_the_call_timeout(
        daemon: RemoteLibvirtd, prefix: str, tmp_path: Path, verb: str) -> None:
    """Stopped before the run: connecting is a call too, bounded the same way; nothing
    is applied and the message says what to change."""
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "guests.yaml").write_text(guests_yaml(prefix, 1))
    args = ["domains"] if verb == "get" else ["-f", str(specs)]
    with stopped(daemon) as freeze:
        freeze()
        began = time.monotonic()
        result = virtctl(state, "-c", daemon.uri, "--call-timeout", "3", verb, *args,
                         timeout=120)
        took = time.monotonic() - began
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 3 + MARGIN
    assert "Traceback" not in result.stderr
    assert f"{daemon.uri} did not answer within 3 s" in result.stderr
    assert "--call-timeout" in result.stderr
    assert defined_count(daemon.uri, prefix) == 0


def log_reader(watch: subprocess.Popen[str]) -> Callable[[Callable[[dict[str, Any]], bool]],
                                                          dict[str, Any]]:
    """`until(check)`: the watcher's next JSON log entry that passes `check` (at most
    180 s between entries)."""
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        assert watch.stderr is not None
        for line in watch.stderr:
            lines.put(json.loads(line))

    def until(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            entry = lines.get(timeout=180)
            if check(entry):
                return entry

    threading.Thread(target=pump, daemon=True).start()
    return until


@pytest.mark.slow
def test_a_watcher_outlives_a_daemon_that_stops_answering(
        daemon: RemoteLibvirtd, prefix: str, tmp_path: Path) -> None:
    """Under a watcher, a SIGSTOPped libvirtd costs a pass (a timeout error in the log),
    not the watcher: it gives the connection up, connects again once the daemon
    answers, applies what changed meanwhile, and still stops cleanly on SIGTERM."""
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "guests.yaml").write_text(guests_yaml(prefix, 1))
    env = virtctl_env(state) | {"VIRTCTL_LOCK_DIR": str(tmp_path / "locks")}
    watch = subprocess.Popen(
        [sys.executable, "-m", "virtctl", "-c", daemon.uri, "watch", "-f", str(specs),
         "--interval", "1h", "--log-format", "json", "--call-timeout", "3"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    until = log_reader(watch)
    try:
        until(lambda e: e.get("event") == "reconciled" and e.get("msg") == "in sync")
        with stopped(daemon) as freeze:
            freeze()
            (specs / "more.yaml").write_text(guests_yaml(prefix, 1, first=1))
            error = until(lambda e: e.get("event") == "driver-error")
            assert error.get("code") == "timeout", error
            assert "did not answer within 3 s" in error["msg"]
        while defined_count(daemon.uri, prefix) < 2:
            until(lambda e: e.get("event") == "reconciled")  # each pass, until it is there
    finally:
        watch.terminate()
        code = watch.wait(timeout=60)
    assert code == 0
    assert sorted(managed(daemon.uri, prefix)) == [f"{prefix}{i:02d}" for i in range(2)]


@pytest.mark.slow
def test_a_watcher_stops_on_sigterm_while_its_daemon_does_not_answer(
        daemon: RemoteLibvirtd, prefix: str, tmp_path: Path) -> None:
    """SIGTERM while the daemon is stopped: the watcher stops within the call timeout
    (the pass in flight gives up on its call), with exit 0."""
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "guests.yaml").write_text(guests_yaml(prefix, 1))
    env = virtctl_env(state) | {"VIRTCTL_LOCK_DIR": str(tmp_path / "locks")}
    watch = subprocess.Popen(
        [sys.executable, "-m", "virtctl", "-c", daemon.uri, "watch", "-f", str(specs),
         "--interval", "1h", "--log-format", "json", "--call-timeout", "3"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    until = log_reader(watch)
    try:
        until(lambda e: e.get("msg") == "in sync")
        with stopped(daemon) as freeze:
            freeze()
            (specs / "more.yaml").write_text(guests_yaml(prefix, 1, first=1))
            # A pass timed out; the retry will wait on the daemon again.
            until(lambda e: e.get("event") == "retry-scheduled")
            began = time.monotonic()
            watch.terminate()
            code = watch.wait(timeout=3 + MARGIN + 60)
            took = time.monotonic() - began
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(timeout=60)
    assert code == 0
    assert took < 3 + MARGIN
