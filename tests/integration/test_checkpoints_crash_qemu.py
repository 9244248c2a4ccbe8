"""The crash table on qemu:///system with a real guest (docs/checkpoints.md): an apply
killed (SIGKILL) at the same ten points between checkpoint and health verdict as the
sim's test_checkpoints_crash.py, then the next apply settles what it left, says which
(finished the gate, or rolled back), and converges.

Each point is held open by heldrun.py: the killed run's Nth call of one libvirt driver
method (the sim's `stall` fault) never returns, and the test kills the run once the
hold's mark appears, then checks from outside (the journal, libvirt) that the host is
at that point. The calls themselves, the checkpoint, the define, the gate and the
recovery are all real.

One guest walks through the ten points in turn (CI time: a guest per point would boot
and stop twenty times more; the walk is about 20 virtctl runs and one full boot):
every point changes its machine type to the other one (pc-i440fx-7.2 <-> 6.2, a
restart-class change) and is killed, and the next apply settles it, so the guest ends
each point in sync, ready for the next (after a failed point, the next one applies the
spec it should have ended with first, so one failure does not fail the points after it).
Only the points about the gate (6-10) gate on the guest agent, so only they wait for
the guest: point 6's settling apply for its boot, the failing definitions of points
7-10 (`vctl.agent` left off their command line) for a 4 s gate timeout. The others and
every settling apply's new change gate on "running" (no `health:`), and the guest is
stopped with --force-stop --shutdown-timeout 1: a guest still booting, which cannot heed
ACPI yet, is destroyed after a second rather than waited for. The agent probe's pass
and fail on a fully booted guest are test_checkpoints_qemu.py's.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import PREFIX, libvirt_module, require_connection
from tests.integration.crashkit import apply_killed_when, virtctl
from tests.integration.test_checkpoints_qemu import (
    NEW,
    OLD,
    URI,
    Lab,
    guest_space,
)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Point:
    hold: str  # the driver call held in the killed run: OP[:N][@AFTER] (heldrun.py)
    healthy: bool  # the killed run's new definition passes its gate
    probe: bool  # the killed run's spec gates on the guest agent (else on "running")
    left: str  # the journal stage the kill leaves ("" for none)
    says: str  # what the next apply says it did with it ("" when there was nothing)


CUT_SHORT = "the change was cut short: rolled back to"
ROLLED_BACK = "finished rolling back to"
POINTS: dict[str, Point] = {
    # take(): the guest is stopped and read, the journal not yet written
    "stopped, before the checkpoint": Point("snapshots", True, False, "", ""),
    "journal written, checkpoint being taken": Point(
        "create_snapshot", True, False, "checkpoint", "the checkpoint was never taken"),
    "checkpoint taken, before the define": Point(
        "define", True, False, "changing", CUT_SHORT),
    "old checkpoint being deleted (retention)": Point(
        "delete_snapshot", True, False, "changing", CUT_SHORT),
    "defined, before the start": Point("start", True, False, "changing", CUT_SHORT),
    "started, gate waiting on the agent": Point(
        "agent_ping", True, True, "gate", "finished the health gate: healthy (agent)"),
    "gate failing": Point(  # one ping has failed already
        "agent_ping:2", False, True, "gate",
        "finished the health gate: change failed health and was rolled back"),
    "rollback begun, before the destroy": Point(
        "destroy@agent_ping", False, True, "rollback", ROLLED_BACK),
    "rollback: destroyed, before the revert": Point(
        "revert_snapshot", False, True, "rollback", ROLLED_BACK),
    "rollback: reverted, before the start": Point(
        "start@agent_ping", False, True, "rollback", ROLLED_BACK),
}


class Ran:
    """A virtctl subprocess's result, as Lab reads the `cli` fixture's."""

    def __init__(self, done: Any) -> None:
        self.code, self.out, self.err = done.returncode, done.stdout, done.stderr

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Walk:
    lab: Lab
    state: Path
    machine: str  # the machine type the guest runs, healthy and in sync
    synced: bool  # the last point passed: the guest is in sync with `machine`
    seconds: dict[str, float]

    def journal(self) -> dict[str, Any] | None:
        for path in (self.state / "checkpoints").rglob(f"{self.lab.name}.json"):
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
        return None

    def argv(self) -> list[str]:
        return ["apply", "-c", URI, "--force-stop", "--shutdown-timeout", "1", "-f",
                str(self.lab.specs)]

    def domain(self) -> tuple[bool, str]:
        """(running, the machine type of the persistent definition)."""
        conn = libvirt_module().open(URI)
        try:
            running = bool(conn.lookupByName(self.lab.name).isActive())
        finally:
            conn.close()
        return running, self.lab.machine(running=False)

    def checkpoints(self) -> int:
        """virtctl's checkpoints of the guest (from libvirt: no virtctl run per look)."""
        conn = libvirt_module().open(URI)
        try:
            return sum(s.getName().startswith("virtctl-") for s in
                       conn.lookupByName(self.lab.name).listAllSnapshots(0))
        finally:
            conn.close()


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    require_connection(URI)
    root = tmp_path_factory.mktemp("cpcrash")
    state, specs = root / "state", root / "specs"
    specs.mkdir()
    name = f"{PREFIX}cc{secrets.token_hex(3)}"
    with guest_space(name) as (directory, files):
        lab = Lab(name, directory, files, specs, lambda *argv: Ran(virtctl(state, *argv)))
        started = time.monotonic()
        walk = Walk(lab, state, OLD, False, {})
        yield walk
        print(f"\ncrash walk on qemu: {time.monotonic() - started:.0f}s in all; " +
              ", ".join(f"{k}: {v:.0f}s" for k, v in walk.seconds.items()))


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_on_qemu_then_the_next_apply_converges(walk: Walk, point: str) -> None:
    began = time.monotonic()
    lab, how = walk.lab, POINTS[point]
    if not walk.synced:  # the first point, or the one before failed
        lab.spec(walk.machine, keep=1, probe=False)
        ready = virtctl(walk.state, *walk.argv())
        assert ready.returncode == 0 and walk.journal() is None, ready.stdout + ready.stderr
    walk.synced = False
    target = NEW if walk.machine == OLD else OLD
    lab.spec(target, agent=how.healthy, timeout="300s" if how.healthy else "4s", keep=1,
             probe=how.probe)
    before = walk.checkpoints()
    mark = walk.state.parent / f"held-{secrets.token_hex(3)}"
    killed = apply_killed_when(walk.state, walk.argv(), mark.exists, deadline=600,
                               module="tests.integration.heldrun",
                               env={"VCTL_TEST_HOLD": how.hold,
                                    "VCTL_TEST_HOLD_NAME": lab.name,
                                    "VCTL_TEST_HOLD_MARK": str(mark)})
    assert killed, f"{point}: the run ended before it called {how.hold}"

    # Where the kill left the host: the point it was meant to be.
    left = walk.journal()
    assert (left or {}).get("stage", "") == how.left, left
    running, defined = walk.domain()
    if how.hold == "snapshots":
        assert not running and defined == walk.machine
    if how.hold == "create_snapshot":
        assert not running and walk.checkpoints() == before  # not taken
    if how.hold == "define":
        assert not running and defined == walk.machine and walk.checkpoints() == 1
    if how.hold == "delete_snapshot":
        assert walk.checkpoints() == before + 1  # the new one and the old
    if how.hold == "start":
        assert not running and defined == target
    if how.hold.startswith("destroy"):
        assert running and defined == target
    if how.hold == "revert_snapshot":
        assert not running and defined == target
    if how.hold == "start@agent_ping":
        assert not running and defined == walk.machine
    if how.left == "gate":
        assert running and lab.machine() == target

    lab.spec(target, keep=1, probe=False)  # the spec a user would have: healthy
    settled = virtctl(walk.state, *walk.argv())
    assert settled.returncode == 0, settled.stdout + settled.stderr
    if how.says:
        assert "a run was interrupted at" in settled.stdout, settled.stdout
        assert how.says in settled.stdout, settled.stdout
    else:
        assert "a run was interrupted" not in settled.stdout, settled.stdout
    diff = virtctl(walk.state, "diff", "-c", URI, "-f", str(lab.specs))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert walk.journal() is None
    assert lab.machine() == target and lab.machine(running=False) == target
    assert walk.checkpoints() == 1  # keep: 1
    walk.machine, walk.synced = target, True
    walk.seconds[point] = time.monotonic() - began
