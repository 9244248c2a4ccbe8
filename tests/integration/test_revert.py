"""A restart-pending change reverted before the guest restarted is a plain redefine: the
running guest already matches the specs, so nothing restarts, even with --allow-restart.
On the sim and on qemu:///system.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, purge_libvirt, require_connection
from tests.integration.crashkit import virtctl
from virtctl.drivers import connect


@pytest.fixture(params=["sim:///default", "qemu:///system"])
def uri(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param.startswith("qemu"):
        require_connection(request.param)
    yield request.param


def guest_id(uri: str, state: Path, name: str) -> int | None:
    driver = connect(uri, env={"VIRTCTL_STATE_DIR": str(state)})
    try:
        return driver.snapshot().domains[name].id
    finally:
        driver.close()


def test_reverting_a_pending_nic_restarts_nothing(uri: str, tmp_path: Path) -> None:
    name = f"{PREFIX}{secrets.token_hex(4)}"
    base = (f"kind: Domain\nname: {name}\ntype: qemu\nmemory: 32MiB\n"
            "os: {type: hvm, arch: x86_64, machine: pc}\n")
    nic = f"{base}interfaces: [{{type: user, mac: \"52:54:00:{secrets.token_hex(1)}:00:01\"}}]\n"
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    spec = specs / "guest.yaml"
    try:
        spec.write_text(base)
        assert virtctl(state, "-c", uri, "apply", "-f", str(specs)).returncode == 0
        started = guest_id(uri, state, name)
        spec.write_text(nic)
        pending = virtctl(state, "-c", uri, "apply", "--no-live", "-f", str(specs))
        assert pending.returncode == 0 and "restart-pending" in pending.stdout
        spec.write_text(base)
        revert = virtctl(state, "-c", uri, "apply", "--allow-restart", "-f", str(specs))
        assert revert.returncode == 0, revert.stderr
        assert f"~ domain/{name}  (redefine)" in revert.stdout
        assert "0 running guests to restart" in revert.stdout
        assert "shutdown" not in revert.stderr and "start " not in revert.stderr
        assert guest_id(uri, state, name) == started  # the same QEMU process
        assert virtctl(state, "-c", uri, "diff", "-f", str(specs)).returncode == 0
    finally:
        if uri.startswith("qemu"):
            purge_libvirt(uri, [name])
