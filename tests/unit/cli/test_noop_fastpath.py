"""The no-op fast path (virtctl/cli/noop.py): a repeated no-op `apply`/`diff` is
answered from a record without importing virtctl.model, and every input class (a spec
byte, live drift, an option, the environment, virtctl's code) sends it back to the full
path, whose output it then matches.

Whole processes (`python -m virtctl`), as the fast path only exists there; each test
runs a handful on a small sim host of its own. VIRTCTL_FASTPATH_DEBUG=1 makes a replay
say so on stderr, with whether virtctl.model was imported (it must not be).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtctl.cli import noop
from virtctl.drivers import connect
from virtctl.drivers.libvirt.reads import STATE_NAMES
from virtctl.drivers.sim.rawread import store_fingerprint
from virtctl.model import DomainState, Kind

ROOT = Path(__file__).resolve().parents[3]
DEBUG = "virtctl-debug: no-op fast path, virtctl.model imported: "

SPEC = """\
kind: Domain
name: {name}
type: qemu
memory: 64MiB
vcpus: 1
state: {state}
autostart: false
os:
  type: hvm
  arch: x86_64
  machine: pc
"""


@pytest.fixture
def host(tmp_path: Path) -> dict[str, object]:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(SPEC.format(name="fp-a", state="shutoff"))
    (specs / "b.yaml").write_text(SPEC.format(name="fp-b", state="running"))
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTCTL_")}
    env.update(VIRTCTL_STATE_DIR=str(tmp_path / "state"), VIRTCTL_CACHE_DIR=str(tmp_path / "cache"),
               VIRTCTL_LOCK_DIR=str(locks), VIRTCTL_CONNECT="sim:///fastpath",
               VIRTCTL_FASTPATH_DEBUG="1", VIRTCTL_SIM_FSYNC="0", PYTHONPATH=str(ROOT))
    return {"specs": specs, "env": env, "tmp": tmp_path}


def virtctl(host: dict[str, object], *args: str, env: dict[str, str] | None = None
            ) -> tuple[int, str, str, bool | None]:
    """(exit status, stdout, stderr without the debug line, None for the full path or
    whether the fast path found virtctl.model imported)."""
    proc = subprocess.run([sys.executable, "-m", "virtctl", *args],
                          env=env or host["env"], capture_output=True, text=True,  # type: ignore[arg-type]
                          check=False, cwd=host["tmp"], timeout=120)  # type: ignore[arg-type]
    fast: bool | None = None
    lines = []
    for line in proc.stderr.splitlines(keepends=True):
        if line.startswith(DEBUG):
            fast = line[len(DEBUG):].strip() == "True"
        else:
            lines.append(line)
    return proc.returncode, proc.stdout, "".join(lines), fast


def applied(host: dict[str, object], *extra: str) -> tuple[int, str, str, bool | None]:
    return virtctl(host, "apply", "-f", str(host["specs"]), *extra)


def settle(host: dict[str, object]) -> tuple[int, str, str, bool | None]:
    """Define the guests, then the first no-op (full, recorded), then a replay."""
    first = applied(host)
    assert first[0] == 0, first
    full = applied(host)
    assert full[0] == 0 and full[3] is None, full
    assert "No changes" in full[1]
    fast = applied(host)
    assert fast[3] is False, "a repeated no-op must take the fast path, model unimported"
    assert fast[:3] == full[:3], "the replay prints what the full path printed"
    return full


def test_repeated_noop_is_replayed_and_each_input_falls_back(host: dict[str, object]) -> None:
    full = settle(host)
    specs: Path = host["specs"]  # type: ignore[assignment]

    # A spec byte (a comment: the same plan) -> the full path, same output; then fast.
    with (specs / "a.yaml").open("a") as handle:
        handle.write("# a comment\n")
    again = applied(host)
    assert again[3] is None and again[:3] == full[:3]
    assert applied(host)[3] is False

    # A spec change that matters -> the full path, which applies it.
    (specs / "a.yaml").write_text(SPEC.format(name="fp-a", state="running"))
    changed = applied(host)
    assert changed[3] is None and changed[0] == 0 and "~ domain/fp-a  (start)" in changed[1]

    # An option -> full path (recorded under its own key), then fast again.
    opt = applied(host, "--allow-restart")
    assert opt[3] is None and opt[0] == 0 and "No changes" in opt[1]
    assert applied(host, "--allow-restart")[3] is False

    # The environment -> full path.
    env = dict(host["env"], VIRTCTL_CALL_TIMEOUT="33")  # type: ignore[arg-type]
    assert virtctl(host, "apply", "-f", str(specs), env=env)[3] is None
    assert virtctl(host, "apply", "-f", str(specs), env=env)[3] is False


def test_live_drift_falls_back_and_is_fixed(host: dict[str, object]) -> None:
    settle(host)
    env: dict[str, str] = host["env"]  # type: ignore[assignment]
    driver = connect("sim:///fastpath", env=env)
    try:
        driver.destroy(Kind.DOMAIN, "fp-b")
        driver.set_autostart(Kind.DOMAIN, "fp-a", True)
    finally:
        driver.close()
    fixed = applied(host)
    assert fixed[3] is None, "drift on the host must take the full path"
    assert fixed[0] == 0 and "fp-a" in fixed[1] and "fp-b" in fixed[1]
    settle_again = applied(host)
    assert settle_again[3] is None and "No changes" in settle_again[1]

    # A new unmanaged domain on the host: the full path again (it looks at them all).
    driver = connect("sim:///fastpath", env=env)
    try:
        driver.define(Kind.DOMAIN, "<domain type='qemu'><name>stranger</name>"
                      "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type>"
                      "</os></domain>")
    finally:
        driver.close()
    assert applied(host)[3] is None
    assert applied(host)[3] is False


def test_diff_is_replayed_and_excluded_runs_never_are(host: dict[str, object]) -> None:
    settle(host)
    specs = str(host["specs"])
    full = virtctl(host, "diff", "-f", specs)
    assert full[0] == 0 and full[3] is None
    fast = virtctl(host, "diff", "-f", specs)
    assert fast[3] is False and fast[:3] == full[:3]
    for extra in (("--dry-run",), ("-o", "json"), ("--prune",)):
        for _ in range(2):
            assert applied(host, *extra)[3] is None, extra
    off = dict(host["env"], VIRTCTL_FASTPATH="0")  # type: ignore[arg-type]
    assert virtctl(host, "apply", "-f", specs, env=off)[3] is None


def test_keys_follow_code_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"VIRTCTL_CONNECT": "sim:///x", "HOME": "/root", "UNRELATED": "1"}
    base = noop.run_key(["apply", "-f", "s"], env)
    assert noop.run_key(["apply", "-f", "s"], dict(env, UNRELATED="2")) == base
    assert noop.run_key(["apply", "-f", "s", "--adopt"], env) != base
    assert noop.run_key(["apply", "-f", "s"], dict(env, VIRTCTL_CONNECT="sim:///y")) != base
    assert noop.run_key(["apply", "-f", "s"], env, [True, False]) != base
    monkeypatch.setattr(noop, "code_version", lambda: "another virtctl")
    assert noop.run_key(["apply", "-f", "s"], env) != base


def test_code_version_sees_a_rewrite_that_keeps_size_and_mtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    source = tmp_path / "sub" / "plan.py"
    source.write_text("A = 1\n")
    monkeypatch.setattr(noop, "_PACKAGE", tmp_path)
    before = noop.code_version()
    assert noop.code_version() == before
    info = source.stat()
    # Rewritten with the same size and its mtime put back; the kernel's clock for file
    # times ticks every few ms, so rewrite until the ctime has moved (it always does).
    while source.stat().st_ctime_ns == info.st_ctime_ns:
        source.write_text("A = 2\n")
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert source.stat().st_mtime_ns == info.st_mtime_ns
    assert noop.code_version() != before


def test_raw_fingerprints_are_the_drivers(tmp_path: Path) -> None:
    """The model-free readers hash exactly what the drivers' snapshots hash."""
    libvirt_order = (DomainState.NOSTATE, DomainState.RUNNING, DomainState.BLOCKED,
                     DomainState.PAUSED, DomainState.SHUTDOWN, DomainState.SHUTOFF,
                     DomainState.CRASHED, DomainState.PMSUSPENDED)
    assert tuple(s.value for s in libvirt_order) == STATE_NAMES
    env = {"VIRTCTL_STATE_DIR": str(tmp_path / "state"), "VIRTCTL_SIM_FSYNC": "0"}
    driver = connect("sim:///raw", env=env)
    root = tmp_path / "state" / "sim" / "raw"
    try:
        empty = driver.snapshot().fingerprint  # (makes the store's lock file)
        assert store_fingerprint(root) == empty
        driver.define(Kind.DOMAIN, "<domain type='qemu'><name>r1</name><memory unit='MiB'>"
                      "64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>")
        before = driver.snapshot().fingerprint
        assert store_fingerprint(root) == before != empty
        driver.start(Kind.DOMAIN, "r1")
        assert store_fingerprint(root) == driver.snapshot().fingerprint != before
    finally:
        driver.close()
    libvirt = pytest.importorskip("libvirt")
    from virtctl.drivers.libvirt.reads import RawReader
    from virtctl.drivers.snapshot import fingerprint

    lv_driver = connect("test:///default")
    try:
        conn = libvirt.open("test:///default")  # its own in-process host: same content
        try:
            raw = RawReader(libvirt, conn, 1).read_records()
        finally:
            conn.close()
        assert fingerprint(*raw) == lv_driver.snapshot().fingerprint
    finally:
        lv_driver.close()


