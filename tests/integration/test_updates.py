"""Safe updates end to end on the sim: restart-pending, --allow-restart and updatePolicy,
the stop ladder with a guest that ignores shutdown, live memory, power state enforced,
drift, field removal, and the versioned JSON plan. Every apply ends with a fresh plan
that is empty."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from virtctl import api
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import DomainState, Kind
from virtctl.reconciler.apply.apply import Clock, Outcome
from virtctl.xmlutil import parse

D = Kind.DOMAIN
Open = Callable[..., SimDriver]


def web_yaml(*, memory: str = "256MiB", current: str | None = None, vcpus: int = 1,
             state: str = "running", extra: str = "") -> str:
    cur = f"currentMemory: {current}\n" if current else ""
    return textwrap.dedent(f"""\
        kind: Domain
        name: web
        type: kvm
        memory: {memory}
        vcpus: {vcpus}
        state: {state}
        os: {{type: hvm}}
        """) + cur + extra


def write(specs: Path, text: str) -> Path:
    (specs / "web.yaml").write_text(text)
    return specs


def in_sync(cli: Callable[..., object], specs: Path) -> None:
    result = cli("diff", "-f", str(specs))
    assert result.code == 0, result.out  # type: ignore[attr-defined]


def test_restart_pending_is_reported_by_apply_diff_and_get(cli, specs: Path) -> None:
    assert cli("apply", "-f", str(write(specs, web_yaml()))).code == 0
    write(specs, web_yaml(vcpus=2))
    applied = cli("apply", "-f", str(specs))
    assert applied.code == 0, applied.out + applied.err
    assert "~ vcpu: 1 -> 2  [restart]" in applied.out
    assert "restart pending (vcpu)" in applied.out
    assert "0 running guests to restart" in applied.out
    diff = cli("diff", "-f", str(specs))
    assert diff.code == 0 and "restart pending (vcpu)" in diff.out
    (row,) = cli("get", "domains", "-o", "json").json()
    assert row["pending"] == "restart" and row["state"] == "running"
    assert "restart" in cli("get", "domains").out.splitlines()[1]
    doc = cli("diff", "-f", str(specs), "-o", "json").json()
    (obj,) = doc["objects"]
    assert obj["action"] == "none" and obj["restartPending"][0]["path"] == "vcpu"
    # Allowed now: stop, start; the guest runs its definition and nothing is pending.
    restarted = cli("apply", "-f", str(specs), "--allow-restart")
    assert restarted.code == 0, restarted.out + restarted.err
    assert "1 running guest to restart" in restarted.out
    (row,) = cli("get", "domains", "-o", "json").json()
    assert row["pending"] is None and row["state"] == "running"
    again = cli("diff", "-f", str(specs), "--allow-restart")
    assert again.code == 0 and again.out == "No changes: the host matches the specs.\n"


def test_update_policy_restart_in_yaml_restarts_without_the_flag(cli, specs: Path,
                                                                  sim: Open) -> None:
    policy = "updatePolicy: restart\nshutdownTimeout: 5\n"
    assert cli("apply", "-f", str(write(specs, web_yaml(extra=policy)))).code == 0
    before = sim().snapshot().domains["web"].id
    write(specs, web_yaml(memory="512MiB", extra=policy))
    result = cli("apply", "-f", str(specs))
    assert result.code == 0, result.out + result.err
    after = sim().snapshot().domains["web"]
    assert after.state is DomainState.RUNNING and after.id != before
    assert after.running_xml is not None and "524288" in after.running_xml
    in_sync(cli, specs)


def test_update_policy_next_boot_in_xml_overrides_allow_restart(
        cli, specs: Path, kit: SimpleNamespace, sim: Open) -> None:
    xml = kit.domain_xml("web")
    rt = ('<metadata><virtctl:runtime xmlns:virtctl="https://virtctl.dev/xmlns/1" '
          'update-policy="next-boot"/></metadata>')
    xml = xml.replace("<memory", rt + "<memory", 1)
    kit.write(specs, "web.xml", xml)
    assert cli("apply", "-f", str(specs)).code == 0
    before = sim().snapshot().domains["web"].id
    kit.write(specs, "web.xml", xml.replace(">256<", ">512<"))
    result = cli("apply", "-f", str(specs), "--allow-restart")
    assert result.code == 0 and "restart pending (memory)" in result.out
    assert sim().snapshot().domains["web"].id == before


def test_restart_of_a_guest_ignoring_shutdown_fails_without_force(specs: Path,
                                                                   sim: Open) -> None:
    write(specs, web_yaml(extra="updatePolicy: restart\nshutdownTimeout: 3\n"))
    driver = sim()
    api.reconcile(api.load([str(specs)]), driver)
    driver.inject_fault("shutdown", D, "web", action="ignore")
    write(specs, web_yaml(vcpus=2, extra="updatePolicy: restart\nshutdownTimeout: 3\n"))
    desired = api.load([str(specs)])
    clock = FakeClock()
    result = api.reconcile(desired, driver, clock=clock.clock)
    outcomes = {r.action.verb: r.outcome for r in result.report.results}
    assert outcomes == {"shutdown": Outcome.FAILED, "define": Outcome.SKIPPED,
                        "start": Outcome.SKIPPED}
    assert 3 <= clock.t < 5  # the per-object timeout, not the default 60 s
    assert driver.snapshot().domains["web"].state is DomainState.RUNNING
    # With --force-stop the ladder ends in destroy, and the restart completes.
    forced = api.reconcile(desired, driver, policy=api.Policy(force_stop=True),
                           clock=FakeClock().clock)
    assert forced.report.return_code == 0 and forced.remaining.empty
    shutdown = forced.report.results[0]
    assert shutdown.action.verb == "shutdown" and "destroyed" in shutdown.detail
    dom = driver.snapshot().domains["web"]
    assert dom.state is DomainState.RUNNING and "<vcpu>2</vcpu>" in (dom.running_xml or "")
    assert api.plan(desired, driver).empty and not api.plan(desired, driver).pending


def test_current_memory_is_set_live_on_the_running_guest(cli, specs: Path, sim: Open) -> None:
    assert cli("apply", "-f", str(write(specs, web_yaml(current="256MiB")))).code == 0
    write(specs, web_yaml(current="128MiB"))
    result = cli("apply", "-f", str(specs))
    assert result.code == 0 and "[live]" in result.out and "set memory 131072 KiB" in result.out
    dom = sim().snapshot().domains["web"]
    running = parse(dom.running_xml or "")
    assert running.findtext("currentMemory") == "131072"
    in_sync(cli, specs)
    assert cli("get", "domains", "-o", "json").json()[0]["pending"] is None


def test_power_state_is_enforced(specs: Path, sim: Open) -> None:
    write(specs, web_yaml())
    driver = sim()
    desired = api.load([str(specs)])
    api.reconcile(desired, driver)
    driver.destroy(D, "web")  # stopped outside virtctl
    planned = api.plan(desired, driver)
    assert [a.verb for a in planned.actions] == ["start"]
    assert planned.changes[0][1][0].origin == "drift"
    assert api.reconcile(desired, driver).remaining.empty
    assert driver.snapshot().domains["web"].state is DomainState.RUNNING
    write(specs, web_yaml(state="shutoff"))
    off = api.load([str(specs)])
    result = api.reconcile(off, driver, clock=FakeClock().clock)
    assert [r.action.verb for r in result.report.results] == ["shutdown"]
    assert result.remaining.empty
    assert driver.snapshot().domains["web"].state is DomainState.SHUTOFF


def test_drift_is_reported_and_undone(cli, specs: Path, sim: Open) -> None:
    assert cli("apply", "-f", str(write(specs, web_yaml(state="shutoff")))).code == 0
    driver = sim()
    dom = driver.snapshot().domains["web"]
    driver.define(D, dom.xml.replace("<vcpu placement=\"static\">1</vcpu>",
                                     "<vcpu placement=\"static\">4</vcpu>")
                  .replace("<vcpu>1</vcpu>", "<vcpu>4</vcpu>"))
    diff = cli("diff", "-f", str(specs), "-o", "json")
    assert diff.code == 2
    (change,) = diff.json()["objects"][0]["changes"]
    assert (change["path"], change["old"], change["new"], change["origin"], change["class"]) == (
        "vcpu", "4", "1", "drift", "next-boot")
    assert cli("apply", "-f", str(specs)).code == 0
    in_sync(cli, specs)


def test_a_disk_removed_from_the_spec_is_removed_from_the_guest(cli, specs: Path,
                                                                 sim: Open) -> None:
    disks = ("disks:\n  - {type: file, device: disk, source: /d/a.img, target: vda}\n"
             "  - {type: file, device: disk, source: /d/b.img, target: vdb}\n")
    assert cli("apply", "-f", str(write(specs, web_yaml(extra=disks)))).code == 0
    write(specs, web_yaml(extra=disks.splitlines()[0] + "\n" + disks.splitlines()[1] + "\n"))
    result = cli("apply", "-f", str(specs))
    assert result.code == 0, result.out + result.err
    assert "- disk vdb  [restart]" in result.out
    assert "restart pending (devices/disk[vdb])" in result.out
    dom = sim().snapshot().domains["web"]
    assert [t.get("dev") for t in parse(dom.xml).iterfind("devices/disk/target")] == ["vda"]
    assert cli("apply", "-f", str(specs), "--allow-restart").code == 0
    dom = sim().snapshot().domains["web"]
    assert "vdb" not in (dom.running_xml or "")
    assert cli("get", "domains", "-o", "json").json()[0]["pending"] is None
    in_sync(cli, specs)


def test_json_plan_document_shape(cli, specs: Path) -> None:
    assert cli("apply", "-f", str(write(specs, web_yaml()))).code == 0
    write(specs, web_yaml(memory="512MiB"))
    doc = cli("apply", "-f", str(specs), "--allow-restart", "-o", "json").json()
    json.dumps(doc)
    assert (doc["apiVersion"], doc["kind"]) == ("virtctl/v1", "ApplyResult")
    (obj,) = doc["objects"]
    assert {k: obj[k] for k in ("kind", "name", "action", "changeClass", "restart")} == {
        "kind": "domain", "name": "web", "action": "update", "changeClass": "restart",
        "restart": True}
    assert obj["changes"] == [{"op": "change", "path": "memory", "old": "262144 KiB",
                               "new": "524288 KiB", "class": "restart", "origin": "spec"}]
    assert [s["op"] for s in obj["steps"]] == ["shutdown", "define", "start"]
    assert doc["summary"]["restart"] == 1 and doc["remaining"] == []


class FakeClock:
    """Time that only moves when the applier sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    @property
    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)
