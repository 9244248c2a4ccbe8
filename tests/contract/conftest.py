"""Fixtures for the driver conformance suite: one `driver` per backend, cleaned up.

Every test in tests/contract runs against each backend: the embedded `sim` driver (state
in a temp dir), libvirt's in-process `test:///default`, the host's `qemu:///system`, and
a private libvirtd reached through `qemu+tcp://127.0.0.1:PORT/system`. A libvirt backend
that is unavailable is skipped with its reason on a developer machine and fails under CI
(env CI set): CI must exercise them all.

Objects are named `vctl-test-<random>`; whatever a test leaves (even when it fails) is
destroyed and undefined by the fixture finalizer, through libvirt directly for libvirt
backends so cleanup does not depend on the code under test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import (
    Backend,
    Factory,
    libvirt_module,
    purge_driver,
    purge_libvirt,
    require_connection,
    remote_daemon,
)
from tests.integration.libvirtd_tcp import RemoteLibvirtd
from virtctl.drivers import Driver

BACKENDS = ["sim", "test", "qemu", "qemu+tcp"]


@pytest.fixture(scope="session")
def remote_libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteLibvirtd]:
    with remote_daemon(tmp_path_factory.mktemp("libvirtd-tcp")) as daemon:
        yield daemon


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind = request.param
    env = {**os.environ, "VIRTCTL_STATE_DIR": str(tmp_path / "state")}
    if kind == "sim":
        return Backend("sim", "sim:///contract", env, is_libvirt=False)
    if kind == "test":
        libvirt_module()
        return Backend("test", "test:///default", env, is_libvirt=True)
    if kind == "qemu":
        require_connection("qemu:///system")
        return Backend("qemu", "qemu:///system", env, is_libvirt=True)
    daemon: RemoteLibvirtd = request.getfixturevalue("remote_libvirtd")
    return Backend("qemu+tcp", daemon.uri, env, is_libvirt=True)


@pytest.fixture
def driver(backend: Backend) -> Iterator[Driver]:
    opened = backend.connect()
    try:
        yield opened
    finally:
        # test:///default lives only while a connection is open: purge before closing.
        try:
            if backend.is_libvirt:
                purge_libvirt(backend.uri)
            else:
                purge_driver(opened)
        finally:
            opened.close()


@pytest.fixture
def factory() -> Factory:
    return Factory()
