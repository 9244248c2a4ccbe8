"""The driver conformance suite: one specification of driver behaviour, every backend.

Runs against sim, test:///default, qemu:///system and qemu+tcp (see conftest). Where
libvirt's own drivers legitimately differ (the exact error number, whether a guest obeys
a graceful shutdown), the test states the allowed outcomes; everything else must match,
so the embedded driver cannot drift from libvirt.
"""

from __future__ import annotations

import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable

import pytest

from tests.contract.support import Backend, Factory
from virtctl.capabilities import parse_capabilities
from virtctl.drivers import Driver
from virtctl.drivers.base import Event, EventType
from virtctl.errors import DriverError, ErrorCode
from virtctl.model import DomainState, Kind, LiveDomain, LiveNetwork, Ownership
from virtctl.xmlutil import parse

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def domain(driver: Driver, name: str) -> LiveDomain:
    live = driver.snapshot().domains.get(name)
    assert live is not None, f"domain {name} missing from snapshot"
    return live


def network(driver: Driver, name: str) -> LiveNetwork:
    live = driver.snapshot().networks.get(name)
    assert live is not None, f"network {name} missing from snapshot"
    return live


def memory_kib(xml: str, tag: str = "memory") -> int:
    elem = parse(xml).find(tag)
    assert elem is not None, f"<{tag}> missing"
    factor = {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}[elem.get("unit", "KiB")]
    return int((elem.text or "0").strip()) * factor


def macs(xml: str) -> list[str]:
    return [m.get("address", "") for m in parse(xml).iterfind("devices/interface/mac")]


def define_network(driver: Driver, factory: Factory, **kwargs: object) -> str:
    name = factory.name()
    driver.define(Kind.NETWORK, factory.network_xml(name, **kwargs))  # type: ignore[arg-type]
    return name


def define_domain(driver: Driver, factory: Factory, **kwargs: object) -> str:
    name = factory.name()
    driver.define(Kind.DOMAIN, factory.domain_xml(name, **kwargs))  # type: ignore[arg-type]
    return name


# Domains: definition


def test_define_reports_shutoff_persistent_domain_with_filled_values(
    driver: Driver, factory: Factory
) -> None:
    net = define_network(driver, factory)
    name = define_domain(driver, factory, network=net)
    live = domain(driver, name)
    assert (live.state, live.persistent, live.autostart, live.id) == (
        DomainState.SHUTOFF,
        True,
        False,
        None,
    )
    assert UUID_RE.match(live.uuid)
    assert parse(live.xml).findtext("uuid") == live.uuid
    assert [bool(MAC_RE.match(mac)) for mac in macs(live.xml)] == [True]
    assert memory_kib(live.xml, "currentMemory") == memory_kib(live.xml) == 64 * 1024
    assert live.owner is None and not live.managed


