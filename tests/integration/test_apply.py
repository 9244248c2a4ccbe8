"""The applier against the sim: independent actions go on after a failure, dependants are
skipped, the shutdown ladder ends in destroy or failure, and a fresh plan is then empty."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from virtctl import api
from virtctl.drivers.sim.driver import SimDriver
from virtctl.errors import ErrorCode
from virtctl.model import DomainState, Kind
from virtctl.reconciler.plan.actions import Shutdown
from virtctl.reconciler.apply.apply import Clock, Outcome, Report, apply
from virtctl.reconciler.plan.plan import Plan, Policy, plan

D, N = Kind.DOMAIN, Kind.NETWORK
Open = Callable[..., SimDriver]


class FakeClock:
    """Time that only moves when the applier sleeps: the ladder runs instantly."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds

    @property
    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)


def outcomes(report: Report) -> dict[str, str]:
    return {f"{r.action.verb} {r.action.key}": str(r.outcome) for r in report.results}


@pytest.fixture
def lab(specs: Path, kit: SimpleNamespace) -> Path:
    """web and db on network lan; solo on no network."""
    kit.write(specs, "lan.xml", kit.network_xml("lan"))
    kit.write(specs, "web.xml", kit.domain_xml("web", nets=("lan",)))
    kit.write(specs, "db.xml", kit.domain_xml("db", nets=("lan",)))
    kit.write(specs, "solo.xml", kit.domain_xml("solo"))
    return specs


def test_apply_then_fresh_plan_is_empty(sim: Open, lab: Path) -> None:
    desired = api.load([str(lab)])
    driver = sim()
    result = api.reconcile(desired, driver)
    assert result.report.return_code == 0 and result.report.failed == 0
    assert result.remaining.empty
    assert plan(desired, driver.snapshot()).empty
    live = driver.snapshot()
    assert all(d.state is DomainState.RUNNING and d.managed for d in live.domains.values())
    assert live.networks["lan"].active and live.networks["lan"].managed


def test_a_failure_skips_dependants_but_not_independent_actions(sim: Open, lab: Path) -> None:
    desired = api.load([str(lab)])
    driver = sim()
    driver.inject_fault("start", N, "lan")
    report = apply(api.plan(desired, driver), driver)
    got = outcomes(report)
    assert got["start network/lan"] == "failed"
    assert got["start domain/web"] == "skipped" and got["start domain/db"] == "skipped"
    # Defining needs no network; solo needs nothing: all of that was done.
    assert got["define domain/web"] == got["define domain/db"] == "done"
    assert got["define domain/solo"] == got["start domain/solo"] == "done"
    assert (report.failed, report.skipped) == (1, 2)
    assert report.return_code == 1
    skipped = next(r for r in report.results if r.outcome is Outcome.SKIPPED)
    assert "network/lan" in skipped.detail
    failed = next(r for r in report.results if r.outcome is Outcome.FAILED)
    assert failed.error is not None and failed.error.code is ErrorCode.OPERATION_FAILED
    # Once the fault is gone, a second apply finishes the job and a fresh plan is empty.
    driver.clear_faults()
    second = api.reconcile(desired, driver)
    assert second.report.return_code == 0
    assert sorted(outcomes(second.report)) == [
        "start domain/db", "start domain/web", "start network/lan"]
    assert plan(desired, driver.snapshot()).empty


def test_a_failed_define_stops_the_run_on_that_host(sim: Open, lab: Path) -> None:
    # The host refused a definition that validation passed: nothing more is tried, and
    # the report says what was done before and what was not run.
    desired = api.load([str(lab)])
    driver = sim()
    driver.inject_fault("define", D, "web")
    planned = api.plan(desired, driver)
    report = apply(planned, driver)
    order = [f"{r.action.verb} {r.action.key}" for r in report.results]
    at = order.index("define domain/web")
    got = outcomes(report)
    assert got["define domain/web"] == "failed"
    assert all(got[step] == "done" for step in order[:at])
    after = report.results[at + 1:]
    assert after and all(r.outcome is Outcome.SKIPPED for r in after)
    assert all(r.detail == "not run: the run stopped when the define of domain/web failed"
               for r in after)
    assert "web" not in driver.snapshot().domains


@pytest.mark.parametrize(("outcome_list", "code"), [
    pytest.param([], 0, id="nothing-to-do"),
    pytest.param([Outcome.DONE, Outcome.DONE], 0, id="all-done"),
    pytest.param([Outcome.DONE, Outcome.FAILED], 1, id="a-failure"),
    pytest.param([Outcome.DONE, Outcome.SKIPPED], 1, id="a-skip"),
])
def test_report_return_code(outcome_list: list[Outcome], code: int) -> None:
    from virtctl.reconciler.plan.actions import Start
    from virtctl.reconciler.apply.apply import ActionResult

    report = Report(results=tuple(ActionResult(Start(kind=D, name=str(i)), o)
                                  for i, o in enumerate(outcome_list)))
    assert report.return_code == code


