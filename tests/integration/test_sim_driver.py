"""The embedded `sim` hypervisor: persistent, crash- and concurrency-safe, and as strict
as libvirt about what it refuses."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from virtctl.capabilities import parse_capabilities
from virtctl.drivers import connect
from virtctl.drivers.base import Driver, Event, EventType
from virtctl.drivers.sim.driver import SimDriver
from virtctl.errors import DriverError, ErrorCode, ErrorDomain
from virtctl.model import DomainState, Kind
from virtctl.uri import parse_uri

D, N = Kind.DOMAIN, Kind.NETWORK
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"
Open = Callable[..., SimDriver]
REPO = Path(__file__).resolve().parents[2]


def domain_xml(name: str, *, nets: tuple[str, ...] = (), memory_mib: int = 256,
               dom_type: str = "kvm", arch: str = "x86_64", uuid: str = "") -> str:
    ifaces = "".join(f'<interface type="network"><source network="{n}"/></interface>'
                     for n in nets)
    uuid_el = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (f'<domain type="{dom_type}"><name>{name}</name>{uuid_el}'
            f'<memory unit="MiB">{memory_mib}</memory><os><type arch="{arch}">hvm</type></os>'
            f"<devices>{ifaces}</devices></domain>")


def network_xml(name: str) -> str:
    return f"<network><name>{name}</name><forward mode='nat'/></network>"


def test_definitions_and_state_survive_a_new_driver_instance(sim: Open) -> None:
    first = sim()
    first.define(N, network_xml("lan"))
    first.start(N, "lan")
    first.define(D, domain_xml("web", nets=("lan",)))
    first.start(D, "web")
    first.set_autostart(D, "web", True)
    live = sim().snapshot()
    assert live.networks["lan"].active
    web = live.domains["web"]
    assert (web.state, web.autostart, web.persistent) == (DomainState.RUNNING, True, True)


def test_state_survives_across_processes(sim: Open, state_dir: Path) -> None:
    sim().define(D, domain_xml("web"))
    code = (
        "from virtctl.drivers import connect\n"
        "from virtctl.model import Kind\n"
        "d = connect('sim:///default')\n"
        "assert 'web' in d.snapshot().domains\n"
        "d.start(Kind.DOMAIN, 'web')\n"
        "d.define(Kind.DOMAIN, open('dom.xml').read())\n"
    )
    (state_dir.parent / "dom.xml").write_text(domain_xml("db"))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=state_dir.parent,
                   env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30)
    live = sim().snapshot()
    assert live.domains["web"].state is DomainState.RUNNING
    assert "db" in live.domains


def test_a_crash_mid_write_leaves_records_whole(sim: Open, state_dir: Path) -> None:
    driver = sim()
    driver.define(D, domain_xml("web"))
    before = driver.snapshot().domains["web"]
    # A writer killed after writing its temporary file and before renaming it over the
    # record: the process dies (os._exit) inside the store's rename.
    code = (
        "import os, sys\n"
        "from virtctl.drivers import connect\n"
        "from virtctl.model import Kind\n"
        "d = connect('sim:///default')\n"
        "os.replace = lambda *a, **k: os._exit(3)\n"
        "d.define(Kind.DOMAIN, sys.argv[1])\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", code, domain_xml("web", memory_mib=4096, uuid=before.uuid)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=30, check=False)
    assert crashed.returncode == 3
    # Its first rename is the uuid claim (claims go before records): the temp file is
    # left there, and the record was not touched at all.
    store = state_dir / "sim" / "default"
    assert len(list(store.rglob(".tmp-*"))) == 1, "the crash should leave its temp file"
    assert [p.name for p in (store / "domains").iterdir()] == ["web.json"]
    after = sim().snapshot()
    assert list(after.domains) == ["web"]
    assert after.domains["web"] == before
    sim().define(D, domain_xml("db"))  # and the store keeps working
    assert sorted(sim().snapshot().domains) == ["db", "web"]


def _define_many(state: str, prefix: str, count: int) -> None:
    env = {**os.environ, "VIRTCTL_STATE_DIR": state, "VIRTCTL_SIM_FSYNC": "0"}
    driver = SimDriver(parse_uri("sim:///default"), env=env)
    for i in range(count):
        driver.define(D, domain_xml(f"{prefix}-{i}"))
        driver.start(D, f"{prefix}-{i}")


def test_two_processes_writing_at_once_do_not_corrupt_state(sim: Open,
                                                            state_dir: Path) -> None:
    sim()  # create the state directory before both writers race for it
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_define_many, args=(str(state_dir), p, 15)) for p in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    live = sim().snapshot()
    assert sorted(live.domains) == sorted(f"{p}-{i}" for p in "ab" for i in range(15))
    ids = [d.id for d in live.domains.values()]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(set(ids)) == len(ids), "two guests got the same id"
    uuids = {d.uuid for d in live.domains.values()}
    assert len(uuids) == 30


def test_ids_are_assigned_on_start_and_never_reused(sim: Open) -> None:
    driver = sim()
    for name in ("a", "b"):
        driver.define(D, domain_xml(name))
    assert driver.snapshot().domains["a"].id is None
    driver.start(D, "a")
    driver.start(D, "b")
    live = driver.snapshot().domains
    first_a, first_b = live["a"].id, live["b"].id
    assert first_a is not None and first_b is not None and first_a != first_b
    driver.destroy(D, "a")
    assert driver.snapshot().domains["a"].id is None
    driver.start(D, "a")
    again = driver.snapshot().domains["a"]
    assert again.id not in (None, first_a, first_b)
    assert again.running_xml is not None and f'id="{again.id}"' in again.running_xml


def test_define_fills_uuid_macs_and_current_memory(sim: Open) -> None:
    driver = sim()
    driver.define(D, domain_xml("web", nets=("lan",), memory_mib=512))
    driver.define(D, domain_xml("pv", dom_type="xen").replace(
        "<devices>", '<devices><interface type="bridge"><source bridge="xenbr0"/></interface>'))
    from virtctl.xmlutil import parse

    web = parse(driver.snapshot().domains["web"].xml)
    assert web.findtext("uuid") == driver.snapshot().domains["web"].uuid
    assert web.find("memory").get("unit") == "KiB" and web.findtext("memory") == "524288"  # type: ignore[union-attr]
    assert web.findtext("currentMemory") == "524288"
    assert web.find("devices/interface/mac").get("address").startswith("52:54:00:")  # type: ignore[union-attr]
    pv = parse(driver.snapshot().domains["pv"].xml)
    assert pv.find("devices/interface/mac").get("address").startswith("00:16:3e:")  # type: ignore[union-attr]


def test_redefine_keeps_uuid_and_runtime_state(sim: Open) -> None:
    driver = sim()
    driver.define(D, domain_xml("web"))
    driver.start(D, "web")
    before = driver.snapshot().domains["web"]
    driver.define(D, domain_xml("web", memory_mib=1024, uuid=before.uuid))
    after = driver.snapshot().domains["web"]
    assert after.uuid == before.uuid and after.state is DomainState.RUNNING
    assert after.id == before.id and "1048576" in after.xml


def refused(call: Callable[[], object]) -> DriverError:
    with pytest.raises(DriverError) as caught:
        call()
    assert caught.value.domain is ErrorDomain.SIM
    assert caught.value.message
    return caught.value


def test_refuses_to_start_an_undefined_domain(sim: Open) -> None:
    assert refused(lambda: sim().start(D, "ghost")).code is ErrorCode.NO_SUCH_DOMAIN
    assert refused(lambda: sim().start(N, "ghost")).code is ErrorCode.NO_SUCH_NETWORK


def test_refuses_a_second_domain_with_the_same_name_and_another_uuid(sim: Open) -> None:
    driver = sim()
    driver.define(D, domain_xml("web", uuid=U1))
    error = refused(lambda: driver.define(D, domain_xml("web", uuid=U2)))
    assert error.code is ErrorCode.OPERATION_FAILED and U1 in error.message
    assert driver.snapshot().domains["web"].uuid == U1


def test_refuses_a_second_domain_with_the_same_uuid(sim: Open) -> None:
    driver = sim()
    driver.define(D, domain_xml("web", uuid=U1))
    assert refused(lambda: driver.define(D, domain_xml("db", uuid=U1))).code is \
        ErrorCode.OPERATION_FAILED
    assert "db" not in driver.snapshot().domains


@pytest.mark.parametrize("xml", [
    pytest.param(domain_xml("c", dom_type="lxc"), id="domain-type-lxc"),
    pytest.param(domain_xml("c", arch="aarch64"), id="arch-aarch64"),
    pytest.param(domain_xml("c", arch="s390x", dom_type="qemu"), id="arch-s390x"),
])
def test_refuses_what_its_capabilities_lack(sim: Open, xml: str) -> None:
    driver = sim()
    assert refused(lambda: driver.define(D, xml)).code is ErrorCode.CONFIG_UNSUPPORTED
    assert driver.snapshot().domains == {}


def test_refuses_to_undefine_an_active_network(sim: Open) -> None:
    driver = sim()
    driver.define(N, network_xml("lan"))
    driver.start(N, "lan")
    assert refused(lambda: driver.undefine(N, "lan")).code is ErrorCode.OPERATION_INVALID
    driver.destroy(N, "lan")
    driver.undefine(N, "lan")
    assert driver.snapshot().networks == {}


def test_refuses_to_start_a_domain_whose_network_is_inactive(sim: Open) -> None:
    driver = sim()
    driver.define(N, network_xml("lan"))
    driver.define(D, domain_xml("web", nets=("lan",)))
    assert refused(lambda: driver.start(D, "web")).code is ErrorCode.OPERATION_INVALID
    assert driver.snapshot().domains["web"].state is DomainState.SHUTOFF


@pytest.mark.parametrize("call", [
    pytest.param(lambda d: d.define(D, domain_xml("x")), id="define"),
    pytest.param(lambda d: d.start(D, "web"), id="start"),
    pytest.param(lambda d: d.set_autostart(D, "web", True), id="autostart"),
    pytest.param(lambda d: d.undefine(D, "web"), id="undefine"),
])
def test_read_only_connection_refuses_every_change(sim: Open, call: Callable[[Driver], None],
                                                   state_dir: Path) -> None:
    sim().define(D, domain_xml("web"))
    before = sim().snapshot()
    reader = connect("sim:///default", readonly=True)
    assert refused(lambda: call(reader)).code is ErrorCode.OPERATION_INVALID
    assert sim().snapshot() == before


def test_capabilities_offer_xen_kvm_and_qemu_on_x86_64_and_i686(sim: Open) -> None:
    caps = parse_capabilities(sim().capabilities())
    offered = {(g.os_type, g.arch, d.type) for g in caps.guests for d in g.domains}
    for arch in ("x86_64", "i686"):
        assert {("xen", arch, "xen"), ("hvm", arch, "xen"), ("hvm", arch, "kvm"),
                ("hvm", arch, "qemu")} <= offered
    assert caps.host_arch == "x86_64"


def test_undefining_a_running_domain_leaves_it_running_transient(sim: Open) -> None:
    driver = sim()
    driver.define(D, domain_xml("web"))
    driver.start(D, "web")
    driver.undefine(D, "web")
    web = driver.snapshot().domains["web"]
    assert web.state is DomainState.RUNNING and not web.persistent
    driver.destroy(D, "web")
    assert "web" not in driver.snapshot().domains


def test_subscribe_delivers_events_from_any_process(sim: Open, state_dir: Path) -> None:
    seen: list[Event] = []
    got_all = threading.Event()

    def on_event(event: Event) -> None:
        seen.append(event)
        if len(seen) >= 3:
            got_all.set()

    driver = sim()
    stop = driver.subscribe(on_event)
    try:
        other = sim()  # another connection, as another process would be
        other.define(D, domain_xml("web"))
        other.start(D, "web")
        other.destroy(D, "web")
        assert got_all.wait(5), seen
    finally:
        stop()
    assert [(e.type, e.kind, e.name) for e in seen] == [
        (EventType.DEFINED, D, "web"), (EventType.STARTED, D, "web"),
        (EventType.STOPPED, D, "web")]
    count = len(seen)
    other.start(D, "web")
    time.sleep(0.2)
    assert len(seen) == count, "events delivered after unsubscribe"


def test_injected_faults_fail_the_named_call_only(sim: Open) -> None:
    driver = sim()
    driver.define(D, domain_xml("a"))
    driver.define(D, domain_xml("b"))
    driver.inject_fault("start", D, "a")
    assert refused(lambda: driver.start(D, "a")).code is ErrorCode.OPERATION_FAILED
    driver.start(D, "b")
    driver.clear_faults()
    driver.start(D, "a")
    assert driver.snapshot().domains["a"].state is DomainState.RUNNING


def test_sim_uri_name_selects_the_state_directory(state_dir: Path) -> None:
    env = {"VIRTCTL_STATE_DIR": str(state_dir)}
    connect("sim:///lab", env=env).define(D, domain_xml("web"))
    assert (state_dir / "sim" / "lab" / "domains" / "web.json").exists()
    assert "web" not in connect("sim:///other", env=env).snapshot().domains


@pytest.mark.parametrize("uri", [
    pytest.param("sim://remote/lab", id="host"),
    pytest.param("sim+ssh:///lab", id="transport"),
    pytest.param("sim:///a/b", id="nested-name"),
])
def test_sim_refuses_remote_or_nested_uris(state_dir: Path, uri: str) -> None:
    from virtctl.errors import SpecError

    with pytest.raises(SpecError) as caught:
        connect(uri, env={"VIRTCTL_STATE_DIR": str(state_dir)})
    assert caught.value.code is ErrorCode.INVALID_URI
