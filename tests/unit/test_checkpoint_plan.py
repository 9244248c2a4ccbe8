"""Issue 25, the pure parts: the spec keys (updatePolicy.checkpoint, health; the XML
runtime attributes), the post-pass that puts a checkpoint after the stop phase and a
health gate last around a disruptive change, its refusals (raw disks, recreates), the
flags, the drop before an undefine by deletePolicy, the names. The sim and
qemu:///system runs are tests/integration/test_checkpoints_*.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from virtctl.reconciler.checkpoint.actions import (
    CloseJournal,
    DropCheckpoints,
    HealthGate,
    TakeCheckpoint,
)
from virtctl.checkpoints import (
    Health,
    SnapshotInfo,
    checkpoint_name,
    ours_oldest_first,
    record_of,
    safety_of,
    CheckpointRecord,
)
from virtctl.reconciler.checkpoint.planning import (
    choose,
    drop_before_undefine,
    guard,
    plan_rollback,
)
from virtctl.errors import SpecError, SpecErrors
from virtctl.metadata import read_owner
from virtctl.model import DomainState, Live, LiveDomain
from virtctl.reconciler.plan.actions import Define, Shutdown, Start, phase_of
from virtctl.reconciler.load.load import load_specs
from virtctl.reconciler.plan.plan import Policy, plan
from virtctl.xmlutil import parse

DOMAIN = """\
kind: Domain
name: web
type: kvm
memory: 256MiB
state: {state}
os: {{type: hvm, machine: {machine}}}
updatePolicy: {policy}
{health}
disks:
  - {{type: file, device: disk, driver: {{name: qemu, type: {fmt}}},
     source: /img/web.{fmt}, target: vda, bus: virtio}}
  - {{type: file, device: cdrom, driver: {{name: qemu, type: raw}},
     source: /img/seed.iso, target: hdc, bus: ide, readonly: true}}
"""


def load(tmp_path: Path, *, machine: str = "pc", fmt: str = "qcow2", state: str = "running",
         policy: str = "{mode: restart, checkpoint: true}",
         health: str = "health: {agent: true, timeout: 90s}"):  # noqa: ANN201
    path = tmp_path / f"web-{machine}-{fmt}-{state}.yaml"
    path.write_text(DOMAIN.format(machine=machine, fmt=fmt, state=state, policy=policy,
                                  health=health))
    return load_specs([str(path)])


def host(desired, *, running: bool = True) -> Live:  # noqa: ANN001
    """The host after `desired` was applied: its Define's XML, running or not."""
    (define,) = [a for a in plan(desired, Live()).actions if isinstance(a, Define)]
    root = parse(define.xml)
    state = DomainState.RUNNING if running else DomainState.SHUTOFF
    return Live(domains={"web": LiveDomain(
        name="web", uuid=root.findtext("uuid") or "", xml=define.xml, state=state,
        autostart=False, persistent=True, id=1 if running else None,
        owner=read_owner(root), running_xml=define.xml if running else None)})


def guarded(desired, live, policy: Policy = Policy()):  # noqa: ANN001, ANN201
    return guard(plan(desired, live, policy=policy), desired, live, policy)


def test_the_spec_keys_become_typed_rules(tmp_path: Path) -> None:
    spec = load(tmp_path).domains["web"]
    assert spec.update_policy is not None and str(spec.update_policy) == "restart"
    rules = safety_of(spec.safety)
    assert rules.checkpoint and rules.keep == 5 and not rules.memory
    assert rules.health == Health(agent=True, timeout=90.0)
    spec = load(tmp_path, policy="{checkpoint: {keep: 2, memory: true}}",
                health="health: {tcp: {port: 22}, cloudInit: done, timeout: 2m}").domains["web"]
    rules = safety_of(spec.safety)
    assert spec.update_policy is None and rules.keep == 2 and rules.memory
    assert rules.health == Health(tcp_port=22, cloud_init=True, timeout=120.0)