def test_redefine_updates_in_place_and_keeps_uuid(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    before = domain(driver, name)
    driver.define(Kind.DOMAIN, factory.domain_xml(name, memory_mib=96, uuid=before.uuid))
    after = domain(driver, name)
    assert after.uuid == before.uuid
    assert memory_kib(after.xml) == 96 * 1024


def test_redefine_without_uuid_is_refused(driver: Driver, factory: Factory) -> None:
    # libvirt gives a definition without <uuid> a fresh random one, which then clashes
    # with the existing domain of that name: whoever redefines must carry the live uuid.
    name = define_domain(driver, factory)
    before = domain(driver, name)
    with pytest.raises(DriverError):
        driver.define(Kind.DOMAIN, factory.domain_xml(name, memory_mib=80))
    after = domain(driver, name)
    assert (after.uuid, memory_kib(after.xml)) == (before.uuid, 64 * 1024)


def test_define_same_name_with_other_uuid_is_refused(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    before = domain(driver, name)
    with pytest.raises(DriverError):
        driver.define(Kind.DOMAIN, factory.domain_xml(name, uuid=str(uuidlib.uuid4())))
    assert domain(driver, name).uuid == before.uuid


@pytest.mark.parametrize(
    ("dom_type", "arch"),
    [
        pytest.param("bogus", "x86_64", id="unknown-domain-type"),
        pytest.param("qemu", "sparc99", id="unknown-arch"),
    ],
)
def test_unknown_type_or_arch_is_refused(
    driver: Driver, factory: Factory, dom_type: str, arch: str
) -> None:
    name = factory.name()
    with pytest.raises(DriverError) as caught:
        driver.define(Kind.DOMAIN, factory.domain_xml(name, dom_type=dom_type, arch=arch))
    # libvirt backends define with VALIDATE: its schema refuses these first (no such
    # type, an arch that is no word of its list); the sim says the host lacks them.
    assert caught.value.code in (ErrorCode.CONFIG_UNSUPPORTED, ErrorCode.INVALID_SPEC)
    assert name not in driver.snapshot().domains


def test_owner_mark_survives_define_and_is_read_back(driver: Driver, factory: Factory) -> None:
    mark = Ownership(spec_hash="sha256:abc123", source="specs/web.yaml", commit="c0ffee")
    dom = factory.name()
    driver.define(Kind.DOMAIN, factory.domain_xml(dom, owner=mark))
    net = define_network(driver, factory, owner=mark)
    live = driver.snapshot()
    assert live.domains[dom].owner == mark and live.domains[dom].managed
    assert live.networks[net].owner == mark and live.networks[net].managed


def test_redefine_replaces_owner_mark(driver: Driver, factory: Factory) -> None:
    dom = factory.name()
    driver.define(Kind.DOMAIN, factory.domain_xml(dom, owner=Ownership(spec_hash="one")))
    uuid = domain(driver, dom).uuid
    driver.define(Kind.DOMAIN, factory.domain_xml(dom, uuid=uuid, owner=Ownership(spec_hash="two")))
    assert domain(driver, dom).owner == Ownership(spec_hash="two")


# Domains: power state and autostart


def test_start_undefined_domain_is_refused(driver: Driver, factory: Factory) -> None:
    with pytest.raises(DriverError) as caught:
        driver.start(Kind.DOMAIN, factory.name())
    assert caught.value.code is ErrorCode.NO_SUCH_DOMAIN


def test_start_runs_domain_with_id_and_running_definition(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    driver.start(Kind.DOMAIN, name)
    live = domain(driver, name)
    assert live.state is DomainState.RUNNING
    assert isinstance(live.id, int) and live.id >= 0
    assert live.running_xml is not None and parse(live.running_xml).findtext("name") == name
    assert parse(live.xml).get("id") is None  # the persistent definition carries no id


def test_start_running_domain_is_refused(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    driver.start(Kind.DOMAIN, name)
    with pytest.raises(DriverError):
        driver.start(Kind.DOMAIN, name)


def test_destroy_powers_off(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    driver.start(Kind.DOMAIN, name)
    driver.destroy(Kind.DOMAIN, name)
    live = domain(driver, name)
    assert (live.state, live.id, live.running_xml) == (DomainState.SHUTOFF, None, None)


def test_shutdown_asks_and_returns_at_once(driver: Driver, factory: Factory) -> None:
    # A guest may ignore ACPI (ours boot no OS): shutdown only asks and never waits.
    name = define_domain(driver, factory)
    driver.start(Kind.DOMAIN, name)
    began = time.monotonic()
    driver.shutdown(Kind.DOMAIN, name)
    assert time.monotonic() - began < 5
    state = domain(driver, name).state
    assert state in (DomainState.RUNNING, DomainState.SHUTDOWN, DomainState.SHUTOFF)
    if state.active:
        driver.destroy(Kind.DOMAIN, name)
    assert domain(driver, name).state is DomainState.SHUTOFF


def test_domain_state_reads_one_guest_as_the_snapshot_does(
    driver: Driver, factory: Factory
) -> None:
    # The stop ladder polls this per guest: it must agree with the snapshot at every
    # step, and say None once a transient guest is gone.
    name = define_domain(driver, factory)
    assert driver.domain_state(factory.name()) is None  # never defined
    steps: list[tuple[Callable[[], None], DomainState | None]] = [
        (lambda: None, DomainState.SHUTOFF),
        (lambda: driver.start(Kind.DOMAIN, name), DomainState.RUNNING),
        (lambda: driver.suspend(name), DomainState.PAUSED),
        (lambda: driver.resume(name), DomainState.RUNNING),
        (lambda: driver.undefine(Kind.DOMAIN, name), DomainState.RUNNING),  # transient
        (lambda: driver.destroy(Kind.DOMAIN, name), None),  # and so gone
    ]
    for step, want in steps:
        step()
        assert driver.domain_state(name) is want
        found = driver.snapshot().domains.get(name)
        assert (found.state if found is not None else None) is want


@pytest.mark.parametrize("action", ["shutdown", "destroy", "suspend"])
def test_stopping_a_shutoff_domain_is_refused(
    driver: Driver, factory: Factory, action: str
) -> None:
    name = define_domain(driver, factory)
    call: Callable[[], None] = {
        "shutdown": lambda: driver.shutdown(Kind.DOMAIN, name),
        "destroy": lambda: driver.destroy(Kind.DOMAIN, name),
        "suspend": lambda: driver.suspend(name),
    }[action]
    with pytest.raises(DriverError):
        call()
    assert domain(driver, name).state is DomainState.SHUTOFF


def test_suspend_and_resume(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    driver.start(Kind.DOMAIN, name)
    driver.suspend(name)
    assert domain(driver, name).state is DomainState.PAUSED
    driver.resume(name)
    assert domain(driver, name).state is DomainState.RUNNING


def test_autostart_toggles(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    driver.set_autostart(Kind.DOMAIN, name, True)
    assert domain(driver, name).autostart is True
    driver.set_autostart(Kind.DOMAIN, name, False)
    assert domain(driver, name).autostart is False


# Domains: removal


def test_undefine_removes_shutoff_domain(driver: Driver, factory: Factory) -> None:
    name = define_domain(driver, factory)
    driver.undefine(Kind.DOMAIN, name)
    assert name not in driver.snapshot().domains


def test_undefine_unknown_domain_is_refused(driver: Driver, factory: Factory) -> None:
    with pytest.raises(DriverError) as caught:
        driver.undefine(Kind.DOMAIN, factory.name())
    assert caught.value.code is ErrorCode.NO_SUCH_DOMAIN


def test_undefine_running_domain_leaves_it_running_transient(
    driver: Driver, factory: Factory
) -> None:
    name = define_domain(driver, factory)
    driver.start(Kind.DOMAIN, name)
    driver.undefine(Kind.DOMAIN, name)
    live = domain(driver, name)
    assert (live.state, live.persistent) == (DomainState.RUNNING, False)
    driver.destroy(Kind.DOMAIN, name)
    assert name not in driver.snapshot().domains


# Networks


def test_network_define_start_autostart_destroy_undefine(driver: Driver, factory: Factory) -> None:
    name = define_network(driver, factory)
    live = network(driver, name)
    assert (live.active, live.persistent, live.autostart) == (False, True, False)
    assert UUID_RE.match(live.uuid) and parse(live.xml).findtext("uuid") == live.uuid
    driver.start(Kind.NETWORK, name)
    assert network(driver, name).active is True
    driver.set_autostart(Kind.NETWORK, name, True)
    assert network(driver, name).autostart is True
    driver.set_autostart(Kind.NETWORK, name, False)
    assert network(driver, name).autostart is False
    driver.destroy(Kind.NETWORK, name)
    assert network(driver, name).active is False
    driver.undefine(Kind.NETWORK, name)
    assert name not in driver.snapshot().networks


def test_network_shutdown_stops_at_once(driver: Driver, factory: Factory) -> None:
    name = define_network(driver, factory)
    driver.start(Kind.NETWORK, name)
    driver.shutdown(Kind.NETWORK, name)
    assert network(driver, name).active is False


def test_network_redefine_keeps_uuid(driver: Driver, factory: Factory) -> None:
    name = define_network(driver, factory)
    before = network(driver, name)
    driver.define(Kind.NETWORK, factory.network_xml(name, uuid=before.uuid))
    assert network(driver, name).uuid == before.uuid


def test_network_same_name_with_other_uuid_is_refused(driver: Driver, factory: Factory) -> None:
    name = define_network(driver, factory)
    with pytest.raises(DriverError):
        driver.define(Kind.NETWORK, factory.network_xml(name, uuid=str(uuidlib.uuid4())))


def test_start_undefined_network_is_refused(driver: Driver, factory: Factory) -> None:
    with pytest.raises(DriverError) as caught:
        driver.start(Kind.NETWORK, factory.name())
    assert caught.value.code is ErrorCode.NO_SUCH_NETWORK


def test_start_active_network_is_refused(driver: Driver, factory: Factory) -> None:
    name = define_network(driver, factory)
    driver.start(Kind.NETWORK, name)
    with pytest.raises(DriverError):
        driver.start(Kind.NETWORK, name)


def test_undefine_active_network_refuses_or_leaves_it_transient(
    driver: Driver, factory: Factory
) -> None:
    # libvirt's drivers differ: qemu's network driver makes it transient, test:// refuses.
    # Either way it stays active, so a planner must destroy before it undefines.
    name = define_network(driver, factory)
    driver.start(Kind.NETWORK, name)
    try:
        driver.undefine(Kind.NETWORK, name)
    except DriverError as exc:
        assert exc.code is ErrorCode.OPERATION_INVALID
        assert network(driver, name).persistent is True
    else:
        assert network(driver, name).persistent is False
    assert network(driver, name).active is True


# Connection-level behaviour


def test_capabilities_describe_guests(driver: Driver) -> None:
    caps = parse_capabilities(driver.capabilities())
    assert caps.guests and all(g.arch for g in caps.guests)


def test_domain_capabilities_list_the_tpms_offered(backend: Backend, driver: Driver) -> None:
    guest = "test" if backend.id == "test" else "qemu"
    found = driver.domain_capabilities(guest, "x86_64" if guest == "qemu" else "i686", None)
    if backend.id == "test":  # libvirt's test driver has none: the check is skipped there
        assert found is None
        return
    assert found is not None
    tpm = parse(found).find("devices/tpm")
    assert tpm is not None and tpm.get("supported") == "yes"
    assert {v.text for v in tpm.iterfind("enum[@name='model']/value")} >= {"tpm-tis"}


def test_read_only_connection_reads_but_refuses_every_write(
    backend: Backend, driver: Driver, factory: Factory
) -> None:
    name = define_domain(driver, factory)
    net = define_network(driver, factory)
    reader = backend.connect(readonly=True)
    try:
        assert name in reader.snapshot().domains and net in reader.snapshot().networks
        writes: list[Callable[[], None]] = [
            lambda: reader.define(Kind.DOMAIN, factory.domain_xml(name, memory_mib=128)),
            lambda: reader.define(Kind.NETWORK, factory.network_xml(factory.name())),
            lambda: reader.start(Kind.DOMAIN, name),
            lambda: reader.start(Kind.NETWORK, net),
            lambda: reader.set_autostart(Kind.DOMAIN, name, True),
            lambda: reader.undefine(Kind.DOMAIN, name),
            lambda: reader.undefine(Kind.NETWORK, net),
        ]
        for write in writes:
            with pytest.raises(DriverError) as caught:
                write()
            assert caught.value.code is ErrorCode.OPERATION_INVALID
    finally:
        reader.close()
    live = domain(driver, name)
    assert (live.state, live.autostart, memory_kib(live.xml)) == (
        DomainState.SHUTOFF,
        False,
        64 * 1024,
    )
    assert network(driver, net).active is False


def test_subscribers_see_lifecycle_events(driver: Driver, factory: Factory) -> None:
    seen: list[Event] = []
    arrived = threading.Condition()

    def record(event: Event) -> None:
        with arrived:
            seen.append(event)
            arrived.notify_all()

    unsubscribe = driver.subscribe(record)
    name = factory.name()
    try:
        driver.define(Kind.DOMAIN, factory.domain_xml(name))
        driver.start(Kind.DOMAIN, name)
        driver.destroy(Kind.DOMAIN, name)
        driver.undefine(Kind.DOMAIN, name)
        wanted = [EventType.DEFINED, EventType.STARTED, EventType.STOPPED, EventType.UNDEFINED]

        def ours() -> list[EventType]:
            return [e.type for e in seen if e.name == name and e.type in wanted]

        with arrived:
            arrived.wait_for(lambda: len(ours()) >= len(wanted), timeout=10)
            assert ours() == wanted
            assert all(e.kind is Kind.DOMAIN for e in seen if e.name == name)
    finally:
        unsubscribe()


# Node facts (DomainSet placement by memory)


def test_node_info_reports_memory_free_memory_and_cpus(driver: Driver) -> None:
    node = driver.node_info()
    assert node.memory_kib > 0 and node.cpus >= 1
    # Free memory is the host's own figure: within what the host has, never negative.
    assert 0 <= node.free_kib <= node.memory_kib
