"""The per-call deadline of the libvirt driver (drivers/libvirt_deadline.py) and what the
applier makes of a host that stops answering (issue 20 D). The end-to-end case, a real
libvirtd SIGSTOPped mid-apply, is tests/integration/test_faults.py; here the pieces:
a call past its deadline raises CallTimeout and spends the connection, later calls are
refused without being attempted, a late result is handed over, every driver operation is
bounded; the applier marks the action in flight uncertain, runs nothing after it and
exits 1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from virtctl.drivers import connect
from virtctl.drivers.libvirt.deadline import Deadline, call_timeout
from virtctl.errors import CallTimeout, ErrorCode, SpecError, TransientError
from virtctl.model import Kind
from virtctl.reconciler.plan.actions import Define, Start
from virtctl.reconciler.apply.apply import Outcome, apply
from virtctl.reconciler.plan.plan import Plan
from virtctl.render.report import report_json, report_text

URI = "qemu:///nowhere"


def test_a_call_past_its_deadline_raises_and_spends_the_connection() -> None:
    deadline = Deadline(URI, 0.2)
    release = threading.Event()
    late: list[str] = []
    began = time.monotonic()
    with pytest.raises(CallTimeout) as caught:
        deadline.run("define domain web", lambda: release.wait(60) and "conn",
                     late=late.append)
    assert 0.2 <= time.monotonic() - began < 5
    assert caught.value.attempted and caught.value.code is ErrorCode.TIMEOUT
    assert isinstance(caught.value, TransientError)
    assert f"{URI} did not answer within 0.2 s (define domain web)" in str(caught.value)
    assert deadline.spent == "define domain web"
    called: list[int] = []
    with pytest.raises(CallTimeout) as refused:
        deadline.run("start domain web", lambda: called.append(1))
    assert not refused.value.attempted and called == []
    assert "not attempted" in str(refused.value)
    release.set()  # the abandoned call returns after all: its result goes to `late`
    for _ in range(500):
        if late:
            break
        time.sleep(0.01)
    assert late == ["conn"]


def test_calls_within_the_deadline_return_or_raise_as_they_would() -> None:
    deadline = Deadline(URI, 30)
    assert deadline.run("x", lambda: 42) == 42
    with pytest.raises(KeyError):
        deadline.run("x", lambda: {}["missing"])
    assert deadline.spent is None


def test_an_operation_inside_an_operation_runs_on_the_same_worker() -> None:
    deadline = Deadline(URI, 30)
    outer = deadline.run("outer", lambda: (threading.current_thread(),
                                           deadline.run("inner", threading.current_thread)))
    assert outer[0] is outer[1] and outer[0] is not threading.current_thread()


@pytest.mark.parametrize(("given", "env", "expected"), [
    (None, {}, 60.0), (None, {"VIRTCTL_CALL_TIMEOUT": "7.5"}, 7.5),
    (3.0, {"VIRTCTL_CALL_TIMEOUT": "7.5"}, 3.0)])
def test_the_call_timeout_comes_from_the_option_then_the_environment(
        given: float | None, env: dict[str, str], expected: float) -> None:
    assert call_timeout(given, env) == expected


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "abc", "1e400"])
def test_a_bad_call_timeout_in_the_environment_is_refused_by_name(value: str) -> None:
    with pytest.raises(SpecError, match=r"\$VIRTCTL_CALL_TIMEOUT: .* not a number of "
                                        "seconds above 0"):
        call_timeout(None, {"VIRTCTL_CALL_TIMEOUT": value})


def test_every_libvirt_driver_operation_is_bounded() -> None:
    pytest.importorskip("libvirt")  # the driver module imports only with libvirt-python
    from virtctl.drivers.base import Driver
    from virtctl.drivers.libvirt.driver import LibvirtDriver

    operations = {n for n in dir(Driver) if not n.startswith("_")}
    unbounded = {n for n in operations if callable(getattr(LibvirtDriver, n, None))
                 and not getattr(getattr(LibvirtDriver, n), "__bounded__", False)}
    # close has its own rule (skipped once spent), live_ops calls nothing, uploads are
    # bounded per chunk.
    assert unbounded <= {"close", "live_ops", "upload_volume"}
    assert {"snapshot", "define", "start", "shutdown", "attach_device", "storage"} <= {
        n for n in operations if getattr(getattr(LibvirtDriver, n, None), "__bounded__", 0)}


def test_a_host_that_stops_answering_stops_the_apply_with_the_action_uncertain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = connect("sim:///deadline", env={"VIRTCTL_STATE_DIR": str(tmp_path)})
    xml = "<domain type='kvm'><name>{}</name><memory>65536</memory><os><type arch='x86_64'>" \
          "hvm</type></os></domain>"
    plan = Plan(actions=(
        Define(kind=Kind.DOMAIN, name="a", xml=xml.format("a"), new=True),
        Start(kind=Kind.DOMAIN, name="a"),
        Define(kind=Kind.DOMAIN, name="b", xml=xml.format("b"), new=True),
        Start(kind=Kind.DOMAIN, name="b"),
    ))

    def hung(kind: Kind, name: str) -> None:
        raise CallTimeout(f"{driver.uri} did not answer within 5 s (start {kind} {name})")

    monkeypatch.setattr(driver, "start", hung)
    report = apply(plan, driver)
    assert [r.outcome for r in report.results] == [
        Outcome.DONE, Outcome.UNCERTAIN, Outcome.SKIPPED, Outcome.SKIPPED]
    assert report.return_code == 1 and report.uncertain == 1
    assert report.lost_host == f"{driver.uri} stopped answering during start domain/a"
    assert "b" not in driver.snapshot().domains  # nothing ran after the uncertain call
    text = report_text(report)
    assert "  uncertain start domain/a: the host stopped answering while this ran: it " \
        "may or may not have happened" in text
    assert "  skipped define domain/b: not run: sim:///deadline stopped answering " \
        "during start domain/a" in text
    assert "Applied: 1 done, 0 failed, 2 skipped, 1 uncertain." in text
    doc = report_json(report)
    assert doc["uncertain"] == 1 and doc["stopped"] == report.lost_host
    assert doc["results"][1]["outcome"] == "uncertain"


def test_a_connection_lost_mid_call_is_uncertain_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = connect("sim:///lost", env={"VIRTCTL_STATE_DIR": str(tmp_path)})
    xml = "<domain type='kvm'><name>a</name><memory>65536</memory><os><type " \
          "arch='x86_64'>hvm</type></os></domain>"

    def lost(kind: Kind, xml: str) -> None:
        raise TransientError("End of file while reading data: Input/output error",
                             code=ErrorCode.CONNECTION)

    monkeypatch.setattr(driver, "define", lost)
    report = apply(Plan(actions=(Define(kind=Kind.DOMAIN, name="a", xml=xml, new=True),
                                 Start(kind=Kind.DOMAIN, name="a"))), driver)
    assert [r.outcome for r in report.results] == [Outcome.UNCERTAIN, Outcome.SKIPPED]


def test_guests_stopped_together_when_the_host_stops_answering_are_all_uncertain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a batch of stops a guest's request may have gone out before a later call was
    refused, so none of the batch is called "not run"; what follows the batch is."""
    from virtctl.reconciler.plan.actions import Shutdown, Undefine

    driver = connect("sim:///batch", env={"VIRTCTL_STATE_DIR": str(tmp_path)})
    for name in ("a", "b"):
        driver.define(Kind.DOMAIN, f"<domain type='kvm'><name>{name}</name><memory>65536"
                      "</memory><os><type arch='x86_64'>hvm</type></os></domain>")
        driver.start(Kind.DOMAIN, name)
    deadline = Deadline(driver.uri, 0.05)
    asked: list[str] = []
    real_shutdown = driver.shutdown

    def shutdown(kind: Kind, name: str) -> None:
        asked.append(name)
        real_shutdown(kind, name)

    def domain_state(name: str) -> object:
        if asked == ["a", "b"]:  # both asked: the host stops answering while they stop
            return deadline.run(f"domain state {name}", lambda: time.sleep(5))
        return driver.snapshot().domains[name].state

    monkeypatch.setattr(driver, "shutdown", shutdown)
    monkeypatch.setattr(driver, "domain_state", domain_state)
    plan = Plan(actions=(
        Shutdown(kind=Kind.DOMAIN, name="a", timeout=30, force=True),
        Shutdown(kind=Kind.DOMAIN, name="b", timeout=30, force=True),
        Undefine(kind=Kind.DOMAIN, name="a"),
    ))
    report = apply(plan, driver)
    assert [r.outcome for r in report.results] == [
        Outcome.UNCERTAIN, Outcome.UNCERTAIN, Outcome.SKIPPED]
    assert report.lost_host.startswith(f"{driver.uri} stopped answering during shutdown ")
    assert report.return_code == 1


def test_a_transfer_may_take_longer_than_one_call_while_each_step_is_quick() -> None:
    deadline = Deadline(URI, 0.3)

    def transfer(step: Callable[[], None]) -> int:
        for _ in range(12):  # 0.6 s in all, 0.05 s a step
            time.sleep(0.05)
            step()
        return 12

    assert deadline.run_watched("upload to pool/vol", transfer) == 12
    assert deadline.spent is None


def test_a_transfer_whose_step_stalls_times_out_at_the_deadline_after_its_last_step() -> None:
    deadline = Deadline(URI, 0.3)
    release = threading.Event()

    def transfer(step: Callable[[], None]) -> None:
        for _ in range(6):
            time.sleep(0.05)
            step()
        release.wait(60)  # a send the daemon never takes

    began = time.monotonic()
    with pytest.raises(CallTimeout, match=r"did not answer within 0.3 s \(upload to p/v\)"):
        deadline.run_watched("upload to p/v", transfer)
    assert 0.6 <= time.monotonic() - began < 5
    assert deadline.spent == "upload to p/v"
    release.set()
