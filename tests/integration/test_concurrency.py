"""Several `apply` runs and a `watch` on one host at once: the host lock serialises them,
so every object is defined and started exactly once (no interleaving), the store stays
whole, every run succeeds, and a run that had to wait said so.

The watcher and the applies are separate processes, started together; the test waits on
what they print and on the host's state, never on time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.crashkit import fleet_yaml, sim_store_problems, virtctl, virtctl_env
from virtctl.drivers import connect

APPLIES = 4


def events(state: Path) -> list[dict[str, str]]:
    log = state / "sim" / "default" / "events.log"
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_applies_and_a_watch_at_once_never_interleave(tmp_path: Path) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "fleet.yaml").write_text(fleet_yaml("k", networks=5, domains=40))
    watch = subprocess.Popen(
        [sys.executable, "-m", "virtctl", "watch", "-f", str(specs), "--interval", "1h",
         "--log-format", "json"],
        env=virtctl_env(state), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    applies = [subprocess.Popen([sys.executable, "-m", "virtctl", "apply", "-f", str(specs)],
                                env=virtctl_env(state), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(APPLIES)]
    try:
        outcomes = [p.communicate(timeout=600) for p in applies]
        assert watch.stderr is not None
        seen: list[dict[str, object]] = []
        for line in watch.stderr:  # until the watcher's first pass ends
            seen.append(json.loads(line))
            if seen[-1].get("event") == "reconciled":
                break
    finally:
        watch.terminate()
        watch.wait(timeout=60)
    for proc, (_out, err) in zip(applies, outcomes, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert seen[-1].get("msg") == "in sync"
    assert not [e for e in seen if e.get("level") == "error"], seen
    # Exactly one define and one start per object, whoever made them.
    made = [(e["type"], e["kind"], e["name"]) for e in events(state)]
    assert len(made) == len(set(made)) == 2 * (5 + 40), sorted(made)
    assert sim_store_problems(state) == []
    # The runs that found the host held said who held it.
    waited = [err for _out, err in outcomes if "waiting for the lock on" in err]
    assert all("held by pid" in err for err in waited)
    live = connect("sim:///default", env={"VIRTCTL_STATE_DIR": str(state)}).snapshot()
    assert sorted(live.domains) == [f"kd{d:02d}" for d in range(40)]
    assert virtctl(state, "diff", "-f", str(specs)).returncode == 0
