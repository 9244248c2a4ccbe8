"""The per-host lock (virtctl.coord.hostlock): a run that waits says who it waits for, at once
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

from virtctl.coord import hostlock
from virtctl.drivers import connect
from virtctl.errors import VirtctlError
from virtctl.coord.hostlock import LockTimeout, host_lock, lock_path
from virtctl.model import Kind

REPO = Path(__file__).resolve().parents[2]
URI = "sim:///locked"

HOLD = """
import sys
from pathlib import Path
from virtctl.coord.hostlock import host_lock
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


# -- a lock directory or file another user could take over (issue 20, D) ------------------

LIBVIRT_URI = "test:///default"  # a libvirt host: its lock lives in the machine-wide folder
NOBODY = 65534


def run_cli(state: Path, *args: str, lock_dir: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = env_for(state)
    if lock_dir is not None:
        env["VIRTCTL_LOCK_DIR"] = str(lock_dir)
    return subprocess.run([sys.executable, "-m", "virtctl", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def web_specs(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir(exist_ok=True)
    (specs / "web.yaml").write_text("kind: Domain\nname: web\ntype: test\nmemory: 64MiB\n"
                                    "os: {type: hvm, arch: x86_64}\n")
    return specs


def needs_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("these cases chown files to another user: run them as root")
        pytest.skip("needs root (chown to another user)")


@pytest.mark.parametrize("make", ["symlink", "other-user", "group-writable", "world-writable",
                                  "a-file"])
def test_a_lock_directory_another_user_could_take_over_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    folder = tmp_path / "locks"
    if make == "symlink":
        folder.symlink_to(target)
        expect, fix = "it is a symbolic link", f"rm -r {folder}"
    elif make == "other-user":
        needs_root()
        folder.mkdir(mode=0o700)
        os.chown(folder, NOBODY, NOBODY)
        expect, fix = f"it is owned by nobody (uid {NOBODY})", f"rm -r {folder}"
    elif make == "a-file":
        folder.write_text("")
        expect, fix = "it is not a directory", f"rm -r {folder}"
    else:
        folder.mkdir()
        mode = 0o770 if make == "group-writable" else 0o1777
        folder.chmod(mode)
        expect, fix = f"writable by its group or others (mode {mode:04o})", \
            f"chmod 700 {folder}"
    monkeypatch.setenv("VIRTCTL_LOCK_DIR", str(folder))
    with pytest.raises(VirtctlError) as caught, host_lock(LIBVIRT_URI, tmp_path / "state"):
        pytest.fail("an unsafe lock directory was used")
    message = str(caught.value)
    assert f"refusing the lock directory {folder}: {expect}" in message
    assert fix in message and "VIRTCTL_LOCK_DIR" in message
    assert list(target.iterdir()) == []  # nothing written through the link


def test_apply_refuses_an_unsafe_lock_directory_before_any_action(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    folder.mkdir()
    folder.chmod(0o777)
    result = run_cli(tmp_path / "state", "-c", LIBVIRT_URI, "apply", "-f",
                     str(web_specs(tmp_path)), lock_dir=folder)
    assert result.returncode == 1
    assert f"error: refusing the lock directory {folder}: writable by its group or " \
        "others (mode 0777)" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(folder.iterdir()) == []


def test_the_machine_lock_directory_is_made_private_and_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTCTL_LOCK_DIR", raising=False)
    machine = tmp_path / "run-lock" / "virtctl"
    monkeypatch.setattr(hostlock, "MACHINE_LOCK_DIR", machine)
    with host_lock(LIBVIRT_URI, tmp_path / "state"):
        assert lock_path(LIBVIRT_URI, tmp_path / "state").parent == machine
        info = machine.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
        assert stat.S_IMODE(info.st_mode) == 0o700
        lock = lock_path(LIBVIRT_URI, tmp_path / "state")
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    with host_lock(LIBVIRT_URI, tmp_path / "state", timeout=0):
        pass  # the folder it made passes its own checks


def test_the_machine_lock_directory_planted_by_another_user_stops_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_root()
    monkeypatch.delenv("VIRTCTL_LOCK_DIR", raising=False)
    machine = tmp_path / "run-lock" / "virtctl"
    machine.mkdir(parents=True, mode=0o755)
    os.chown(machine, NOBODY, NOBODY)
    monkeypatch.setattr(hostlock, "MACHINE_LOCK_DIR", machine)
    with pytest.raises(VirtctlError, match=f"refusing the lock directory {machine}: it is "
                       f"owned by nobody"), host_lock(LIBVIRT_URI, tmp_path / "state"):
        pytest.fail("another user's lock directory was used")
    assert list(machine.iterdir()) == []


@pytest.mark.parametrize("make", ["symlink", "other-user", "fifo"])
def test_a_lock_file_that_is_not_this_users_own_file_is_refused(
        tmp_path: Path, make: str) -> None:
    state = tmp_path / "state"
    with host_lock(URI, state):
        path = lock_path(URI, state)
    path.unlink()
    if make == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text("keep")
        path.symlink_to(target)
        expect = "it is a symbolic link"
    elif make == "fifo":
        os.mkfifo(path, 0o600)
        expect = "it is not a regular file"
    else:
        needs_root()
        path.write_text("")
        os.chown(path, NOBODY, NOBODY)
        expect = f"it is owned by nobody (uid {NOBODY})"
    began = time.monotonic()
    with pytest.raises(VirtctlError) as caught, host_lock(URI, state):
        pytest.fail("a lock file that is not ours was used")
    assert time.monotonic() - began < 30  # a FIFO is refused, not waited on
    assert f"refusing the lock file {path}: {expect}" in str(caught.value)
    if make == "symlink":
        assert (tmp_path / "elsewhere").read_text() == "keep"


def test_a_lock_file_others_can_read_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with host_lock(URI, state):
        path = lock_path(URI, state)
    path.chmod(0o644)  # as virtctl made them before: anyone could flock it
    with host_lock(URI, state):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


RECORD = """
import fcntl, os, sys
from pathlib import Path
from virtctl.coord.hostlock import lock_path
path = lock_path(sys.argv[1], Path(sys.argv[2]))
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, sys.argv[3].encode())
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(("record", "shown"), [
    ('{"pid": PID, "command": "virtctl \\u001b]0;owned\\u0007\\u001b[2Japply\\u202e", '
     '"since": 0}', "virtctl \\x1b]0;owned\\x07\\x1b[2Japply\\u202e, since "),
    ('{"pid": PID, "command": "virtctl apply", "since": NaN}', "(virtctl apply)"),
    ('{"pid": PID, "command": "virtctl apply", "since": 1e300}', "(virtctl apply)"),
    ('{"pid": -1, "command": "virtctl apply", "since": 0}', "held by another process"),
    ('{"pid": 0, "command": "x", "since": 0}', "held by another process"),
    ('{"pid": 1180591620717411303424, "command": "x", "since": 0}',
     "held by another process"),
    ('{"pid": PID, "command": "' + "x" * 500 + '", "since": 0}', "x" * 80 + "..., since"),
])
def test_a_holder_record_is_printed_with_its_control_characters_escaped(
        tmp_path: Path, record: str, shown: str) -> None:
    state = tmp_path / "state"
    lock_path(URI, state)  # makes the folder
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORD, URI, str(state), record.replace("PID", "1")],
        env=env_for(state), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        heard: list[str] = []
        with pytest.raises(LockTimeout) as caught, \
                host_lock(URI, state, timeout=0.3, on_wait=heard.append):
            pytest.fail("the lock is held")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    for text in (heard[0], str(caught.value)):
        assert shown in text
        assert text.isprintable()  # no ESC, BEL, RLO reaches the terminal


def test_the_holder_names_its_verb_whatever_the_option_order(tmp_path: Path) -> None:
    """`virtctl -c URI apply` (the connection before the verb) is "virtctl apply"."""
    state = tmp_path / "state"
    specs = web_specs(tmp_path)
    (specs / "web.yaml").write_text("kind: Domain\nname: web\ntype: kvm\nmemory: 64MiB\n"
                                    "os: {type: hvm, arch: x86_64}\n")
    connect(URI, env={"VIRTCTL_STATE_DIR": str(state)}).inject_fault(  # type: ignore[attr-defined]
        "define", Kind.DOMAIN, "web", action="stall", seconds=60)
    first = subprocess.Popen(
        [sys.executable, "-m", "virtctl", "-c", URI, "apply", "-f", str(specs)],
        env=env_for(state), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        for line in first.stderr:  # its progress line: it holds the lock, stalled
            if "define domain/web" in line:
                break
        second = run_cli(state, "-c", URI, "apply", "-f", str(specs), "--lock-timeout", "0")
    finally:
        first.kill()
        first.wait(timeout=60)
    assert second.returncode == 1
    assert f"held by pid {first.pid} (virtctl apply, since " in second.stderr
    assert "virtctl sim:" not in second.stderr


@pytest.mark.parametrize("make", ["other-user", "group-writable", "world-writable"])
def test_a_lock_directory_inside_a_directory_others_can_change_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str) -> None:
    """Whoever can rename entries above the lock folder can swap it between two runs
    (which would then lock different files). A sticky parent (/tmp, /run/lock) is fine."""
    parent = tmp_path / "shared"
    parent.mkdir(mode=0o755)
    if make == "other-user":
        needs_root()
        os.chown(parent, NOBODY, NOBODY)
        expect = f"{parent} above it is owned by nobody (uid {NOBODY})"
    else:
        mode = 0o775 if make == "group-writable" else 0o777
        parent.chmod(mode)
        expect = f"{parent} above it is writable by its group or others (mode {mode:04o})"
    folder = parent / "locks"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("VIRTCTL_LOCK_DIR", str(folder))
    with pytest.raises(VirtctlError) as caught, host_lock(LIBVIRT_URI, tmp_path / "state"):
        pytest.fail("a lock folder others could swap was used")
    assert f"refusing the lock directory {folder}: {expect}" in str(caught.value)
    assert list(folder.iterdir()) == []
    parent.chmod(0o1777)  # sticky: no one renames what is not theirs
    if make != "other-user":
        with host_lock(LIBVIRT_URI, tmp_path / "state", timeout=0):
            pass
