"""A run killed (SIGKILL) at ten points between checkpoint and health verdict, on the
sim (issue 25; the crash table of docs/checkpoints.md). Each point is held open by a
stalled sim call just after it (faults.json) and recognised from outside, by the
journal's stage and the guest's record; the kill comes as soon as it is seen. Then the
guest is made healthy (faults cleared) and the next `apply` must settle what the killed
run left (finish the gate or roll back, and say which) and converge: exit 0, `diff` in
sync, no journal left, the store whole, no more checkpoints than `keep`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.crashkit import (
    apply_killed_when,
    sim_events,
    sim_store_problems,
    virtctl,
)

pytestmark = pytest.mark.slow

SPEC = """\
kind: StoragePool
name: cpimages
type: dir
target: {{path: /srv/cp-crash}}
---
kind: Volume
pool: cpimages
name: web.img
format: qcow2
capacity: 1MiB
---
kind: Domain
name: web
type: kvm
memory: 256MiB
os: {{type: hvm, machine: {machine}}}
updatePolicy: {{mode: restart, checkpoint: {{keep: {keep}}}}}
health: {{agent: true, timeout: {timeout}}}
disks:
  - {{type: volume, device: disk, driver: {{name: qemu, type: qcow2}},
     source: {{pool: cpimages, volume: web.img}}, target: vda, bus: virtio}}
channels:
  - {{type: unix, target: {{type: virtio, name: org.qemu.guest_agent.0}}}}
"""

STALL = 60.0  # seconds a held call waits: the kill always comes first


class Host:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.sim = state / "sim" / "default"

    def journal(self) -> dict[str, Any] | None:
        for path in (self.state / "checkpoints").rglob("web.json"):
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
        return None

    def stage(self) -> str:
        entry = self.journal()
        return entry["stage"] if entry else ""

    def record(self) -> dict[str, Any]:
        try:
            return json.loads((self.sim / "domains" / "web.json").read_text())
        except (OSError, ValueError):
            return {}

    def machine(self) -> str:
        xml = self.record().get("xml", "")
        return "i440fx" if "i440fx" in xml else "q35" if "q35" in xml else ""

    def state_of(self) -> str:
        return self.record().get("state", "")

    def snapshots(self) -> int:
        return sum(1 for _ in (self.sim / "snapshots").rglob("*.json"))

    def faults(self, *faults: dict[str, Any]) -> None:
        (self.sim / "faults.json").write_text(json.dumps(
            [{"kind": "domain", "name": "web", **f} for f in faults]))


def stall(op: str) -> dict[str, Any]:
    return {"op": op, "action": "stall", "seconds": STALL}


UNHEALTHY = {"op": "agent", "action": "fail", "match": "i440fx"}

# name -> (faults while the killed run goes, the point it is killed at, keep)
Point = tuple[list[dict[str, Any]], Callable[[Host, int], bool], int]
POINTS: dict[str, Point] = {
    "stopped, before the checkpoint": (
        [stall("create_snapshot")], lambda h, ev: h.state_of() == "shutoff", 3),
    "journal written, checkpoint being taken": (
        [stall("create_snapshot")], lambda h, ev: h.stage() == "checkpoint", 3),
    "checkpoint taken, before the define": (
        [stall("define")], lambda h, ev: h.stage() == "changing", 3),
    "old checkpoint being deleted (retention)": (
        [stall("delete_snapshot")], lambda h, ev: h.snapshots() == 2, 1),
    "defined, before the start": (
        [stall("start")], lambda h, ev: h.machine() == "i440fx", 3),
    "started, gate waiting on a slow agent": (
        [{"op": "agent", "action": "stall", "seconds": STALL}],
        lambda h, ev: h.stage() == "gate", 3),
    "gate failing": (
        [UNHEALTHY], lambda h, ev: h.stage() == "gate", 3),
    "rollback begun, before the destroy": (
        [UNHEALTHY, stall("destroy")], lambda h, ev: h.stage() == "rollback", 3),
    "rollback: destroyed, before the revert": (
        [UNHEALTHY, stall("revert_snapshot")],
        lambda h, ev: h.stage() == "rollback" and h.state_of() == "shutoff", 3),
    "rollback: reverted, before the start": (
        [UNHEALTHY, stall("start")],
        lambda h, ev: h.stage() == "rollback" and h.machine() == "q35"
        and h.state_of() == "shutoff", 3),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_between_checkpoint_and_verdict(tmp_path: Path, point: str) -> None:
    faults, reached, keep = POINTS[point]
    state = tmp_path / "state"
    specs = tmp_path / "specs"
    specs.mkdir()
    host = Host(state)
    timeout = "30s" if point == "gate failing" else "3s"

    def put(machine: str) -> str:
        (specs / "web.yaml").write_text(SPEC.format(machine=machine, keep=keep,
                                                    timeout=timeout))
        return str(specs)

    first = virtctl(state, "apply", "-f", put("q35"))
    assert first.returncode == 0, first.stderr
    if keep == 1:  # an older checkpoint for retention to delete
        assert virtctl(state, "apply", "-f", put("pc")).returncode == 0
        assert virtctl(state, "apply", "-f", put("q35")).returncode == 0
        assert host.snapshots() == 1
    events = sim_events(state)
    host.faults(*faults)
    killed = apply_killed_when(state, ["apply", "-f", put("pc")],
                               lambda: reached(host, events()), deadline=240)
    assert killed, f"{point}: the run ended before the point was seen"
    left = host.journal()
    host.faults()  # the guest is healthy again, nothing stalls

    settled = virtctl(state, "apply", "-f", put("pc"))
    assert settled.returncode == 0, f"{point}: {settled.stdout}{settled.stderr}"
    if left is not None:
        assert "a run was interrupted at" in settled.stdout, settled.stdout
        assert any(what in settled.stdout for what in (
            "finished the health gate", "rolled back to", "finished rolling back",
            "checkpoint was never taken")), settled.stdout
    diff = virtctl(state, "diff", "-f", put("pc"))
    assert diff.returncode == 0, f"{point}: {diff.stdout}{diff.stderr}"
    assert host.journal() is None
    assert host.machine() == "i440fx" and host.state_of() == "running"
    assert host.snapshots() <= keep + (1 if point.startswith("old checkpoint") else 0)
    assert sim_store_problems(state) == []
    listed = virtctl(state, "checkpoints", "-o", "json")
    assert listed.returncode == 0
    assert all(c["name"].startswith("virtctl-") for c in json.loads(listed.stdout)["checkpoints"])
