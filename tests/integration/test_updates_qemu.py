"""Restart-pending against a real running QEMU guest on qemu:///system: the running
definition libvirt reports (aliases, addresses, ports, the actual balloon) must not look
pending, a memory change must, and a restart clears it. The guest has no OS, so it
ignores the ACPI shutdown: the restart goes down the ladder to destroy (--force-stop)
after its 1-second shutdownTimeout. Objects are named vctl-upd-<random> and removed by
name afterwards; nothing else on the host is touched."""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import libvirt_module, require_connection
from virtctl import api
from virtctl.render.report import pending_of


def spec(name: str, memory: str) -> str:
    return textwrap.dedent(f"""\
        kind: Domain
        name: {name}
        type: qemu
        memory: {memory}
        vcpus: 1
        os: {{type: hvm, arch: x86_64, machine: pc}}
        graphics:
          - {{type: vnc, port: -1, autoport: true, listen: 127.0.0.1}}
        serials:
          - type: pty
        consoles:
          - type: pty
        shutdownTimeout: 1
        """)


@pytest.fixture
def guest() -> Iterator[str]:
    require_connection("qemu:///system")
    name = "vctl-upd-" + secrets.token_hex(4)
    try:
        yield name
    finally:
        libvirt = libvirt_module()
        conn = libvirt.open("qemu:///system")
        try:
            for dom in conn.listAllDomains(0):
                if dom.name() == name:
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
        finally:
            conn.close()


def test_restart_pending_on_a_real_running_guest(guest: str, tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(spec(guest, "64MiB"))
    with api.connect("qemu:///system") as driver:
        first = api.reconcile(api.load([str(path)], use_cache=False), driver)
        assert first.report.return_code == 0 and first.remaining.empty
        dom = driver.snapshot().domains[guest]
        assert dom.state.active and dom.running_xml is not None
        assert pending_of(dom) is None  # libvirt's runtime additions are not pending
        path.write_text(spec(guest, "96MiB"))
        changed = api.load([str(path)], use_cache=False)
        result = api.reconcile(changed, driver)
        assert result.report.return_code == 0 and result.remaining.empty
        assert [p.key.name for p in result.remaining.pending] == [guest]
        assert pending_of(driver.snapshot().domains[guest]) == "restart"
        policy = api.Policy(allow_restart=True, force_stop=True)
        restarted = api.reconcile(changed, driver, policy=policy)
        assert restarted.report.return_code == 0, restarted.report
        steps = [(r.action.verb, r.detail) for r in restarted.report.results]
        assert steps[0][0] == "shutdown" and "destroyed" in steps[0][1]
        assert [s for s, _ in steps] == ["shutdown", "start"]
        dom = driver.snapshot().domains[guest]
        assert dom.state.active and pending_of(dom) is None
        again = api.plan(changed, driver, policy=policy)
        assert again.empty and not again.pending
