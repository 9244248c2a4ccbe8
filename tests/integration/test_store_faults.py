"""Faults of the sim's state directory (issue 20, D): a read-only state directory, a
truncated record, a full disk. Each is one line naming the file (no traceback), exit 1,
and nothing lost: the records stay whole, no temporary file is left, and the next run
once the fault is gone converges.

The read-only directory is a read-only bind mount and the full disk a 256 KiB tmpfs
(real EROFS and ENOSPC from the kernel), which need root: elsewhere these skip, and
fail under CI. tests/unit/test_fileio.py injects ENOSPC at the write without root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import unavailable
from tests.integration.crashkit import virtctl
from virtctl.drivers.sim.driver import SimDriver
from virtctl.drivers.sim.store import StoreError
from virtctl.model import Kind
from virtctl.uri import parse_uri

DEADLINE = 120
SPECS = textwrap.dedent("""\
    kind: Domain
    name: web
    type: kvm
    memory: {memory}
    os: {{type: hvm, arch: x86_64}}
    ---
    kind: Network
    name: lan
    """)


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "all.yaml").write_text(SPECS.format(memory="64MiB"))
    return folder


def store_of(state: Path) -> Path:
    return state / "sim" / "default"


def snapshot_files(store: Path) -> dict[str, bytes]:
    """Every file of the store but the lock (relative path -> bytes)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != "lock"}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def failed_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip().startswith("failed")]


def need_root_mounts() -> None:
    if os.geteuid() != 0:
        unavailable("a read-only bind mount and a tmpfs need root")


@contextlib.contextmanager
def mounted(*argv: str) -> Iterator[None]:
    """Run `mount ARGV`, then umount its target (the last argument) after the block."""
    done = subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"mount {' '.join(argv)}: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", argv[-1]], check=True)


# -- a truncated record -------------------------------------------------------------


@pytest.mark.parametrize("verb", [("get", "domains"), ("apply",), ("diff",), ("delete",)])
def test_a_truncated_record_is_one_line_naming_it(
        tmp_path: Path, specs: Path, verb: tuple[str, ...]) -> None:
    state = tmp_path / "state"
    assert virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE).returncode == 0
    record = store_of(state) / "domains" / "web.json"
    whole = record.read_bytes()
    record.write_bytes(whole[:50])
    before = snapshot_files(store_of(state))
    args = verb if verb[0] == "get" else (*verb, "-f", str(specs))
    result = virtctl(state, *args, timeout=DEADLINE)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: sim state {record}: a damaged record, not JSON ("), line
    assert "restore the file, or remove it to forget that object" in line
    assert snapshot_files(store_of(state)) == before  # nothing changed, the rest whole
    record.write_bytes(whole)
    assert virtctl(state, "diff", "-f", str(specs), timeout=DEADLINE).returncode == 0


@pytest.mark.parametrize(("name", "text"), [
    ("counter.json", b'{"next_'), ("faults.json", b"[{"), ("networks/lan.json", b"\xff\xfe")])
def test_other_damaged_store_files_are_named(tmp_path: Path, specs: Path, name: str,
                                             text: bytes) -> None:
    state = tmp_path / "state"
    (specs / "all.yaml").write_text(SPECS.format(memory="64MiB").replace("kvm", "kvm\n"
                                    "state: shutoff"))
    assert virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE).returncode == 0
    damaged = store_of(state) / name
    damaged.write_bytes(text)
    (specs / "all.yaml").write_text(SPECS.format(memory="64MiB"))  # start: needs an id
    result = virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "Traceback" not in said
    assert f"sim state {damaged}: a damaged record" in said, said
    assert damaged.read_bytes() == text


# -- a read-only state directory -----------------------------------------------------


def test_a_read_only_store_reads_and_refuses_changes_naming_a_file(
        tmp_path: Path, specs: Path) -> None:
    need_root_mounts()
    state = tmp_path / "state"
    assert virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE).returncode == 0
    store = store_of(state)
    before = snapshot_files(store)
    with mounted("--bind", str(store), str(store)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(store)], check=True)
        got = virtctl(state, "get", "domains", timeout=DEADLINE)
        assert got.returncode == 0, got.stderr  # reading needs no write
        assert "web" in got.stdout
        (specs / "all.yaml").write_text(SPECS.format(memory="96MiB"))
        result = virtctl(state, "apply", "--allow-restart", "-f", str(specs),
                         timeout=DEADLINE)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        (line,) = failed_lines(result.stdout)
        assert f"sim state {store}/" in line and "Read-only file system" in line, line
        assert snapshot_files(store) == before
    again = virtctl(state, "apply", "--allow-restart", "-f", str(specs), timeout=DEADLINE)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_read_only_file_system_without_a_store_yet_is_one_line(tmp_path: Path) -> None:
    need_root_mounts()
    empty = tmp_path / "ro"
    empty.mkdir()
    with mounted("-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(empty)):
        result = virtctl(empty / "state", "get", "domains", timeout=DEADLINE)
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"error: sim state {empty / 'state'}: Read-only file system (the sim's state "
        "directory must be writable to change anything)"]