def test_the_xml_runtime_element_carries_the_same_rules(tmp_path: Path) -> None:
    path = tmp_path / "web.xml"
    path.write_text(textwrap.dedent("""\
        <domain type='kvm'><name>web</name><memory unit='MiB'>256</memory>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1"
            update-policy="restart" checkpoint="yes" checkpoint-keep="3"
            health-agent="yes" health-timeout="45s"/></metadata>
        </domain>"""))
    rules = safety_of(load_specs([str(path)]).domains["web"].safety)
    assert rules.checkpoint and rules.keep == 3 and rules.health == Health(agent=True,
                                                                             timeout=45.0)
    path.write_text(path.read_text().replace('checkpoint-keep="3"', 'checkpoint-keep="0"'))
    with pytest.raises(SpecError) as err:
        load_specs([str(path)])
    assert "checkpoint-keep" in str(err.value) and "web.xml" in str(err.value)


@pytest.mark.parametrize(("health", "needle"), [
    ("health: {timeout: 10s}", "name at least one of"),
    ("health: {agent: true, timeout: later}", "health.timeout"),
    ("health: {tcp: {port: 0}}", "health.tcp.port"),
    ("health: {agent: yes-please}", "health.agent"),
])
def test_bad_health_is_refused_naming_the_key(tmp_path: Path, health: str,
                                              needle: str) -> None:
    with pytest.raises(SpecError) as err:
        load(tmp_path, health=health)
    assert needle in str(err.value) and ".yaml:" in str(err.value)


def test_a_restart_gets_a_checkpoint_after_the_stop_and_a_gate_last(tmp_path: Path) -> None:
    live = host(load(tmp_path, machine="pc"))
    planned = guarded(load(tmp_path, machine="q35"), live)
    kinds = [type(a).__name__ for a in planned.actions]
    assert kinds == ["Shutdown", "TakeCheckpoint", "Define", "Start", "HealthGate"]
    take = planned.actions[1]
    assert isinstance(take, TakeCheckpoint) and not take.memory and take.running
    assert take.reason == "before restart" and take.health == Health(agent=True, timeout=90.0)
    gate = planned.actions[-1]
    assert isinstance(gate, HealthGate) and gate.rollback and gate.after_failure
    assert any("checkpoint before restart, then health gate (agent)" in n
               for n in planned.notes)
    assert [str(phase_of(a)) for a in (take, gate)] == ["0", "20"]


def test_memory_state_puts_the_checkpoint_before_the_stop(tmp_path: Path) -> None:
    policy = "{mode: restart, checkpoint: {memory: true}}"
    live = host(load(tmp_path, machine="pc", policy=policy))
    planned = guarded(load(tmp_path, machine="q35", policy=policy), live)
    assert isinstance(planned.actions[0], TakeCheckpoint) and planned.actions[0].memory
    assert isinstance(planned.actions[1], Shutdown)


def test_flags_turn_it_on_off_and_rollback_off(tmp_path: Path) -> None:
    plain = "restart"
    live = host(load(tmp_path, machine="pc", policy=plain))
    new = load(tmp_path, machine="q35", policy=plain)
    assert not any(isinstance(a, TakeCheckpoint) for a in guarded(new, live).actions)
    on = guarded(new, live, Policy(checkpoint=True, rollback=False))
    gate = [a for a in on.actions if isinstance(a, HealthGate)]
    assert gate and not gate[0].rollback
    live = host(load(tmp_path, machine="pc"))
    off = guarded(load(tmp_path, machine="q35"), live, Policy(checkpoint=False))
    # The spec declares health: without a checkpoint its gate only reports.
    assert [type(a) for a in off.actions] == [Shutdown, Define, Start, HealthGate]
    assert not off.actions[-1].checkpointed and not off.actions[-1].rollback


def test_nothing_disruptive_needs_no_checkpoint(tmp_path: Path) -> None:
    desired = load(tmp_path, machine="pc")
    assert guarded(desired, host(desired)).actions == ()
    # A guest that stays off: its definition changes, nothing boots into it.
    off = load(tmp_path, machine="pc", state="shutoff")
    planned = guarded(load(tmp_path, machine="q35", state="shutoff"), host(off, running=False))
    assert not any(isinstance(a, TakeCheckpoint) for a in planned.actions)


def test_a_disk_change_to_a_stopped_guest_is_checkpointed_without_a_gate(
        tmp_path: Path) -> None:
    off = load(tmp_path, state="shutoff")
    new = load(tmp_path, state="shutoff")
    text = Path(next(iter(new.domains.values())).source.file).read_text()
    path = tmp_path / "moved.yaml"
    path.write_text(text.replace("/img/web.qcow2", "/img/web2.qcow2"))
    planned = guarded(load_specs([str(path)]), host(off, running=False))
    assert [type(a).__name__ for a in planned.actions] == ["TakeCheckpoint", "Define",
                                                           "CloseJournal"]
    assert planned.actions[0].reason.startswith("before disk change devices/disk[vda]")
    assert isinstance(planned.actions[-1], CloseJournal)