def test_libvirt_test_driver_is_replayed(host: dict[str, object]) -> None:
    """test:///default (libvirt's in-process host, the same in every process): the
    libvirt reads of the fast path match the driver's."""
    pytest.importorskip("libvirt")
    empty = Path(host["tmp"]) / "none"  # type: ignore[arg-type]
    empty.mkdir()
    args = ("diff", "-c", "test:///default", "-f", str(empty))
    full = virtctl(host, *args)
    assert full[0] == 0 and full[3] is None, full
    fast = virtctl(host, *args)
    assert fast[3] is False and fast[:3] == full[:3]


def test_a_lock_held_by_another_run_is_waited_for(host: dict[str, object]) -> None:
    """The fast path never answers while another run holds the host's lock (that run
    may be changing the host): the full path waits, says so, then plans."""
    from virtctl.coord.hostlock import host_lock

    assert applied(host)[0] == 0  # defines
    assert applied(host)[0] == 0  # records the no-op
    env: dict[str, str] = host["env"]  # type: ignore[assignment]
    with host_lock("sim:///fastpath", Path(env["VIRTCTL_STATE_DIR"]), command="test"):
        proc = subprocess.Popen([sys.executable, "-m", "virtctl", "apply", "-f",
                                 str(host["specs"])], env=env, cwd=host["tmp"],  # type: ignore[arg-type]
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the run says something
        assert "waiting for the lock" in first, first
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "No changes" in out and DEBUG not in err


def test_an_interrupted_checkpointed_change_is_never_replayed(tmp_path: Path) -> None:
    """The fast path looks where the checkpoint journal keeps its entries: with one
    there, the full path runs (it settles the change first)."""
    from virtctl.reconciler.checkpoint.journal import Journal

    env = {"VIRTCTL_STATE_DIR": str(tmp_path)}
    journal = Journal("sim:///j", env)
    assert not noop.pending("sim:///j", env)
    journal.folder.mkdir(parents=True)
    assert not noop.pending("sim:///j", env)
    (journal.folder / "web.json").write_text("{}")
    assert noop.pending("sim:///j", env)
    assert not noop.pending("sim:///other", env)


def test_records_beyond_the_cap_are_trimmed_oldest_first(tmp_path: Path) -> None:
    for i in range(7):
        record = tmp_path / f"{i}.json"
        record.write_text("{}")
        os.utime(record, ns=(i * 10**9, i * 10**9))
    (tmp_path / "keep.tmp").write_text("not a record")
    noop._trim(tmp_path, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "3.json", "4.json", "5.json", "6.json", "keep.tmp"]
