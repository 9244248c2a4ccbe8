"""The libvirt driver's fast paths, on test:///default, and what keeps them honest.

- The whole-host memo: a run that finds a host exactly as an earlier in-sync run left it
  stops after reading, and any change behind virtctl's back, or to the specs or the
  options, brings the full comparison back.
- The snapshot it takes for that: states from one bulk stats call (the same as the
  per-state listings drivers without bulk stats get), columns read with `map`, one by
  one again when a domain goes away mid-read.
- Actions after a define use the handle define returned, never a newcomer of the same
  name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.support import libvirt_module
from virtctl import api
from virtctl.drivers.libvirt.driver import LibvirtDriver
from virtctl.errors import DriverError
from virtctl.model import Desired, DomainState, Kind
from virtctl.reconciler.plan.actions import Define, Resume, SetAutostart, Shutdown, Start
from virtctl.reconciler.plan.plan import Policy

URI = "test:///default"


def domain_xml(name: str, *, memory_mib: int = 64, state: str = "running") -> str:
    return (f"<domain type='test'><name>{name}</name>"
            f"<metadata><virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1'"
            f" state='{state}'/></metadata>"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>"
            "<os><type arch='i686'>hvm</type></os><devices/></domain>\n")


@pytest.fixture
def keeper() -> Iterator[Any]:
    """Holds this test's test:///default alive (it lives while a connection is open)."""
    conn = libvirt_module().open(URI)
    yield conn
    for name in ("hm-web", "hm-db", "hm-other", "hm-handle"):
        try:
            dom = conn.lookupByName(name)
        except libvirt_module().libvirtError:
            continue
        persistent = dom.isPersistent()
        if dom.isActive():
            dom.destroy()
        if persistent:
            dom.undefine()
    conn.close()


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "web.xml").write_text(domain_xml("hm-web"))
    (folder / "db.xml").write_text(domain_xml("hm-db", state="shutoff"))
    return folder


class Spy:
    """Counts full comparisons: calls of the planner proper."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = api.make_plan

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(api, "make_plan", counted)


def plan(desired: Desired, *, policy: Policy = Policy()) -> api.Plan:
    with LibvirtDriver(URI) as driver:
        return api.plan(desired, driver, policy=policy)


def settle(desired: Desired) -> None:
    """Apply, then plan twice: the first no-op run records the host as in sync."""
    with LibvirtDriver(URI) as driver:
        assert api.reconcile(desired, driver).return_code == 0
    assert plan(desired).empty
    assert plan(desired).empty


def test_an_unchanged_host_is_not_compared_again(
    keeper: Any, specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired = api.load([specs])
    settle(desired)
    spy = Spy(monkeypatch)
    built: list[str] = []
    real = LibvirtDriver._live_domain
    monkeypatch.setattr(LibvirtDriver, "_live_domain",
                        lambda self, read: built.append(read.name) or real(self, read))
    assert plan(desired).empty
    assert spy.calls == 0, "an identical host is recognised without planning"
    assert built == [], "and without building live objects (reading ownership marks)"


def _redefined(keeper: Any) -> None:
    dom = keeper.lookupByName("hm-db")
    keeper.defineXML(dom.XMLDesc(2).replace("65536", "32768"))


def _stopped(keeper: Any) -> None:
    keeper.lookupByName("hm-web").destroy()


def _paused(keeper: Any) -> None:
    keeper.lookupByName("hm-web").suspend()


def _autostarted(keeper: Any) -> None:
    keeper.lookupByName("hm-db").setAutostart(1)


def _started(keeper: Any) -> None:
    keeper.lookupByName("hm-db").create()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(_redefined, (Define, "hm-db"), id="definition-edited"),
        pytest.param(_stopped, (Start, "hm-web"), id="stopped"),
        pytest.param(_paused, (Resume, "hm-web"), id="paused"),
        pytest.param(_autostarted, (SetAutostart, "hm-db"), id="autostart-set"),
        pytest.param(_started, (Shutdown, "hm-db"), id="started"),
    ],
)
def test_a_change_behind_our_back_is_found(
    keeper: Any, specs: Path, monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Any], None], expected: tuple[type, str],
) -> None:
    desired = api.load([specs])
    settle(desired)
    change(keeper)
    spy = Spy(monkeypatch)
    planned = plan(desired)
    assert spy.calls == 1
    assert [(type(a), a.name) for a in planned.actions] == [expected]


def test_an_unmanaged_newcomer_is_compared_and_left_alone(
    keeper: Any, specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired = api.load([specs])
    settle(desired)
    keeper.defineXML(domain_xml("hm-other"))
    spy = Spy(monkeypatch)
    assert plan(desired).empty and spy.calls == 1
    assert plan(desired).empty and spy.calls == 1  # recorded again, with the newcomer


def test_spec_and_option_changes_are_compared(
    keeper: Any, specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desired = api.load([specs])
    settle(desired)
    spy = Spy(monkeypatch)
    (specs / "db.xml").write_text(domain_xml("hm-db", memory_mib=128, state="shutoff"))
    assert not plan(api.load([specs])).empty and spy.calls == 1
    assert not plan(desired, policy=Policy(prune=True)).empty or spy.calls == 2
    assert spy.calls == 2


def test_a_plan_with_only_pending_changes_is_not_recorded(
    keeper: Any, specs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running guest whose definition changed waits for a restart: every run must
    keep reporting that, so such a run is never recorded as in sync."""
    desired = api.load([specs])
    settle(desired)
    (specs / "web.xml").write_text(domain_xml("hm-web").replace("<vcpu>1", "<vcpu>2"))
    edited = api.load([specs])
    with LibvirtDriver(URI) as driver:
        api.reconcile(edited, driver)
    spy = Spy(monkeypatch)
    for calls in (1, 2):
        planned = plan(edited)
        assert planned.pending and not planned.actions
        assert spy.calls == calls


