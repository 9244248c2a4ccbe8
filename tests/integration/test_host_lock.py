"""The per-host lock (virtctl.hostlock): a run that waits says who it waits for, at once
and every interval; --lock-timeout gives up with exit 1 and applies nothing; a holder
killed with SIGKILL never blocks the next run; lock files are not world-writable.

Holders are separate processes (an flock is per open file, so a thread of the test
would not show the pid logic), started and waited for by what they print, never by time.
"""

from __future__ import annotations

import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtctl.drivers import connect
from virtctl.hostlock import LockTimeout, host_lock, lock_path

REPO = Path(__file__).resolve().parents[2]
URI = "sim:///locked"

HOLD = """
import sys
from pathlib import Path
from virtctl.hostlock import host_lock
with host_lock(sys.argv[1], Path(sys.argv[2]), command="virtctl apply"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or kills us)
"""


def env_for(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTCTL_CONNECT",
                                                            "LIBVIRT_DEFAULT_URI")}
    env.update(VIRTCTL_STATE_DIR=str(state), PYTHONPATH=str(REPO), VIRTCTL_CACHE="0")
    return env


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock on URI until its stdin closes."""
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, URI, str(state)],
                            env=env_for(state), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def test_a_waiter_names_the_holder_then_gives_up_at_its_timeout(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    heard: list[str] = []
    began = time.monotonic()
    with pytest.raises(LockTimeout) as caught, \
            host_lock(URI, tmp_path / "state", timeout=0.6, on_wait=heard.append,
                      interval=0.2):
        pytest.fail("the lock is held by another process")
    assert time.monotonic() - began >= 0.6
    assert len(heard) >= 2  # at once, then every interval
    assert heard[0].startswith(f"waiting for the lock on {URI} held by pid {holder.pid} "
                               "(virtctl apply, since ")
    assert f"pid {holder.pid} (virtctl apply" in str(caught.value)
    assert "--lock-timeout" in str(caught.value)


def test_the_lock_is_taken_as_soon_as_the_holder_lets_go(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    heard: queue.Queue[str] = queue.Queue()
    got = threading.Event()

    def wait() -> None:
        with host_lock(URI, tmp_path / "state", on_wait=heard.put):
            got.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert "waiting for the lock" in heard.get(timeout=30)
    assert not got.is_set()
    assert holder.stdin is not None
    holder.stdin.close()  # the holder leaves its block and exits
    waiter.join(timeout=60)
    assert got.is_set()


def test_a_holder_killed_with_sigkill_never_blocks(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    heard: list[str] = []
    with host_lock(URI, tmp_path / "state", timeout=0, on_wait=heard.append):
        pass  # taken at once: the kernel dropped the dead holder's flock
    assert heard == []


def test_lock_files_are_not_world_writable(tmp_path: Path) -> None:
    with host_lock(URI, tmp_path / "state"):
        path = lock_path(URI, tmp_path / "state")
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & stat.S_IWOTH and not mode & stat.S_IWGRP
        assert not stat.S_IMODE(path.parent.stat().st_mode) & stat.S_IWOTH


def test_apply_with_a_lock_timeout_exits_1_and_applies_nothing(
        tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text("kind: Domain\nname: web\ntype: kvm\nmemory: 64MiB\n"
                                    "os: {type: hvm, arch: x86_64}\n")
    result = subprocess.run(
        [sys.executable, "-m", "virtctl", "-c", URI, "apply", "-f", str(specs),
         "--lock-timeout", "0.5"],
        capture_output=True, text=True, env=env_for(tmp_path / "state"), timeout=120,
        check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert f"waiting for the lock on {URI} held by pid {holder.pid}" in result.stderr
    assert "gave up after waiting 0.5 s" in result.stderr
    assert "Traceback" not in result.stderr
    live = connect(URI, env={"VIRTCTL_STATE_DIR": str(tmp_path / "state")}).snapshot()
    assert live.domains == {}


def test_nothing_virtctl_creates_is_group_or_world_writable(tmp_path: Path) -> None:
    """Even started with umask 000: state, caches, locks and the sim's records."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "web.yaml").write_text("kind: Domain\nname: web\ntype: kvm\nmemory: 64MiB\n"
                                    "os: {type: hvm, arch: x86_64}\n---\nkind: Network\n"
                                    "name: lan\nips: [{address: 10.77.0.1, prefix: 24}]\n")
    env = env_for(tmp_path / "state")
    env.update(VIRTCTL_CACHE_DIR=str(tmp_path / "cache"), VIRTCTL_CACHE="1")
    result = subprocess.run(
        [sys.executable, "-m", "virtctl", "apply", "-f", str(specs)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
        stdin=subprocess.DEVNULL, preexec_fn=lambda: os.umask(0))  # noqa: PLW1509
    assert result.returncode == 0, result.stderr
    made = [*(tmp_path / "state").rglob("*"), *(tmp_path / "cache").rglob("*")]
    assert len(made) > 10
    loose = [str(p) for p in made
             if stat.S_IMODE(p.lstat().st_mode) & (stat.S_IWOTH | stat.S_IWGRP)]
    assert loose == []
