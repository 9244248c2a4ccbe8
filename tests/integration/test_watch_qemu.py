"""End to end: a real `virtctl watch` process keeping a real QEMU guest on qemu:///system.

The watcher runs as a subprocess (JSON logs to a file) over a spec directory in a git
work tree that declares one guest (type qemu, x86_64, machine pc, 64 MiB, no disk)
running. Behind its back, `virsh destroy` stops the guest: it must be running again
within a few seconds. Then the spec's memory is edited (saved as editors save, by
rename): the persistent definition must converge without restarting the guest, and the
ownership mark must name the commit the specs came from (`-dirty` once edited). SIGTERM
ends the watcher with exit 0. The guest is removed even when the test fails, and nothing
but that guest is touched. Skipped with a reason only outside CI when libvirt is
unavailable; in CI it must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import libvirt_module, require_connection
from tests.integration.test_libvirt_reconcile import URI, name
from virtctl.metadata import read_owner
from virtctl.xmlutil import parse

REPO = Path(__file__).resolve().parents[2]
RESTART_WITHIN = 10.0  # seconds from `virsh destroy` to running again (QEMU start included)
CONVERGE_WITHIN = 15.0


def spec(dom: str, *, memory: str) -> str:
    return textwrap.dedent(f"""\
        kind: Domain
        apiVersion: virtctl/v1
        name: {dom}
        type: qemu
        memory: {memory}
        vcpus: 1
        os: {{type: hvm, arch: x86_64, machine: pc}}
        state: running
        """)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
         "-c", "commit.gpgsign=false", *args],
        capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    return done.stdout.strip()


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class WatchProcess:
    def __init__(self, specs: Path, workdir: Path) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTCTL_CONNECT", "LIBVIRT_DEFAULT_URI")}
        env.update(VIRTCTL_STATE_DIR=str(workdir / "state"), PYTHONPATH=str(REPO))
        self.log_path = workdir / "watch.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "virtctl", "watch", "-c", URI, "-f", str(specs),
             "--log-format", "json", "--interval", "1h", "--shutdown-timeout", "10"],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def records(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event]

    def in_sync_after(self, woke: Callable[[dict[str, Any]], bool]) -> bool:
        """A run ended in sync after the first record for which `woke` holds."""
        records = self.records()
        start = next((i for i, r in enumerate(records) if woke(r)), None)
        return start is not None and any(
            r.get("event") == "reconciled" and r.get("in_sync") for r in records[start:])

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def guest_name() -> Iterator[str]:
    """A fresh vctl-test-* name; that guest (and only it) is removed afterwards."""
    require_connection(URI)
    libvirt = libvirt_module()
    dom = name()
    yield dom
    conn = libvirt.open(URI)
    try:
        guest = conn.lookupByName(dom)
        for step in ("destroy", "undefine"):
            with contextlib.suppress(libvirt.libvirtError):  # not running
                getattr(guest, step)()
    except libvirt.libvirtError:
        pass  # never defined
    finally:
        conn.close()


@pytest.fixture
def conn() -> Iterator[Any]:
    require_connection(URI)
    libvirt = libvirt_module()
    connection = libvirt.open(URI)
    yield connection
    connection.close()


def destroy_behind_its_back(dom: str, conn: Any) -> None:
    if shutil.which("virsh"):
        subprocess.run(["virsh", "-c", URI, "destroy", dom], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    else:
        conn.lookupByName(dom).destroy()


def test_watch_keeps_a_qemu_guest_running_and_follows_spec_edits(
    guest_name: str, conn: Any, tmp_path: Path
) -> None:
    libvirt = libvirt_module()
    dom = guest_name
    repo = tmp_path / "repo"
    specs = repo / "specs"
    specs.mkdir(parents=True)
    (specs / "guest.yaml").write_text(spec(dom, memory="64MiB"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one guest")
    head = git(repo, "rev-parse", "HEAD")

    def guest() -> Any:
        try:
            return conn.lookupByName(dom)
        except libvirt.libvirtError:
            return None

    def inactive() -> Any:
        return parse(guest().XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

    watcher = WatchProcess(specs, tmp_path)
    try:
        # In sync, not merely active: QEMU counts as active while it is still starting.
        wait_for(lambda: watcher.in_sync_after(lambda r: True), timeout=60,
                 what=f"the first reconcile\n{watcher.log()}")
        assert guest().isActive()
        owner = read_owner(inactive())
        assert owner is not None and owner.commit == head
        first_id = guest().ID()

        destroy_behind_its_back(dom, conn)
        stopped_at = time.monotonic()
        wait_for(lambda: guest().isActive(), timeout=RESTART_WITHIN,
                 what=f"{dom} running again after virsh destroy\n{watcher.log()}")
        took = time.monotonic() - stopped_at

        # Woken by libvirt's events (destroy sends shutdown-host, then stopped), not by
        # the hourly resync; and settled in sync after them.
        def destroy_seen(record: dict[str, Any]) -> bool:
            return (record.get("event") == "host-event" and record["object"] == f"domain/{dom}"
                    and record["type"] in ("changed", "stopped"))

        wait_for(lambda: watcher.in_sync_after(destroy_seen), timeout=RESTART_WITHIN,
                 what=f"in sync after the destroy\n{watcher.log()}")
        second_id = guest().ID()
        assert second_id != first_id, "a new QEMU process was started"
        assert took < RESTART_WITHIN

        edited = specs / ".guest.yaml.tmp"
        edited.write_text(spec(dom, memory="96MiB"))
        os.replace(edited, specs / "guest.yaml")
        wait_for(lambda: inactive().findtext("memory") == str(96 * 1024),
                 timeout=CONVERGE_WITHIN, what=f"memory redefined\n{watcher.log()}")
        owner = read_owner(inactive())
        assert owner is not None and owner.commit == f"{head}-dirty"
        assert guest().isActive() and guest().ID() == second_id  # redefined, not restarted

        assert watcher.stop() == 0, watcher.log()
        assert watcher.events("stopped")
        assert not watcher.events("internal-error"), watcher.log()
    finally:
        watcher.kill()
