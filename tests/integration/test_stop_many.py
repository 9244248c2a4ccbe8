"""Stopping many guests on the sim: every guest is asked at once and all are waited on
together, so N guests that ignore ACPI cost one timeout, not N; for `delete`, prune,
`state: shutoff` and restarts alike. Each guest keeps its own deadline (its spec's
`shutdownTimeout`), the wait reads each guest's own state (no host snapshot), and
failure skipping and `needs` still hold. The plan says how many guests it stops."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virtctl import api
from virtctl.drivers.sim.driver import SimDriver
from virtctl.errors import ErrorCode
from virtctl.model import DomainState, Kind
from virtctl.reconciler.apply.apply import Clock, Outcome, Report, apply
from virtctl.render.report import plan_json, plan_text

D, N = Kind.DOMAIN, Kind.NETWORK
Open = Callable[..., SimDriver]
GUESTS = [f"g{i}" for i in range(5)]


class FakeClock:
    """Time that moves only when the applier sleeps: the ladder runs instantly."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a poll loop that does not wait would spin"
        self.t += seconds

    @property
    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(operation, domain name) of every SimDriver call the stop ladder may make."""
    seen: list[tuple[str, str]] = []
    for op in ("shutdown", "destroy", "start", "undefine", "resume", "domain_state",
               "snapshot"):
        original = getattr(SimDriver, op)

        def spy(self: SimDriver, *args: object, _op: str = op, _orig: object = original,
                **kwargs: object) -> object:
            name = next((str(a) for a in args if isinstance(a, str)
                         and not isinstance(a, Kind)), "")
            seen.append((_op, name))
            return _orig(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(SimDriver, op, spy)
    yield seen


def guest_yaml(name: str, *, vcpus: int = 1, state: str = "running", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        kind: Domain
        name: {name}
        type: kvm
        memory: 128MiB
        vcpus: {vcpus}
        state: {state}
        os: {{type: hvm}}
        """) + extra


def running_guests(sim: Open, specs: Path, names: list[str], *, ignore: bool = True,
                   extra: dict[str, str] | None = None) -> SimDriver:
    for name in names:
        (specs / f"{name}.yaml").write_text(guest_yaml(name, extra=(extra or {}).get(name, "")))
    driver = sim()
    assert api.reconcile(api.load([str(specs)]), driver).report.return_code == 0
    if ignore:
        for name in names:
            driver.inject_fault("shutdown", D, name, action="ignore")  # ignores ACPI
    return driver


def ops(calls: list[tuple[str, str]], *wanted: str) -> list[tuple[str, str]]:
    return [c for c in calls if c[0] in wanted]


def outcomes(report: Report) -> dict[str, str]:
    return {f"{r.action.verb} {r.action.key}": str(r.outcome) for r in report.results}


def test_deleting_guests_that_ignore_acpi_costs_one_timeout_not_one_each(
    sim: Open, specs: Path, calls: list[tuple[str, str]]
) -> None:
    driver = running_guests(sim, specs, GUESTS)
    desired = api.load([str(specs)])
    timeout = 1.0
    planned = api.plan_deletion(desired, driver, policy=api.Policy(shutdown_timeout=timeout))
    calls.clear()
    began = time.monotonic()
    report = apply(planned, driver)  # the real clock: the bound below can fail
    elapsed = time.monotonic() - began
    assert report.return_code == 0, outcomes(report)
    # One after the other this took 5 x 1 s; together it is one timeout.
    assert timeout <= elapsed < 2 * timeout
    stops = ops(calls, "shutdown", "destroy")
    assert sorted(stops[:5]) == [("shutdown", g) for g in GUESTS]  # every guest asked first,
    assert sorted(stops[5:]) == [("destroy", g) for g in GUESTS]  # then every one destroyed
    assert not ops(calls, "snapshot")  # the wait reads each guest, not the whole host
    assert all(r.detail == "did not shut down within 1s; destroyed"
               for r in report.results if r.action.verb == "shutdown")
    assert driver.snapshot().domains == {}
    assert api.plan_deletion(desired, driver).empty