def test_raw_disks_are_refused_with_the_reason(tmp_path: Path) -> None:
    live = host(load(tmp_path, machine="pc", fmt="raw"))
    with pytest.raises(SpecErrors) as err:
        guarded(load(tmp_path, machine="q35", fmt="raw"), live)
    message = str(err.value)
    assert "domain/web: cannot take a checkpoint before this restart" in message
    assert "disk vda is raw: only qcow2 disks hold internal snapshots" in message
    assert "--no-checkpoint" in message and ".yaml" in message
    assert "hdc" not in message  # a read-only CD-ROM is left out of checkpoints
    planned = guarded(load(tmp_path, machine="q35", fmt="raw"), live, Policy(checkpoint=False))
    assert not any(isinstance(a, TakeCheckpoint) for a in planned.actions)


def test_undefined_guests_drop_their_checkpoints_by_delete_policy(tmp_path: Path) -> None:
    from virtctl.reconciler.plan.plan import plan_delete

    desired = load(tmp_path)
    live = host(desired)
    planned = plan_delete(desired, live)
    dropped = drop_before_undefine(planned, live, desired, {"web": True})
    kinds = [type(a).__name__ for a in dropped.actions]
    assert kinds == ["Shutdown", "DropCheckpoints", "Undefine"]
    assert dropped.actions[1].keep_data  # file disks, no volume says delete: retained
    assert drop_before_undefine(planned, live, desired, {"web": False}) == planned


def test_checkpoint_names_and_records() -> None:
    taken = {"virtctl-20261207T112233Z-0123456789ab"}
    assert checkpoint_name("20261207T112233Z", "0123456789abcdef", set()) == \
        "virtctl-20261207T112233Z-0123456789ab"
    assert checkpoint_name("20261207T112233Z", "0123456789abcdef", taken).endswith("-2")
    assert checkpoint_name("20261207T112233Z", "", set()).endswith("-nocommit")
    rec = CheckpointRecord(commit="abc", time="2026-12-07T11:22:33+00:00", spec="sha256:x",
                           reason="before restart")
    assert record_of(rec.text()) == rec and record_of("a user's note") is None
    snaps = (SnapshotInfo("virtctl-b", 2.0, rec.text()), SnapshotInfo("mine", 1.0, "x"),
             SnapshotInfo("virtctl-a", 1.0, rec.text()))
    assert [s.name for s in ours_oldest_first(snaps)] == ["virtctl-a", "virtctl-b"]
    assert choose(snaps, "web", None).name == "virtctl-b"
    assert choose(snaps, "web", "virtctl-a").name == "virtctl-a"
    with pytest.raises(SpecError, match="no checkpoint 'mine'"):
        choose(snaps, "web", "mine")  # not one of virtctl's


def test_a_rollback_plan_is_one_action_and_says_what(tmp_path: Path) -> None:
    live = host(load(tmp_path))
    rec = CheckpointRecord(commit="abc", time="T", spec="", reason="before restart")
    planned = plan_rollback(live.domains["web"], SnapshotInfo("virtctl-x", 1.0, rec.text()))
    (action,) = planned.actions
    assert action.verb == "rollback" and action.checkpoint == "virtctl-x" and action.start
    assert "virtctl-x (taken T, commit abc); then started" in planned.notes[0]
    assert isinstance(DropCheckpoints(kind=action.kind, name="web").verb, str)


def test_render_gives_back_the_keys_it_read(tmp_path: Path) -> None:
    from virtctl.render.specs import render_documents

    desired = load(tmp_path, policy="{mode: restart, checkpoint: {keep: 2, memory: true}}",
                   health="health: {tcp: {port: 22}, agent: true, timeout: 2m}")
    text = render_documents({"sim:///default": desired})
    again = tmp_path / "again.yaml"
    again.write_text(text.replace("connect: sim:///default\n", ""))
    back = load_specs([str(again)]).domains["web"]
    assert back.safety == desired.domains["web"].safety
    assert back.update_policy == desired.domains["web"].update_policy