def _running_guest(sim: Open, kit: SimpleNamespace, specs: Path, *, ignores: bool) -> SimDriver:
    kit.write(specs, "web.xml", kit.domain_xml("web"))
    driver = sim()
    api.reconcile(api.load([str(specs)]), driver)
    if ignores:
        driver.inject_fault("shutdown", D, "web", action="ignore")
    return driver


def _stop_plan(timeout: float, force: bool) -> Plan:
    return Plan(actions=(Shutdown(kind=D, name="web", timeout=timeout, force=force),))


def test_shutdown_of_a_cooperative_guest_needs_no_destroy(sim: Open, kit: SimpleNamespace,
                                                          specs: Path) -> None:
    driver = _running_guest(sim, kit, specs, ignores=False)
    fake = FakeClock()
    report = apply(_stop_plan(30, force=False), driver, clock=fake.clock)
    assert outcomes(report) == {"shutdown domain/web": "done"}
    assert report.results[0].detail == ""
    assert fake.slept == 0
    assert driver.snapshot().domains["web"].state is DomainState.SHUTOFF


def test_guest_ignoring_shutdown_is_destroyed_with_force(sim: Open, kit: SimpleNamespace,
                                                         specs: Path) -> None:
    driver = _running_guest(sim, kit, specs, ignores=True)
    fake = FakeClock()
    report = apply(_stop_plan(30, force=True), driver, clock=fake.clock)
    assert outcomes(report) == {"shutdown domain/web": "done"}
    assert "destroyed" in report.results[0].detail
    assert 30 <= fake.t < 32  # it waited the whole timeout, on the fake clock only
    assert driver.snapshot().domains["web"].state is DomainState.SHUTOFF


def test_guest_ignoring_shutdown_fails_without_force(sim: Open, kit: SimpleNamespace,
                                                     specs: Path) -> None:
    driver = _running_guest(sim, kit, specs, ignores=True)
    fake = FakeClock()
    report = apply(_stop_plan(30, force=False), driver, clock=fake.clock)
    (result,) = report.results
    assert result.outcome is Outcome.FAILED and result.error is not None
    assert result.error.code is ErrorCode.TIMEOUT and "--force-stop" in result.error.message
    assert report.return_code == 1
    assert driver.snapshot().domains["web"].state is DomainState.RUNNING


def test_shutdown_of_an_already_stopped_guest_counts_as_done(sim: Open, kit: SimpleNamespace,
                                                             specs: Path) -> None:
    driver = _running_guest(sim, kit, specs, ignores=False)
    driver.destroy(D, "web")  # stopped between snapshot and apply
    report = apply(_stop_plan(30, force=False), driver, clock=FakeClock().clock)
    assert report.results[0].outcome is Outcome.DONE
    assert report.results[0].detail == "already stopped"


def test_changed_spec_redefines_in_place_keeping_uuid_and_macs(sim: Open, kit: SimpleNamespace,
                                                               specs: Path) -> None:
    kit.write(specs, "lan.xml", kit.network_xml("lan"))
    kit.write(specs, "web.xml", kit.domain_xml("web", nets=("lan", "lan")))
    driver = sim()
    api.reconcile(api.load([str(specs)]), driver)
    before = driver.snapshot().domains["web"]
    kit.write(specs, "web.xml", kit.domain_xml("web", nets=("lan", "lan"), memory_mib=1024))
    desired = api.load([str(specs)])
    planned = api.plan(desired, driver)
    # The new maximum waits for a restart: noted on the running guest, so it stays pending.
    assert [(a.verb, a.key.name) for a in planned.actions] == [("define", "web"),
                                                              ("note-pending", "web")]
    result = api.reconcile(desired, driver)
    assert result.remaining.empty
    after = driver.snapshot().domains["web"]
    assert after.uuid == before.uuid and after.id == before.id
    assert after.state is DomainState.RUNNING  # redefined, not undefined and recreated

    def macs(xml: str) -> list[str]:
        from virtctl.xmlutil import parse
        return [m.get("address", "") for m in parse(xml).iterfind("devices/interface/mac")]

    assert macs(after.xml) == macs(before.xml) and len(set(macs(after.xml))) == 2
    assert "1048576" in after.xml


def test_policy_prune_removes_managed_leftovers_and_spares_others(
        sim: Open, kit: SimpleNamespace, lab: Path) -> None:
    driver = sim()
    driver.define(D, kit.domain_xml("theirs"))
    api.reconcile(api.load([str(lab)]), driver)
    (lab / "db.xml").unlink()
    desired = api.load([str(lab)])
    result = api.reconcile(desired, driver, policy=Policy(prune=True),
                           clock=FakeClock().clock)
    assert result.report.return_code == 0 and result.remaining.empty
    assert sorted(driver.snapshot().domains) == ["solo", "theirs", "web"]
