"""fileio.py: only regular files are read (a FIFO never blocks, a device is never read),
virtctl's own files are never followed through a symlink, its directories must be
private, and an atomic write that fails (a full disk) leaves the old file whole, no
temporary file, and an error naming the target.

Reads that could block run on a thread joined with a deadline, so a regression fails
the test instead of hanging the suite."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import unavailable
from virtctl import fileio
from virtctl.fileio import (
    NotRegularFile,
    UnsafeDirectory,
    open_private,
    open_regular,
    private_dir,
    read_private,
    write_atomic,
)


def finishes(call: Callable[[], Any], timeout: float = 10.0) -> Any:
    """`call()`'s result or exception; fails if it is still blocked after `timeout`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still blocked after {timeout}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile) as caught:
        finishes(lambda: open_regular(fifo))
    assert caught.value.filename == str(fifo)
    assert caught.value.strerror == "a FIFO (named pipe), not a regular file"
    with pytest.raises(NotRegularFile):
        finishes(lambda: read_private(fifo))


@pytest.mark.parametrize(("make", "kind"), [
    (lambda p: None, "a character device"),  # /dev/zero: read without end
    (lambda p: p.mkdir(), "a directory"),
])
def test_devices_and_directories_are_refused(tmp_path: Path, make: Callable[[Path], None],
                                            kind: str) -> None:
    path = Path("/dev/zero") if kind == "a character device" else tmp_path / "d.yaml"
    make(path)
    with pytest.raises(NotRegularFile) as caught:
        finishes(lambda: open_regular(path))
    assert caught.value.strerror == f"{kind}, not a regular file"


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(NotRegularFile, match="a socket"):
            finishes(lambda: open_regular(path))


def test_a_regular_file_reads_through_a_symlink_unless_private(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_bytes(b"kind: Domain\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    with open_regular(link) as handle:
        assert handle.read() == b"kind: Domain\n"
    with pytest.raises(NotRegularFile, match="a symbolic link"):
        read_private(link)
    with pytest.raises(NotRegularFile, match="a symbolic link"):  # O_NOFOLLOW itself
        open_private(link, os.O_WRONLY | os.O_APPEND)
    assert real.read_bytes() == b"kind: Domain\n"


def test_a_fifo_swapped_in_after_the_check_is_refused_by_the_descriptor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path is checked, then opened with O_NONBLOCK, then the descriptor checked:
    a FIFO put there between the two neither blocks nor passes."""
    path = tmp_path / "spec.yaml"
    path.write_text("x")
    real_stat, swapped = os.stat, []

    def stat_then_swap(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(target, *args, **kwargs)
        if not swapped and Path(target) == path:
            swapped.append(path)
            path.unlink()
            os.mkfifo(path)
        return result

    monkeypatch.setattr(fileio.os, "stat", stat_then_swap)
    with pytest.raises(NotRegularFile, match="FIFO"):
        finishes(lambda: open_regular(path))


def test_private_dir_refuses_a_symlink_and_a_writable_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafeDirectory, match="a symbolic link"):
        private_dir(link)
    private_dir(link, follow=True)  # a folder the user named may be a link
    real.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match=r"writable by its group or others \(mode 0777\)"):
        private_dir(real)
    real.chmod(0o775)
    with pytest.raises(UnsafeDirectory, match="mode 0775"):
        private_dir(real)
    real.chmod(0o755)
    private_dir(real)
    made = tmp_path / "made"
    private_dir(made)
    assert made.is_dir() and not made.is_symlink()


def test_private_dir_refuses_another_users_directory(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("chown to another user needs root")
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 65534, 65534)
    with pytest.raises(UnsafeDirectory) as caught:
        private_dir(other)
    assert "owned by uid 65534, not by uid 0" in caught.value.strerror
    assert caught.value.filename == str(other)


def test_a_failed_atomic_write_keeps_the_old_file_and_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection at the write: ENOSPC from fsync (where a full disk shows when
    the data is flushed). tests/integration/test_faults.py does it on a real full
    tmpfs."""
    target = tmp_path / "record.json"
    target.write_bytes(b'{"old": true}')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        write_atomic(target, b'{"new": true}', fsync=True)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(target)
    assert target.read_bytes() == b'{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]  # no temp left


def test_an_atomic_write_replaces_a_symlink_never_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "record.json"
    link.symlink_to(victim)
    write_atomic(link, b"new")
    assert victim.read_bytes() == b"keep"
    assert not link.is_symlink() and link.read_bytes() == b"new"