def test_a_rollback_plan_shows_the_fields_it_changes(tmp_path: Path) -> None:
    """The definition now (q35, 256 MiB) against the checkpoint's (pc, 512 MiB, one more
    disk): changed, added and removed fields, rendered as any plan, text and JSON."""
    from virtctl.render.report import plan_json, plan_text

    now = host(load(tmp_path, machine="q35")).domains["web"]
    saved_spec = load(tmp_path, machine="pc")
    saved = host(saved_spec).domains["web"].xml.replace("262144", "524288").replace(
        "</devices>", "<disk type='file' device='disk'><source file='/img/b.qcow2'/>"
        "<target dev='vdb' bus='virtio'/></disk></devices>")
    rec = CheckpointRecord(commit="abc", time="T", spec="", reason="before restart")
    planned = plan_rollback(now, SnapshotInfo("virtctl-x", 1.0, rec.text(), definition=saved))
    changes = {c.path: (str(c.op), c.old, c.new) for c in planned.changes_of(now.key)}
    assert changes["os/type/@machine"] == ("change", "q35", "pc")
    assert changes["memory"] == ("change", "262144 KiB", "524288 KiB")
    assert changes["devices/disk[vdb]"][0] == "add"
    text = plan_text(planned)
    assert "~ domain/web  (rollback)" in text
    assert "    ~ os/type/@machine: q35 -> pc" in text
    assert "    + disk vdb" in text
    doc = plan_json(planned)["objects"][0]
    assert {"op": "change", "path": "os/type/@machine", "old": "q35",
            "new": "pc"} in doc["changes"]
    # Backwards: what the checkpoint lacks is removed.
    back = plan_rollback(LiveDomain(name="web", uuid=now.uuid, xml=saved,
                                    state=DomainState.SHUTOFF),
                         SnapshotInfo("virtctl-y", 1.0, rec.text(), definition=now.xml))
    assert ("remove", "devices/disk[vdb]") in {(str(c.op), c.path)
                                               for c in back.changes_of(now.key)}
    # The same definition: no field changes, and the note says only the disks go back.
    same = plan_rollback(now, SnapshotInfo("virtctl-z", 1.0, rec.text(), definition=now.xml))
    assert same.changes == () and "only the disks go back" in same.notes[0]


def test_a_change_that_failed_its_gate_is_held_back(tmp_path: Path) -> None:
    from virtctl.checkpoints import Failure

    live = host(load(tmp_path, machine="pc"))
    desired = load(tmp_path, machine="q35")
    dom, spec = live.domains["web"], desired.domains["web"]
    failure = Failure(guest="web", uuid=dom.uuid, digest=spec.digest,
                      base=dom.owner.spec_hash, checkpoint="virtctl-x", why="no agent",
                      time="T")
    planned = plan(desired, live)
    held = guard(planned, desired, live, Policy(), {"web": failure})
    assert held.actions == () and held.restarts == frozenset()
    assert [k.name for k, _ in held.held] == ["web"]
    assert "virtctl-x (no agent)" in held.held[0][1]
    assert held.changes_of(dom.key)  # still shown
    # --retry-failed, another spec, another guest or another base: made (and guarded).
    def other(**changed: str) -> Failure:
        return Failure(**{**{f: getattr(failure, f) for f in Failure.__dataclass_fields__},
                          **changed})

    for policy, record in ((Policy(retry_failed=True), failure),
                           (Policy(), other(digest="other")),
                           (Policy(), other(uuid="other")),
                           (Policy(), other(base="sha256:other"))):
        made = guard(planned, desired, live, policy, {"web": record})
        assert not made.held and any(isinstance(a, TakeCheckpoint) for a in made.actions)


def test_a_held_guest_left_off_by_its_rollback_is_still_started(tmp_path: Path) -> None:
    """Recovery rolls back with the guest left off, for the plan to start it: holding
    its change back must not keep it off."""
    from virtctl.checkpoints import Failure

    live = host(load(tmp_path, machine="pc"), running=False)
    desired = load(tmp_path, machine="q35")
    dom, spec = live.domains["web"], desired.domains["web"]
    failure = Failure(guest="web", uuid=dom.uuid, digest=spec.digest,
                      base=dom.owner.spec_hash, checkpoint="virtctl-x", why="no agent",
                      time="T")
    held = guard(plan(desired, live), desired, live, Policy(), {"web": failure})
    assert [type(a) for a in held.actions] == [Start] and held.held