def _snapshot(driver: LibvirtDriver) -> dict[str, tuple[Any, ...]]:
    live = driver.snapshot()
    return {d.name: (d.uuid, d.state, d.autostart, d.persistent, d.id, d.xml, d.running_xml,
                     d.owner) for d in live.domains.values()}


def test_bulk_stats_and_listings_give_the_same_snapshot(keeper: Any, specs: Path) -> None:
    settle(api.load([specs]))
    keeper.lookupByName("hm-web").suspend()
    keeper.createXML(domain_xml("hm-other"), 0)  # transient and running
    keeper.lookupByName("hm-db").setAutostart(1)
    with LibvirtDriver(URI) as bulk, LibvirtDriver(URI) as listed:
        listed._stats = False
        first, second = _snapshot(bulk), _snapshot(listed)
        assert bulk.snapshot().fingerprint == listed.snapshot().fingerprint
    assert first == second
    assert first["hm-web"][1] is DomainState.PAUSED
    assert first["hm-db"][1:4] == (DomainState.SHUTOFF, True, True)
    assert first["hm-other"][1] is DomainState.RUNNING and first["hm-other"][3] is False


class NoBulkStats:
    """A connection whose driver has no getAllDomainStats, as some libvirt drivers."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def getAllDomainStats(self, *_args: Any) -> Any:  # noqa: N802 (libvirt's name)
        lv = libvirt_module()
        error = lv.libvirtError("this function is not supported by the connection driver")
        error.err = (lv.VIR_ERR_NO_SUPPORT, lv.VIR_FROM_NONE, str(error), 2, "", None, None,
                     -1, -1)
        raise error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_driver_without_bulk_stats_falls_back_to_listings(keeper: Any, specs: Path) -> None:
    settle(api.load([specs]))
    with LibvirtDriver(URI) as reference, LibvirtDriver(URI) as driver:
        expected = _snapshot(reference)
        driver._conn = NoBulkStats(driver._conn)
        assert _snapshot(driver) == expected
        assert driver._stats is False


def test_a_domain_undefined_while_being_read_is_left_out(keeper: Any, specs: Path) -> None:
    settle(api.load([specs]))
    with LibvirtDriver(URI) as driver:
        listed = driver._domains_with_state

        def listed_then_undefined() -> Any:
            found = listed()
            keeper.lookupByName("hm-db").undefine()  # between the listing and the reads
            return found

        driver._domains_with_state = listed_then_undefined  # type: ignore[method-assign]
        live = driver.snapshot()
        assert "hm-db" not in live.domains
        assert live.domains["hm-web"].state is DomainState.RUNNING


def test_actions_after_a_define_never_reach_a_replacement(keeper: Any) -> None:
    first = domain_xml("hm-handle").replace(
        "<name>hm-handle</name>", "<name>hm-handle</name>"
        "<uuid>00000000-0000-4000-8000-0000000000a1</uuid>")
    second = first.replace("0000000000a1", "0000000000b2")
    with LibvirtDriver(URI) as driver:
        driver.snapshot()
        driver.define(Kind.DOMAIN, first)
        keeper.lookupByName("hm-handle").undefine()  # replaced behind virtctl's back
        keeper.defineXML(second)
        with pytest.raises(DriverError):
            driver.start(Kind.DOMAIN, "hm-handle")
        assert not keeper.lookupByName("hm-handle").isActive()
        driver.snapshot()  # a new plan looks the replacement up by name
        driver.start(Kind.DOMAIN, "hm-handle")
        assert keeper.lookupByName("hm-handle").UUIDString().endswith("0000000000b2")
        assert keeper.lookupByName("hm-handle").isActive()