# -- a full disk ----------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path: Path, specs: Path) -> Iterator[tuple[Path, Path]]:
    """(state, store) on a 256 KiB tmpfs holding an applied store, then filled up."""
    need_root_mounts()
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)):
        state = disk / "state"
        result = virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE)
        assert result.returncode == 0, result.stderr
        filler = disk / "filler"
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as handle:
            while True:  # until ENOSPC
                handle.write(b"\0" * 4096)
        yield state, store_of(state)


def test_a_full_disk_is_one_line_naming_the_file_and_loses_nothing(
        full_disk: tuple[Path, Path], specs: Path) -> None:
    state, store = full_disk
    before = snapshot_files(store)
    (specs / "all.yaml").write_text(SPECS.format(memory="96MiB") + "---\nkind: Domain\n"
                                    "name: more\ntype: kvm\nmemory: 64MiB\n"
                                    "os: {type: hvm, arch: x86_64}\n")
    result = virtctl(state, "apply", "--allow-restart", "-f", str(specs), timeout=DEADLINE)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    said = result.stdout + result.stderr
    assert "OSError" not in said and "[Errno 28]" not in said
    failed = failed_lines(result.stdout)
    assert failed and all(f"sim state {store}/" in line and "No space left on device" in line
                          for line in failed), said
    after = snapshot_files(store)
    assert not [name for name in after if ".tmp" in name]  # no temporary file behind
    assert {k: v for k, v in after.items() if k in before} == before  # old records whole
    (store.parent.parent.parent / "filler").unlink()  # room again: the next run converges
    again = virtctl(state, "apply", "--allow-restart", "-f", str(specs), timeout=DEADLINE)
    assert again.returncode == 0, again.stdout + again.stderr


def test_an_upload_that_fills_the_disk_names_the_volume_and_leaves_nothing(
        tmp_path: Path) -> None:
    """An 8 MiB content.file into a sim store on a 4 MiB tmpfs (room for the pool and
    its record): the upload fails with ENOSPC, named; the volume made for it is removed
    again, no upload file is left."""
    need_root_mounts()
    image = tmp_path / "image.raw"
    image.write_bytes(os.urandom(8 << 20))
    specs = tmp_path / "storage"
    specs.mkdir()
    (specs / "all.yaml").write_text(textwrap.dedent(f"""\
        kind: StoragePool
        name: images
        type: dir
        target: {{path: /srv/images}}
        ---
        kind: Volume
        pool: images
        name: disk.img
        format: raw
        content: {{file: {image}}}
        """))
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)):
        state = disk / "state"
        result = virtctl(state, "apply", "-f", str(specs), timeout=DEADLINE)
        assert result.returncode == 1
        said = result.stdout + result.stderr
        assert "Traceback" not in said and "[Errno 28]" not in said
        data = next((store_of(state) / "pools-data").glob("*srv*"))
        assert (f"sim state {data / 'disk.img'}: cannot upload to volume 'images/disk.img': "
                "No space left on device; the volume keeps its old content") in said, said
        # The volume made for the upload went again; the pool's record stays.
        assert [p.name for p in data.iterdir()] == ["virtctl-state.json"]
        assert not list((store_of(state) / "pools-data" / ".uploads").iterdir())


def test_an_event_line_that_does_not_fit_is_cut_off_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection at the write (no root needed): events.log never keeps a part of a
    line, which would make the next event unreadable to subscribers."""
    state = tmp_path / "state"
    driver = SimDriver(parse_uri("sim:///default"), env={"VIRTCTL_STATE_DIR": str(state)})
    driver.define(Kind.NETWORK, "<network><name>lan</name></network>")
    log = store_of(state) / "events.log"
    before = log.read_bytes()
    real_write = os.write

    def half(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("virtctl.drivers.sim.store.os.write", half)
    with pytest.raises(StoreError, match=f"sim state {log}: No space left on device"):
        driver.start(Kind.NETWORK, "lan")
    monkeypatch.undo()
    assert log.read_bytes() == before
    driver.define(Kind.NETWORK, "<network><name>lan2</name></network>")
    lines = log.read_bytes().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["lan", "lan2"]