def test_without_force_every_guest_fails_after_one_timeout_and_stays_running(
    sim: Open, specs: Path, calls: list[tuple[str, str]]
) -> None:
    driver = running_guests(sim, specs, GUESTS)
    for name in GUESTS:
        (specs / f"{name}.yaml").write_text(guest_yaml(name, state="shutoff"))
    desired = api.load([str(specs)])
    fake = FakeClock()
    result = api.reconcile(desired, driver, policy=api.Policy(shutdown_timeout=60),
                           clock=fake.clock)
    # Serially, 50 such guests took 50 minutes; these five fail together after one minute.
    assert 60 <= fake.t < 62
    failed = [r for r in result.report.results if r.outcome is Outcome.FAILED]
    assert sorted(r.action.name for r in failed) == GUESTS
    assert all(r.error is not None and r.error.code is ErrorCode.TIMEOUT
               and "--force-stop" in r.error.message for r in failed)
    assert not ops(calls, "destroy")
    assert all(d.state is DomainState.RUNNING for d in driver.snapshot().domains.values())


def test_each_guest_keeps_its_own_deadline(sim: Open, specs: Path,
                                           calls: list[tuple[str, str]]) -> None:
    # g0 says shutdownTimeout: 2, the rest follow --shutdown-timeout 10: g0 is destroyed
    # at 2 s, the rest at 10 s, and the whole wait is 10 s (not 2 + 4 x 10).
    driver = running_guests(sim, specs, GUESTS, extra={"g0": "shutdownTimeout: 2\n"})
    desired = api.load([str(specs)])
    planned = api.plan_deletion(desired, driver, policy=api.Policy(shutdown_timeout=10))
    fake = FakeClock()
    destroyed_at: dict[str, float] = {}
    original = SimDriver.destroy

    def destroy(self: SimDriver, kind: Kind, name: str) -> None:
        destroyed_at[name] = fake.t
        original(self, kind, name)

    SimDriver.destroy = destroy  # type: ignore[method-assign]
    try:
        report = apply(planned, driver, clock=fake.clock)
    finally:
        SimDriver.destroy = original  # type: ignore[method-assign]
    assert report.return_code == 0
    assert 2 <= destroyed_at.pop("g0") < 3
    assert all(10 <= t < 11 for t in destroyed_at.values()) and len(destroyed_at) == 4
    assert 10 <= fake.t < 11


def test_guests_that_obey_stop_without_waiting_and_mixed_ones_wait_once(
    sim: Open, specs: Path, calls: list[tuple[str, str]]
) -> None:
    driver = running_guests(sim, specs, GUESTS, ignore=False)
    for name in ("g3", "g4"):
        driver.inject_fault("shutdown", D, name, action="ignore")
    driver.suspend("g1")  # a paused guest is resumed so it can act on the request
    desired = api.load([str(specs)])
    fake = FakeClock()
    result = api.delete(desired, driver, policy=api.Policy(shutdown_timeout=30),
                        clock=fake.clock)
    assert result.report.return_code == 0
    assert ops(calls, "destroy") == [("destroy", "g3"), ("destroy", "g4")]
    assert ("resume", "g1") in calls
    assert 30 <= fake.t < 32  # the two that ignore it wait together
    assert driver.snapshot().domains == {}


def test_restarts_stop_every_guest_then_start_them_all(
    sim: Open, specs: Path, calls: list[tuple[str, str]]
) -> None:
    driver = running_guests(sim, specs, GUESTS)
    for name in GUESTS:
        (specs / f"{name}.yaml").write_text(guest_yaml(name, vcpus=2))
    desired = api.load([str(specs)])
    policy = api.Policy(allow_restart=True, force_stop=True, shutdown_timeout=20)
    planned = api.plan(desired, driver, policy=policy)
    assert "5 running guests to restart." in plan_text(planned)
    assert plan_json(planned)["summary"]["restart"] == 5
    assert plan_json(planned)["summary"]["stop"] == 0
    calls.clear()
    fake = FakeClock()
    result = api.reconcile(desired, driver, policy=policy, clock=fake.clock)
    assert result.report.return_code == 0 and result.remaining.empty
    order = [op for op, _ in ops(calls, "shutdown", "destroy", "start")]
    assert order == ["shutdown"] * 5 + ["destroy"] * 5 + ["start"] * 5
    assert 20 <= fake.t < 22
    assert all(d.state is DomainState.RUNNING for d in driver.snapshot().domains.values())


