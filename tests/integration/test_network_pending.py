"""A network redefined while active keeps running its old definition until it restarts;
every later run reports that restart as pending (not only the run that redefined it),
and so does `get networks`; a restart clears it. On the sim and on a real network
driver (qemu:///system: an isolated network, no DNS and no DHCP, so no dnsmasq runs and
nothing sends traffic; named vctl-test-<random> and removed by name afterwards)."""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, libvirt_module, require_connection
from virtctl import api
from virtctl.model import Desired, Kind, ObjectKey
from virtctl.render.report import network_pending_of


def spec(name: str, address: str) -> str:
    return textwrap.dedent(f"""\
        kind: Network
        name: {name}
        bridge: {{name: vctlbr{name[-4:]}}}
        dns: {{enable: false}}
        ips:
          - {{address: {address}, netmask: 255.255.255.0}}
        """)


@pytest.fixture(params=["sim", "qemu"])
def uri(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "sim":
        monkeypatch.setenv("VIRTCTL_STATE_DIR", str(tmp_path / "state"))
        yield "sim:///pending"
        return
    require_connection("qemu:///system")
    yield "qemu:///system"


@pytest.fixture
def name(uri: str) -> Iterator[str]:
    net = PREFIX + secrets.token_hex(2)
    yield net
    if uri.startswith("qemu"):
        conn = libvirt_module().open(uri)
        try:
            for found in conn.listAllNetworks(0):
                if found.name() == net:
                    if found.isActive():
                        found.destroy()
                    found.undefine()
        finally:
            conn.close()


def load(folder: Path, text: str) -> Desired:
    (folder / "net.yaml").write_text(text)
    return api.load([str(folder)], use_cache=False)


def pending(planned: api.Plan, name: str) -> list[str]:
    found = planned.pending_of(ObjectKey(Kind.NETWORK, name))
    return [c.path for c in found.changes] if found is not None else []


def test_a_restart_stays_pending_until_it_happens(uri: str, name: str, tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    first = load(folder, spec(name, "192.168.237.1"))
    with api.connect(uri) as driver:
        created = api.reconcile(first, driver)
        assert created.return_code == 0 and not created.remaining.pending
        assert not api.plan(first, driver).pending  # the running definition is no change
        assert network_pending_of(driver.snapshot().networks[name]) is None

        moved = load(folder, spec(name, "192.168.237.254"))
        redefined = api.reconcile(moved, driver)  # no restart allowed: it waits
        assert redefined.report.return_code == 0
        assert [r.action.verb for r in redefined.report.results] == ["define"]
        assert pending(redefined.remaining, name)
        later = api.plan(moved, driver)  # a later run, with nothing left to define
        assert later.empty and pending(later, name) == pending(redefined.remaining, name)
        assert network_pending_of(driver.snapshot().networks[name]) == "restart"  # `get`

        policy = api.Policy(allow_restart=True)
        restarted = api.reconcile(moved, driver, policy=policy)
        assert [r.action.verb for r in restarted.report.results] == ["destroy", "start"]
        assert restarted.return_code == 0 and not restarted.remaining.pending
        assert not api.plan(moved, driver).pending
        assert network_pending_of(driver.snapshot().networks[name]) is None
