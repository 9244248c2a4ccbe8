"""The crash table on qemu:///system with a real guest (docs/checkpoints.md): an apply
killed (SIGKILL) while the change is being made, while the gate waits for a booting or
a failing guest, and while a rollback runs; then the next apply settles the journal
and converges. The stages are seen from outside, by the journal (the sim's version,
test_checkpoints_crash.py, holds ten points open with stalled calls, which libvirt has
no way to do)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.crashkit import apply_killed_when, virtctl
from tests.integration.test_checkpoints_qemu import NEW, OLD, URI, Lab, booted, lab  # noqa: F401

pytestmark = pytest.mark.slow


def stage(state: Path, name: str) -> str:
    for path in (state / "checkpoints").rglob(f"{name}.json"):
        try:
            return json.loads(path.read_text())["stage"]
        except (OSError, ValueError, KeyError):
            return ""
    return ""


# point -> (the new definition is healthy, the stage it is killed at)
POINTS: dict[str, tuple[bool, str]] = {
    "making the change": (True, "changing"),
    "gate, guest booting": (True, "gate"),
    "gate, guest failing": (False, "gate"),
    "rolling back": (False, "rollback"),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_on_qemu_then_the_next_apply_converges(lab: Lab, state_dir: Path,  # noqa: F811
                                                      point: str) -> None:
    healthy, at = POINTS[point]
    lab.spec(OLD)
    first = lab.apply()
    assert first.code == 0, first.out + first.err
    booted(lab, 1)
    lab.spec(NEW, agent=healthy, timeout="300s" if healthy else "20s")
    argv = ["apply", "-c", URI, "--shutdown-timeout", "120", "-f", str(lab.specs)]
    killed = apply_killed_when(state_dir, argv, lambda: stage(state_dir, lab.name) == at,
                               deadline=600)
    assert killed, f"{point}: the run ended before stage {at!r}"
    lab.spec(NEW)  # healthy now
    settled = virtctl(state_dir, *argv)
    assert settled.returncode == 0, settled.stdout + settled.stderr
    assert "a run was interrupted at" in settled.stdout, settled.stdout
    assert any(what in settled.stdout for what in (
        "finished the health gate", "rolled back to", "finished rolling back")), settled.stdout
    diff = virtctl(state_dir, "diff", "-c", URI, "-f", str(lab.specs))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert stage(state_dir, lab.name) == ""
    assert lab.machine() == NEW
    assert 1 <= len(lab.checkpoints()) <= 3
