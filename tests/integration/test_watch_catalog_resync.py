"""`run_watch` over two sim hosts with a file watcher that never reports anything (as if
its events were lost, or the edit was made while the watcher was down): the fleet's
periodic resync must still find the edit, even though the catalog is no longer re-read
on every host pass, and the edited host must converge to it."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from virtctl.drivers.sim.driver import SimDriver
from virtctl.reconciler.plan.plan import Policy
from virtctl.uri import parse_uri
from virtctl.watch import fleet, run_watch


def host_file(host: str, memory: int) -> str:
    return (f"kind: Domain\nname: {host}-vm\ntype: kvm\nmemory: {memory}MiB\n"
            f"state: shutoff\nos: {{type: hvm, arch: x86_64}}\nconnect: sim:///{host}\n")


class DeafWatch:
    """A SpecWatch whose events never arrive."""

    started: list[Sequence[str]] = []

    def __init__(self, paths: Sequence[str], notify: Callable[[], None]) -> None:
        self.paths = paths

    def start(self) -> None:
        DeafWatch.started.append(self.paths)

    def close(self) -> None:
        pass


def memory_kib(host: str, name: str) -> int | None:
    domain = SimDriver(parse_uri(f"sim:///{host}")).snapshot().domains.get(name)
    if domain is None:
        return None
    found = re.search(r"<memory unit=['\"]KiB['\"]>(\d+)</memory>", domain.xml)
    return int(found.group(1)) if found else None


def wait_for(what: str, condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_an_edit_no_event_announces_is_found_by_the_resync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")
    monkeypatch.setenv("VIRTCTL_CACHE", "0")
    monkeypatch.setattr(fleet, "SpecWatch", DeafWatch)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "ha.yaml").write_text(host_file("ha", 64))
    (specs / "hb.yaml").write_text(host_file("hb", 64))
    stop, stream, codes = threading.Event(), io.StringIO(), []
    thread = threading.Thread(target=lambda: codes.append(run_watch(
        [str(specs)], uri="sim:///default", policy=Policy(), interval=0.5,
        log_format="json", stop=stop, stream=stream, debounce=0.05)))
    thread.start()
    try:
        wait_for("both hosts defined", lambda: memory_kib("ha", "ha-vm") == 64 * 1024
                 and memory_kib("hb", "hb-vm") == 64 * 1024, 60)
        assert DeafWatch.started  # the deaf watcher is the one in use: no event comes
        (specs / "hb.yaml").write_text(host_file("hb", 128))
        wait_for("the edit applied by a resync", lambda: memory_kib("hb", "hb-vm")
                 == 128 * 1024, 60)
        assert memory_kib("ha", "ha-vm") == 64 * 1024
    finally:
        stop.set()
        thread.join(timeout=60)
    assert codes == [0], stream.getvalue()[-2000:]
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert not [e for e in events if e["level"] == "error"], events
