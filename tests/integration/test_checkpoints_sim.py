"""Checkpoints, the health gate and rollback on the sim (issue 25; docs/checkpoints.md).

The sim's guest is simulated (virtctl/checkpoint/sim_calls.py): its agent answers while
it runs, unless an `agent` fault says otherwise, here only under the new machine type
(`match`), so the old definition is healthy again after a rollback; a `boot` fault with
action `write` makes it write a disk as it boots, so a rollback that did not restore
the disk would show the new definition's bytes. The same scenarios on qemu:///system,
with a real guest, are in test_checkpoints_qemu.py; the kill-at-every-stage table is in
test_checkpoints_crash.py.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import Kind

POOL_TARGET = "/srv/cp-images"


def spec_text(machine: str, *, keep: int = 3, health: str = "{agent: true, timeout: 3s}",
              fmt: str = "qcow2", delete_policy: str = "retain", checkpoint: str = "",
              state: str = "running") -> str:
    rule = checkpoint or f"{{keep: {keep}}}"
    return textwrap.dedent(f"""\
        kind: StoragePool
        name: cpimages
        type: dir
        target: {{path: {POOL_TARGET}}}
        ---
        kind: Volume
        pool: cpimages
        name: web.img
        format: {fmt}
        capacity: 1MiB
        deletePolicy: {delete_policy}
        ---
        kind: Domain
        name: web
        type: kvm
        memory: 256MiB
        state: {state}
        os: {{type: hvm, machine: {machine}}}
        updatePolicy: {{mode: restart, checkpoint: {rule}}}
        health: {health}
        disks:
          - {{type: volume, device: disk, driver: {{name: qemu, type: {fmt}}},
             source: {{pool: cpimages, volume: web.img}}, target: vda, bus: virtio}}
        channels:
          - {{type: unix, target: {{type: virtio, name: org.qemu.guest_agent.0}}}}
        """)


@pytest.fixture
def put(specs: Path) -> Callable[..., Path]:
    def write(machine: str, **kw: Any) -> Path:
        (specs / "web.yaml").write_text(spec_text(machine, **kw))
        return specs

    return write


def disk(driver: SimDriver) -> bytes:
    return driver.download_volume("cpimages", "web.img", limit=1 << 21)[:6]


def write_disk(driver: SimDriver, data: bytes) -> None:
    import io

    driver.upload_volume("cpimages", "web.img", io.BytesIO(data), len(data))


def machine(driver: SimDriver, *, running: bool = False) -> str:
    from virtctl.xmlutil import parse

    xml = driver.definition(Kind.DOMAIN, "web", running=running)
    return parse(xml).find("os/type").get("machine")


def breaks_under_i440fx(driver: SimDriver, match: str = "i440fx") -> None:
    """The guest fails its agent under an i440fx machine (or `match`) and writes AFTER
    as it boots there; under q35 it is healthy and writes nothing."""
    driver.inject_fault("agent", Kind.DOMAIN, "web", action="fail")
    driver.inject_fault("boot", Kind.DOMAIN, "web", action="write")
    faults = driver.store.read_json("faults.json")
    for fault in faults:
        fault["match"] = match
        if fault["op"] == "boot":
            fault.update(target="vda", data="AFTER")
    driver.store.write_json("faults.json", faults)


def ours(driver: SimDriver) -> list[str]:
    return [s.name for s in driver.snapshots("web") if s.ours]


def test_a_change_that_passes_its_gate_keeps_the_new_definition(cli, sim, put) -> None:
    assert cli("apply", "-f", str(put("q35"))).code == 0
    driver = sim()
    assert ours(driver) == []  # a new guest: nothing to save
    write_disk(driver, b"BEFORE")
    result = cli("apply", "-f", str(put("pc")))
    assert result.code == 0, result.err
    assert "checkpoint before restart, then health gate (agent)" in result.out
    assert machine(driver) == "pc-i440fx-7.2" and machine(driver, running=True) == "pc-i440fx-7.2"
    assert len(ours(driver)) == 1
    listed = cli("checkpoints", "web", "-o", "json").json()["checkpoints"]
    assert [c["name"] for c in listed] == ours(driver)
    assert listed[0]["reason"] == "before restart"
    assert cli("diff", "-f", str(put("pc"))).code == 0  # converged
    assert not list((driver.store.root.parent.parent / "checkpoints").rglob("*.json"))


def test_a_change_that_fails_health_is_rolled_back(cli, sim, put) -> None:
    assert cli("apply", "-f", str(put("q35"))).code == 0
    driver = sim()
    write_disk(driver, b"BEFORE")
    breaks_under_i440fx(driver)
    result = cli("apply", "-f", str(put("pc")))
    assert result.code == 1
    assert "change failed health and was rolled back" in result.out
    assert "its guest agent does not answer" in result.out
    # The old definition runs again, and the disk holds what it held at the checkpoint
    # (the new definition's boot wrote AFTER over it).
    assert machine(driver) == "pc-q35-7.2" and machine(driver, running=True) == "pc-q35-7.2"
    assert driver.domain_state("web").active
    assert disk(driver) == b"BEFORE"
    # JSON says the same, with exit 1 (tried again on request: else it is held back).
    again = cli("apply", "-f", str(put("pc")), "--retry-failed", "-o", "json")
    assert again.code == 1
    gate = [r for r in again.json()["report"]["results"] if r["op"] == "health-gate"]
    assert gate[0]["outcome"] == "failed"
    assert "change failed health and was rolled back" in gate[0]["error"]["message"]
    assert machine(driver) == "pc-q35-7.2" and disk(driver) == b"BEFORE"


def test_the_boot_write_fault_is_real(cli, sim, put) -> None:
    """Without a checkpoint the new definition's boot does write the disk: the rollback
    test above would see AFTER had nothing restored it. The guest declares health, so
    the change still waits for the verdict and fails, with nothing to roll back to."""
    assert cli("apply", "-f", str(put("q35"))).code == 0
    driver = sim()
    write_disk(driver, b"BEFORE")
    breaks_under_i440fx(driver)
    result = cli("apply", "-f", str(put("pc", health="{agent: true, timeout: 1s}")),
                 "--no-checkpoint")
    assert result.code == 1, result.out + result.err
    assert "(shutdown, redefine, start, health-gate)" in result.out
    assert "no checkpoint was taken" in result.out and "not rolled back" in result.out
    assert disk(driver) == b"AFTERE"  # AFTER written over BEFORE
    assert machine(driver, running=True) == "pc-i440fx-7.2"  # left as it is
    assert ours(driver) == []


def _without_checkpoints(text: str) -> str:
    return text.replace("updatePolicy: {mode: restart, checkpoint: {keep: 3}}",
                        "updatePolicy: restart")


def test_health_without_checkpoints_gates_and_reports_in_json(cli, sim, specs) -> None:
    """`health:` and no checkpoint rule: a restart waits for the verdict; healthy, exit 0;
    not, exit 1 in JSON too, the guest left as it is (no rollback is possible)."""
    health = "{agent: true, timeout: 1s}"
    (specs / "web.yaml").write_text(_without_checkpoints(spec_text("q35", health=health)))
    created = cli("apply", "-f", str(specs))
    assert created.code == 0 and "health-gate" not in created.out  # a new guest: no gate
    driver = sim()
    (specs / "web.yaml").write_text(_without_checkpoints(spec_text("pc", health=health)))
    plan = cli("diff", "-f", str(specs), "-o", "json").json()
    assert [s["op"] for s in plan["objects"][0]["steps"]] == [
        "shutdown", "define", "start", "health-gate"]
    assert any("without a checkpoint" in n for n in plan["notes"])
    passed = cli("apply", "-f", str(specs), "-o", "json")
    assert passed.code == 0, passed.out + passed.err
    gate = [r for r in passed.json()["report"]["results"] if r["op"] == "health-gate"]
    assert gate[0]["outcome"] == "done" and "healthy (agent)" in gate[0]["detail"]
    # Broken under q35 now: going back to it fails the gate, and nothing is rolled back.
    breaks_under_i440fx(driver, match="q35")
    (specs / "web.yaml").write_text(_without_checkpoints(spec_text("q35", health=health)))
    failed = cli("apply", "-f", str(specs), "-o", "json")
    assert failed.code == 1
    doc = failed.json()
    gate = [r for r in doc["report"]["results"] if r["op"] == "health-gate"]
    assert gate[0]["outcome"] == "failed"
    assert "its guest agent does not answer" in gate[0]["error"]["message"]
    assert "not rolled back" in gate[0]["error"]["message"]
    assert machine(driver, running=True) == "pc-q35-7.2" and ours(driver) == []
    # Nothing is held back: the definition is the spec's, the next plan is empty.
    assert cli("diff", "-f", str(specs)).code == 0


def test_a_failed_change_is_held_back_until_the_spec_changes(cli, sim, put) -> None:
    health = "{agent: true, timeout: 1s}"
    assert cli("apply", "-f", str(put("q35", health=health))).code == 0
    driver = sim()
    breaks_under_i440fx(driver)
    assert cli("apply", "-f", str(put("pc", health=health))).code == 1  # rolled back
    assert len(ours(driver)) == 1 and machine(driver) == "pc-q35-7.2"
    # Applied again: not tried again (no checkpoint, no restart), and a failure.
    again = cli("apply", "-f", str(put("pc", health=health)))
    assert again.code == 1, again.out + again.err
    assert "! domain/web" in again.out and "held back: this change failed its health gate" \
        in again.out and "its guest agent does not answer" in again.out
    assert "~ os/type/@machine: pc-q35-7.2 -> pc  [restart]" in again.out
    assert "error: domain/web: its change failed its health gate" in again.err
    assert len(ours(driver)) == 1 and machine(driver, running=True) == "pc-q35-7.2"
    # diff and the dry run say so too, exit 1, in text and JSON.
    diff = cli("diff", "-f", str(put("pc", health=health)), "-o", "json")
    assert diff.code == 1
    doc = diff.json()
    assert doc["inSync"] is False and doc["summary"]["held"] == 1
    assert doc["objects"][0]["action"] == "none" and doc["objects"][0]["steps"] == []
    assert "failed its health gate" in doc["objects"][0]["held"]
    assert cli("apply", "-f", str(put("pc", health=health)), "--dry-run").code == 1
    # On request it is made again (a new checkpoint; it fails and rolls back again).
    retry = cli("apply", "-f", str(put("pc", health=health)), "--retry-failed")
    assert retry.code == 1 and "change failed health and was rolled back" in retry.out
    assert len(ours(driver)) == 2
    # A changed spec is a new change: made (here healthy, under q35 with more memory).
    changed = put("q35", health=health)
    (changed / "web.yaml").write_text((changed / "web.yaml").read_text().replace(
        "memory: 256MiB", "memory: 384MiB"))
    result = cli("apply", "-f", str(changed))
    assert result.code == 0, result.out + result.err
    assert "held back" not in result.out
    assert cli("diff", "-f", str(changed)).code == 0


def test_watch_does_not_retry_a_failed_change_on_every_pass(cli, sim, put, state_dir) -> None:
    """The watcher's loop: one failed change is one checkpoint and one rollback, not one
    per pass; it says so once in its log and reports the pass failed; a spec change
    lifts it."""
    import io

    from virtctl.reconciler.plan.policy import Policy
    from virtctl.watch.fleet import Catalog, HostSpecs
    from virtctl.watch.logs import Log, LogFormat
    from virtctl.watch.loop import Watcher
    from virtctl.watch.metrics import WatchMetrics
    from virtctl.watch.sources import Debouncer, Expectations, Inbox, Trigger

    health = "{agent: true, timeout: 1s}"
    folder = put("q35", health=health)
    assert cli("apply", "-f", str(folder)).code == 0
    driver = sim()
    breaks_under_i440fx(driver)
    put("pc", health=health)
    log = io.StringIO()
    journal = Log(log, fmt=LogFormat("json"))
    metrics = WatchMetrics()
    catalog = Catalog([str(folder)], default="sim:///default", journal=journal,
                      metrics=metrics)
    watcher = Watcher("sim:///default", HostSpecs(catalog, "sim:///default"),
                      Inbox(debounce=Debouncer(), expectations=Expectations()),
                      journal=journal, metrics=metrics, policy=Policy(), interval=300.0,
                      driver=driver, lock_root=state_dir)
    try:
        watcher._round({Trigger.START})  # checkpoint, change, gate fails, rollback
        assert len(ours(driver)) == 1 and machine(driver, running=True) == "pc-q35-7.2"
        for _ in range(3):
            result, _passes = watcher._guarded_passes(Trigger.RESYNC)
            assert result.failed and not result.in_sync
            assert "domain/web: change held back" in result.error
        assert len(ours(driver)) == 1 and machine(driver, running=True) == "pc-q35-7.2"
        assert log.getvalue().count('"change-held"') == 1
        # The spec goes back to q35: in sync again.
        put("q35", health=health)
        catalog.changed()
        result, _passes = watcher._guarded_passes(Trigger.SPEC)
        assert result.in_sync, log.getvalue()
    finally:
        watcher.close()


def test_no_rollback_leaves_the_guest_for_inspection(cli, sim, put) -> None:
    assert cli("apply", "-f", str(put("q35"))).code == 0
    driver = sim()
    breaks_under_i440fx(driver)
    result = cli("apply", "-f", str(put("pc")), "--no-rollback")
    assert result.code == 1
    assert "left as it is for inspection (--no-rollback)" in result.out
    assert machine(driver, running=True) == "pc-i440fx-7.2"
    # ...and `rollback` restores it by hand, planned first, field by field.
    dry = cli("rollback", "web", "--dry-run")
    assert dry.code == 2 and "(rollback)" in dry.out
    assert "    ~ os/type/@machine: pc-i440fx-7.2 -> pc-q35-7.2" in dry.out, dry.out
    doc = cli("rollback", "web", "--dry-run", "-o", "json").json()
    assert {"op": "change", "path": "os/type/@machine", "old": "pc-i440fx-7.2",
            "new": "pc-q35-7.2"} in doc["objects"][0]["changes"]
    assert machine(driver) == "pc-i440fx-7.2"
    done = cli("rollback", "web", "-o", "json")
    assert done.code == 0, done.err
    assert done.json()["report"]["done"] == 1
    assert done.json()["objects"][0]["changes"] == doc["objects"][0]["changes"]
    assert machine(driver, running=True) == "pc-q35-7.2"


def test_rollback_to_an_older_checkpoint(cli, sim, put) -> None:
    assert cli("apply", "-f", str(put("q35"))).code == 0
    driver = sim()
    write_disk(driver, b"FIRST!")
    assert cli("apply", "-f", str(put("pc"))).code == 0  # checkpoint 1: q35, FIRST!
    write_disk(driver, b"SECOND")
    assert cli("apply", "-f", str(put("q35"))).code == 0  # checkpoint 2: pc, SECOND
    first, second = ours(driver)
    write_disk(driver, b"THIRD!")
    assert cli("rollback", "web", "--to", "nope").code == 1
    result = cli("rollback", "web", "--to", first)
    assert result.code == 0, result.err
    assert machine(driver, running=True) == "pc-q35-7.2" and disk(driver) == b"FIRST!"
    assert cli("rollback", "web", "--to", second).code == 0
    assert machine(driver, running=True) == "pc-i440fx-7.2" and disk(driver) == b"SECOND"
    # The spec still says q35: apply puts it back (under a new checkpoint).
    assert cli("apply", "-f", str(put("q35"))).code == 0
    assert machine(driver, running=True) == "pc-q35-7.2"


def test_retention_deletes_the_oldest_first(cli, sim, put) -> None:
    assert cli("apply", "-f", str(put("q35", keep=2))).code == 0
    driver = sim()
    seen: list[str] = []
    for target in ("pc", "q35", "pc", "q35"):
        result = cli("apply", "-f", str(put(target, keep=2)))
        assert result.code == 0, result.err
        seen.append(ours(driver)[-1])
        assert len(ours(driver)) <= 2
    assert ours(driver) == seen[-2:]  # the two newest; the oldest went first


def test_raw_disks_are_refused_unless_no_checkpoint(cli, sim, put) -> None:
    assert cli("apply", "-f", str(put("q35", fmt="raw"))).code == 0
    driver = sim()
    result = cli("apply", "-f", str(put("pc", fmt="raw")))
    assert result.code == 1
    assert "disk vda is raw: only qcow2 disks hold internal snapshots" in result.err
    assert "web.yaml" in result.err
    assert machine(driver) == "pc-q35-7.2"  # nothing applied
    assert cli("apply", "-f", str(put("pc", fmt="raw")), "--no-checkpoint").code == 0
    assert machine(driver) == "pc-i440fx-7.2"


def test_apply_checkpoint_flag_without_the_spec_rule(cli, sim, specs) -> None:
    text = spec_text("q35").replace("updatePolicy: {mode: restart, checkpoint: {keep: 3}}",
                                    "updatePolicy: restart")
    (specs / "web.yaml").write_text(text)
    assert cli("apply", "-f", str(specs)).code == 0
    (specs / "web.yaml").write_text(text.replace("machine: q35", "machine: pc"))
    plain = cli("apply", "-f", str(specs), "--dry-run")
    assert "(shutdown, redefine, start, health-gate)" in plain.out  # health: no checkpoint
    result = cli("apply", "-f", str(specs), "--checkpoint")
    assert result.code == 0, result.err
    assert len(ours(sim())) == 1


@pytest.mark.parametrize("policy", ["retain", "delete"])
def test_checkpoints_go_with_the_guest_only_when_its_volumes_are_deleted(
        cli, sim, put, state_dir, policy) -> None:
    assert cli("apply", "-f", str(put("q35", delete_policy=policy))).code == 0
    assert cli("apply", "-f", str(put("pc", delete_policy=policy))).code == 0
    driver = sim()
    assert len(ours(driver)) == 1
    result = cli("delete", "-f", str(put("pc", delete_policy=policy)))
    assert result.code == 0, result.out + result.err
    assert driver.domain_state("web") is None
    kept = state_dir / "sim" / "default" / "snapshots-kept"
    if policy == "retain":  # forgotten by libvirt, the data left in the volume
        assert "forget-checkpoints" in result.out
        assert len(list(kept.glob("*.json"))) == 1
    else:
        assert "drop-checkpoints" in result.out
        assert not kept.exists() or not list(kept.glob("*.json"))


def test_health_needs_a_probe_and_a_sane_timeout(cli, specs) -> None:
    for health, needle in (("{timeout: 10s}", "name at least one of"),
                           ("{agent: true, timeout: soon}", "health.timeout"),
                           ("{agent: true, timeout: 0}", "health.timeout")):
        (specs / "web.yaml").write_text(spec_text("pc", health=health))
        result = cli("validate", "-f", str(specs))
        assert result.code == 1, health
        assert needle in result.err and "web.yaml:" in result.err, result.err


def test_diff_and_dry_run_show_the_guard(cli, put) -> None:
    assert cli("apply", "-f", str(put("q35"))).code == 0
    result = cli("diff", "-f", str(put("pc")), "-o", "json")
    assert result.code == 2
    steps = [s["op"] for s in result.json()["objects"][0]["steps"]]
    assert steps == ["shutdown", "checkpoint", "define", "start", "health-gate"]
    plain = cli("diff", "-f", str(put("pc")), "--no-checkpoint", "-o", "json").json()
    assert [s["op"] for s in plain["objects"][0]["steps"]] == [
        "shutdown", "define", "start", "health-gate"]  # health declared: it still gates
    assert json.dumps(result.json()).count("health-gate") == 1
