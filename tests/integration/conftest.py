"""Fixtures for integration tests: an isolated sim state directory, spec writers, CLI runner.

Every test that touches a hypervisor gets its own `$VIRTCTL_STATE_DIR` under tmp_path,
with the connection variables cleared so nothing leaks in from the developer's shell.
The spec builders are reached through the `kit` fixture (tests/ is not a package, so
test modules cannot import this file).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.contract.support import purge_libvirt, start_remote
from tests.integration.etcdcluster import EtcdCluster, require_etcd
from tests.integration.libvirtd_tcp import RemoteLibvirtd
from virtctl.cli.commands import main
from virtctl.drivers.sim.driver import SimDriver
from virtctl.model import Kind
from virtctl.uri import parse_uri

REPO = Path(__file__).resolve().parents[2]
NS = "https://virtctl.dev/xmlns/1"


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("VIRTCTL_STATE_DIR", str(root))
    monkeypatch.setenv("VIRTCTL_SIM_FSYNC", "0")  # durability is not under test; speed is
    monkeypatch.delenv("VIRTCTL_CONNECT", raising=False)
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    return root


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def runtime(state: str | None = None, autostart: bool | None = None,
            active: bool | None = None) -> str:
    attrs = ""
    if state is not None:
        attrs += f' state="{state}"'
    if autostart is not None:
        attrs += f' autostart="{"yes" if autostart else "no"}"'
    if active is not None:
        attrs += f' active="{"yes" if active else "no"}"'
    if not attrs:
        return ""
    return f'<metadata><virtctl:runtime xmlns:virtctl="{NS}"{attrs}/></metadata>'


def domain_xml(name: str, *, nets: tuple[str, ...] = (), state: str | None = None,
               autostart: bool | None = None, memory_mib: int = 256,
               dom_type: str = "kvm", arch: str = "x86_64", uuid: str | None = None,
               macs: tuple[str, ...] = ()) -> str:
    ifaces = ""
    for i, net in enumerate(nets):
        mac = f'<mac address="{macs[i]}"/>' if i < len(macs) else ""
        ifaces += f'<interface type="network">{mac}<source network="{net}"/></interface>'
    uuid_el = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (
        f'<domain type="{dom_type}"><name>{name}</name>{uuid_el}'
        f"{runtime(state, autostart)}"
        f'<memory unit="MiB">{memory_mib}</memory><vcpu>1</vcpu>'
        f'<os><type arch="{arch}">hvm</type></os>'
        f"<devices>{ifaces}</devices></domain>\n"
    )


def network_xml(name: str, *, active: bool | None = None, autostart: bool | None = None,
                uuid: str | None = None) -> str:
    uuid_el = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (
        f"<network><name>{name}</name>{uuid_el}{runtime(active=active, autostart=autostart)}"
        '<forward mode="nat"/><ip address="10.9.0.1" netmask="255.255.255.0"/></network>\n'
    )


@pytest.fixture
def cli(state_dir: Path) -> Callable[..., CliResult]:
    """Run `virtctl ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*argv: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def sim(state_dir: Path) -> Callable[..., SimDriver]:
    """Open the sim host NAME (default 'default') in the test's state directory."""

    def open_(name: str = "default", *, readonly: bool = False) -> SimDriver:
        return SimDriver(parse_uri(f"sim:///{name}"), readonly=readonly, env=dict(os.environ))

    return open_


def records(state_dir: Path, host: str = "default") -> dict[str, list[str]]:
    """The object records on disk for one sim host: {'domains': [...], 'networks': [...]}."""
    root = state_dir / "sim" / host
    out: dict[str, list[str]] = {}
    for kind in Kind:
        folder = root / f"{kind}s"
        out[f"{kind}s"] = sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []
    return out


def run_virtctl(*argv: str, env: dict[str, str], stdin: str | None = None,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `python -m virtctl` in a real subprocess."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "virtctl", *argv], input=stdin, capture_output=True,
        text=True, env=full_env, timeout=timeout, cwd=REPO, check=False,
    )


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every mutating SimDriver call made while the test runs."""
    calls: list[str] = []
    for op in ("define", "undefine", "start", "shutdown", "destroy", "suspend", "resume",
               "set_autostart", "set_memory"):
        original = getattr(SimDriver, op)

        def spy(self: SimDriver, *args: object, _op: str = op, _orig: object = original,
                **kwargs: object) -> object:
            calls.append(f"{_op}{args}")
            return _orig(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(SimDriver, op, spy)
    yield calls


@pytest.fixture
def kit() -> SimpleNamespace:
    """Spec builders and helpers for test modules."""
    return SimpleNamespace(
        REPO=REPO, write=write, runtime=runtime, domain_xml=domain_xml,
        network_xml=network_xml, records=records, run_virtctl=run_virtctl,
    )


@pytest.fixture(scope="session")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RemoteLibvirtd]]:
    """Two private libvirtd daemons on 127.0.0.1 (see libvirtd_tcp.py), shared by the
    many-hosts tests; each test removes what it created."""
    started: list[RemoteLibvirtd] = []
    try:
        for i in range(2):
            started.append(start_remote(tmp_path_factory.mktemp(f"libvirtd-{i}")))
        yield started
    finally:
        for daemon in started:
            try:
                if daemon.process is not None:
                    purge_libvirt(daemon.uri)
            finally:
                daemon.stop()


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A 3-member etcd cluster on loopback (tests/integration/etcdcluster.py), stopped at
    the end of the test."""
    require_etcd()
    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