def test_a_failed_stop_skips_its_guest_and_what_needs_it_but_not_the_others(
    sim: Open, specs: Path, kit: object
) -> None:
    # web and db use network lan; deleting all three: web's stop fails, so web's
    # undefine and lan's teardown (which needs web gone) are skipped; db goes.
    (specs / "lan.xml").write_text(kit.network_xml("lan"))  # type: ignore[attr-defined]
    for name in ("web", "db"):
        (specs / f"{name}.xml").write_text(
            kit.domain_xml(name, nets=("lan",)))  # type: ignore[attr-defined]
    driver = sim()
    desired = api.load([str(specs)])
    assert api.reconcile(desired, driver).report.return_code == 0
    driver.inject_fault("shutdown", D, "web")
    result = api.delete(desired, driver, clock=FakeClock().clock)
    got = outcomes(result.report)
    assert got["shutdown domain/web"] == "failed"
    assert got["undefine domain/web"] == "skipped"
    assert got["destroy network/lan"] == got["undefine network/lan"] == "skipped"
    assert got["shutdown domain/db"] == got["undefine domain/db"] == "done"
    live = driver.snapshot()
    assert set(live.domains) == {"web"} and live.networks["lan"].active


def test_the_delete_plan_says_how_many_running_guests_it_stops(
    sim: Open, specs: Path, cli: Callable[..., object]
) -> None:
    running_guests(sim, specs, GUESTS, ignore=False)
    (specs / "idle.yaml").write_text(guest_yaml("idle", state="shutoff"))
    assert cli("apply", "-f", str(specs)).code == 0  # type: ignore[attr-defined]
    text = cli("delete", "--dry-run", "-f", str(specs)).out  # type: ignore[attr-defined]
    assert "Plan: 0 to create, 0 to change, 6 to delete; 5 running guests to stop." in text
    doc = cli("delete", "--dry-run", "-o", "json",  # type: ignore[attr-defined]
              "-f", str(specs)).json()
    assert doc["summary"]["stop"] == 5 and doc["summary"]["restart"] == 0
    assert {o["name"] for o in doc["objects"] if o["stop"]} == set(GUESTS)


def test_a_recreate_declared_shutoff_counts_as_a_stop_not_a_restart(
    sim: Open, specs: Path
) -> None:
    extra = "updatePolicy: recreate\n"
    running_guests(sim, specs, ["web"], ignore=False, extra={"web": extra})
    (specs / "web.yaml").write_text(guest_yaml("web", state="shutoff", extra=extra)
                                    + "uuid: 6f1c1e5e-0000-4000-8000-000000000001\n")
    planned = api.plan(api.load([str(specs)]), sim())
    assert planned.recreates and not planned.restarts
    assert "0 to create, 0 to change, 0 to delete, 1 to recreate; 1 running guest to stop." \
        in plan_text(planned)
    assert plan_json(planned)["summary"]["restart"] == 0


def test_pruning_guests_that_ignore_acpi_costs_one_timeout(
    sim: Open, specs: Path, calls: list[tuple[str, str]]
) -> None:
    driver = running_guests(sim, specs, [*GUESTS, "kept"])
    for name in GUESTS:
        (specs / f"{name}.yaml").unlink()
    desired = api.load([str(specs)])
    fake = FakeClock()
    calls.clear()
    result = api.reconcile(desired, driver, clock=fake.clock,
                           policy=api.Policy(prune=True, shutdown_timeout=45))
    assert result.report.return_code == 0 and result.remaining.empty
    assert 45 <= fake.t < 47  # not 5 x 45 s
    stops = [op for op, _ in ops(calls, "shutdown", "destroy")]
    assert stops == ["shutdown"] * 5 + ["destroy"] * 5
    assert set(driver.snapshot().domains) == {"kept"}


def test_a_network_recreate_declared_inactive_is_not_a_restart(sim: Open, specs: Path) -> None:
    def lan(uuid: str, active: str) -> str:
        return textwrap.dedent(f"""\
            kind: Network
            name: lan
            uuid: {uuid}
            active: {active}
            updatePolicy: recreate
            ips:
              - {{address: 10.9.0.1, netmask: 255.255.255.0}}
            """)

    (specs / "lan.yaml").write_text(lan("6f1c1e5e-0000-4000-8000-00000000000a", "true"))
    driver = sim()
    assert api.reconcile(api.load([str(specs)]), driver).report.return_code == 0
    (specs / "lan.yaml").write_text(lan("6f1c1e5e-0000-4000-8000-00000000000b", "false"))
    planned = api.plan(api.load([str(specs)]), driver)
    assert planned.recreates and not planned.restarts
    assert "active network" not in plan_text(planned)
    assert plan_json(planned)["summary"]["restartNetworks"] == 0
