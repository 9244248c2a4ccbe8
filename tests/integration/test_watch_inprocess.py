"""`run_watch` called in-process, stopped through its `stop` event (no signals)."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import DomainState, Kind
from virtctl.reconciler.plan.plan import Policy
from virtctl.uri import parse_uri
from virtctl.watch import run_watch

XML = ("<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory>"
       "<os><type arch='x86_64'>hvm</type></os></domain>")


class Lines(io.StringIO):
    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


def test_run_watch_reconciles_and_returns_zero_when_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.xml").write_text(XML.format(name="a"))
    stop, stream, codes = threading.Event(), Lines(), []
    thread = threading.Thread(target=lambda: codes.append(run_watch(
        [str(specs)], uri="sim:///lab", policy=Policy(), interval=0.3, log_format="json",
        metrics_port=None, metrics_address="127.0.0.1", stop=stop, stream=stream)))
    thread.start()
    try:
        host = SimDriver(parse_uri("sim:///lab"))
        deadline = time.monotonic() + 5
        while sum(r["event"] == "reconciled" for r in stream.records()) < 3:
            assert time.monotonic() < deadline, "no periodic resync within 5 s"
            time.sleep(0.02)
        assert host.snapshot().domains["a"].state is DomainState.RUNNING
    finally:
        stop.set()
        thread.join(timeout=5)
    assert codes == [0]
    triggers = [r["trigger"] for r in stream.records() if r["event"] == "reconciled"]
    assert triggers[:3] == ["start", "resync", "resync"]
    assert stream.records()[-1]["event"] == "stopped"


def test_watch_manages_storage_like_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool and a volume appear; the volume's declared capacity grows it."""
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")
    specs = tmp_path / "specs"
    specs.mkdir()
    storage = ("kind: StoragePool\nname: images\ntype: dir\ntarget: {path: /srv/images}\n"
               "---\nkind: Volume\npool: images\nname: data.img\nformat: raw\n"
               "capacity: SIZE\n")
    (specs / "storage.yaml").write_text(storage.replace("SIZE", "1GiB"))
    stop, stream, codes = threading.Event(), Lines(), []
    thread = threading.Thread(target=lambda: codes.append(run_watch(
        [str(specs)], uri="sim:///lab", policy=Policy(), interval=0.3, log_format="json",
        metrics_port=None, metrics_address="127.0.0.1", stop=stop, stream=stream)))
    thread.start()
    host = SimDriver(parse_uri("sim:///lab"))

    def capacity() -> int | None:
        found = host.storage().volumes.get("images/data.img")
        return found.capacity if found is not None else None

    try:
        deadline = time.monotonic() + 10
        while capacity() != 1 << 30:
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.02)
        (specs / "storage.yaml").write_text(storage.replace("SIZE", "2GiB"))
        while capacity() != 2 << 30:
            assert time.monotonic() < deadline + 10, stream.getvalue()
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert codes == [0]
    assert not [r for r in stream.records() if r.get("level") == "error"]


def test_a_lock_folder_another_user_could_take_over_is_logged_and_nothing_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watcher whose lock folder is refused (issue 20 D) says so plainly, as a
    `lock-refused` error naming the folder (not an internal error), applies nothing and
    still stops cleanly."""
    state = tmp_path / "state"
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(state))
    monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")
    SimDriver(parse_uri("sim:///lab"))  # the store, made before its locks folder is
    locks = state / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    locks.chmod(0o777)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.xml").write_text(XML.format(name="a"))
    stop, stream, codes = threading.Event(), Lines(), []
    thread = threading.Thread(target=lambda: codes.append(run_watch(
        [str(specs)], uri="sim:///lab", policy=Policy(), interval=3600, log_format="json",
        metrics_port=None, metrics_address="127.0.0.1", stop=stop, stream=stream)))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not any(r["event"] == "lock-refused" for r in stream.records()):
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert codes == [0]
    refused = next(r for r in stream.records() if r["event"] == "lock-refused")
    assert f"refusing the lock directory {locks}: writable by its group or others" \
        in str(refused["msg"])
    assert not any(r["event"] == "internal-error" for r in stream.records())
    assert "a" not in SimDriver(parse_uri("sim:///lab")).snapshot().domains


def test_watch_checks_storage_before_acting_as_apply_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20 F in the watcher: a local content file with a wrong checksum, and a
    volume already in the directory of a pool not running (retained by a delete), make
    their spec file broken (logged with the file's line) before anything is made."""
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")
    image = tmp_path / "image.raw"
    image.write_bytes(b"data")
    host = SimDriver(parse_uri("sim:///lab"))
    host.define(Kind.POOL, "<pool type='dir'><name>old</name>"
                           "<target><path>/srv/images</path></target></pool>")
    host.build_pool("old")
    host.start(Kind.POOL, "old")
    host.create_volume("old", "<volume><name>kept.img</name><capacity>8</capacity></volume>")
    host.destroy(Kind.POOL, "old")
    host.undefine(Kind.POOL, "old")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "storage.yaml").write_text(
        "kind: StoragePool\nname: images\ntype: dir\ntarget: {path: /srv/images}\n"
        "---\nkind: Volume\npool: images\nname: kept.img\nformat: raw\ncapacity: 8\n"
        f"---\nkind: Volume\npool: images\nname: seed.img\nformat: raw\n"
        f"content: {{file: {image}, checksum: 'sha256:{'0' * 64}'}}\n")
    stop, stream, codes = threading.Event(), Lines(), []
    thread = threading.Thread(target=lambda: codes.append(run_watch(
        [str(specs)], uri="sim:///lab", policy=Policy(), interval=0.3, log_format="json",
        metrics_port=None, metrics_address="127.0.0.1", stop=stop, stream=stream)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "does not match its checksum" not in stream.getvalue():
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert codes == [0]
    text = stream.getvalue()
    assert "exists already" in text and "--adopt" in text and "storage.yaml:" in text
    assert "images" not in host.storage().pools  # nothing made
