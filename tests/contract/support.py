"""Shared pieces of the driver conformance suite: backends and test definitions."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.libvirtd_tcp import RemoteLibvirtd
from virtctl.drivers import Driver, connect
from virtctl.metadata import set_owner
from virtctl.errors import DriverError
from virtctl.model import STATE_VOLUME, Kind, Ownership
from virtctl.xmlutil import parse, tostring

# Every object a test run makes starts with PREFIX, which names the run: cleanup by
# prefix removes this run's leftovers and never another run's (two suites, or a CI job
# beside a developer's, may share a libvirtd). ALL_RUNS is what all runs share.
ALL_RUNS = "vctl-test-"
PREFIX = f"{ALL_RUNS}{secrets.token_hex(2)}-"
TEST_DIRS = Path("/var/tmp")  # where storage tests make their vctl-test-* directories
# Subnets 10.R.S.0/24 and bridge numbers handed out in turn, so two networks of one
# session never clash (each test removes its networks again). R is the run's own (from
# its token), so two runs on one host (two suites, or CI beside a developer) rarely
# share a /16, and a subnet some interface on the host already routes is skipped.
_RUN_OCTET = 100 + int(PREFIX[len(ALL_RUNS):-1], 16) % 100
_SUBNETS = itertools.cycle(range(256))
_BRIDGES = itertools.count(os.getpid() % 1000 * 100)


def _routed() -> set[str]:
    """Destinations of the host's IPv4 routes, as dotted /24 prefixes ("10.1.2")."""
    found = set()
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) > 2:
            raw = int(fields[1], 16).to_bytes(4, "little")
            found.add(".".join(str(b) for b in raw[:3]))
    return found


def free_bridge() -> str:
    """A bridge name of this session no interface on the host has (a run killed before
    its cleanup may have left its bridge behind)."""
    while True:
        name = f"vctlbr{next(_BRIDGES)}"
        if not Path("/sys/class/net", name).exists():
            return name


def free_subnet() -> str:
    """A /24 prefix ("10.R.S") no interface on the host routes now."""
    taken = _routed()
    for _ in range(256):
        prefix = f"10.{_RUN_OCTET}.{next(_SUBNETS)}"
        if prefix not in taken:
            return prefix
    raise AssertionError(f"no free subnet in 10.{_RUN_OCTET}.0.0/16")


@dataclass
class Backend:
    id: str
    uri: str
    env: dict[str, str]
    is_libvirt: bool

    def connect(self, *, readonly: bool = False) -> Driver:
        return connect(self.uri, readonly=readonly, env=self.env)


class Factory:
    """Names and minimal definitions every backend accepts (qemu, x86_64, pc, no disk)."""

    def name(self) -> str:
        return PREFIX + secrets.token_hex(4)

    def domain_xml(
        self,
        name: str,
        *,
        memory_mib: int = 64,
        uuid: str | None = None,
        network: str | None = None,
        owner: Ownership | None = None,
        dom_type: str = "qemu",
        arch: str = "x86_64",
    ) -> str:
        uuid_elem = f"<uuid>{uuid}</uuid>" if uuid else ""
        nic = (
            f"<interface type='network'><source network='{network}'/>"
            "<model type='virtio'/><rom enabled='no'/></interface>"
            if network
            else ""
        )
        xml = (
            f"<domain type='{dom_type}'><name>{name}</name>{uuid_elem}"
            f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>"
            f"<os><type arch='{arch}' machine='pc'>hvm</type></os>"
            f"<devices>{nic}</devices></domain>"
        )
        return self._owned(xml, owner)

    def network_xml(
        self, name: str, *, uuid: str | None = None, owner: Ownership | None = None
    ) -> str:
        # Isolated (no <forward>), no DHCP and no DNS, so libvirt starts no dnsmasq and
        # nothing listens or sends anywhere; the address only configures the bridge.
        subnet = free_subnet()
        bridge = free_bridge()
        uuid_elem = f"<uuid>{uuid}</uuid>" if uuid else ""
        xml = (
            f"<network><name>{name}</name>{uuid_elem}<bridge name='{bridge}'/>"
            "<dns enable='no'/>"
            f"<ip address='{subnet}.1' netmask='255.255.255.0'/></network>"
        )
        return self._owned(xml, owner)

    @staticmethod
    def _owned(xml: str, owner: Ownership | None) -> str:
        if owner is None:
            return xml
        root = parse(xml)
        set_owner(root, owner)
        return tostring(root)


def unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where every backend must run."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def libvirt_module() -> Any:
    try:
        import libvirt
    except ImportError:
        unavailable("libvirt-python is not installed (pip install 'virtctl[libvirt]')")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def require_connection(uri: str) -> None:
    libvirt = libvirt_module()
    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError as exc:
        unavailable(f"cannot connect to {uri}: {exc} (run ci/install-libvirt.sh)")


def purge_libvirt(uri: str, names: Collection[str] | None = None, *,
                  prefix: str = PREFIX) -> None:
    """Destroy and undefine every domain, network and storage pool on `uri` whose name
    starts with `prefix` (this run's objects by default), or exactly those named `names`;
    a pool's volumes are deleted first, and its target directory too when it lies in a
    /var/tmp/vctl-test-* directory. `prefix` must be this run's PREFIX or longer."""
    assert prefix.startswith(PREFIX), "never another run's objects"
    libvirt = libvirt_module()
    conn = libvirt.open(uri)
    try:
        for obj in [*conn.listAllDomains(0), *conn.listAllNetworks(0)]:
            name = obj.name()
            if not (name in names if names is not None else name.startswith(prefix)):
                continue
            for step in ("destroy", "undefine"):
                # Already stopped / already transient and gone.
                with contextlib.suppress(libvirt.libvirtError):
                    getattr(obj, step)()
        for pool in conn.listAllStoragePools(0):
            name = pool.name()
            if name.startswith(prefix) and (names is None or name in names):
                _purge_pool(libvirt, pool)
    finally:
        conn.close()


def _purge_pool(libvirt: Any, pool: Any) -> None:
    """Only ever called for a pool named vctl-test-*: its volumes, then the pool."""
    target = ""
    with contextlib.suppress(libvirt.libvirtError):
        target = parse(pool.XMLDesc(0)).findtext("target/path") or ""
        if pool.isActive():
            for vol in pool.listAllVolumes(0):
                with contextlib.suppress(libvirt.libvirtError):
                    vol.delete(0)
    for step in ("destroy", "undefine"):  # never pool.delete(): no storage is removed
        with contextlib.suppress(libvirt.libvirtError):
            getattr(pool, step)()
    _remove_test_dir(target)


def _remove_test_dir(target: str) -> None:
    """A pool target's directory, when it is inside /var/tmp/vctl-test-*."""
    path = Path(target)
    if path.is_relative_to(TEST_DIRS) and path.parts[3:4] and \
            path.parts[3].startswith(PREFIX):
        shutil.rmtree(TEST_DIRS / path.parts[3], ignore_errors=True)


def purge_driver(driver: Driver) -> None:
    """The same purge through a virtctl driver (for sim, which only virtctl can reach)."""
    live = driver.snapshot()
    for dom in live.domains.values():
        if dom.name.startswith(PREFIX):
            if dom.state.active:
                driver.destroy(Kind.DOMAIN, dom.name)
            if dom.persistent:
                driver.undefine(Kind.DOMAIN, dom.name)
    for net in live.networks.values():
        if net.name.startswith(PREFIX):
            if net.active:
                driver.destroy(Kind.NETWORK, net.name)
            if net.persistent:
                driver.undefine(Kind.NETWORK, net.name)
    storage = driver.storage()
    for pool in storage.pools.values():
        if not pool.name.startswith(PREFIX):
            continue
        if pool.active:
            for vol in storage.volumes.values():
                if vol.pool == pool.name:
                    driver.delete_volume(pool.name, vol.name)
            with contextlib.suppress(DriverError):  # not listed among the volumes
                driver.delete_volume(pool.name, STATE_VOLUME)
            driver.destroy(Kind.POOL, pool.name)
        driver.undefine(Kind.POOL, pool.name)


def start_remote(root: Path) -> RemoteLibvirtd:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("libvirtd"):
        unavailable("a private libvirtd needs root, unshare and libvirtd")
    require_connection("qemu:///system")
    daemon = RemoteLibvirtd(root)
    daemon.start()
    return daemon


@contextlib.contextmanager
def shared_dir() -> Iterator[Path]:
    """/var/tmp/PREFIX<random> (0755), which the host's libvirtd, QEMU (user
    libvirt-qemu) and the private qemu+tcp daemon (its own /var/lib/libvirt, the
    host's /var/tmp) can all use; removed afterwards."""
    root = TEST_DIRS / f"{PREFIX}{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # whatever the umask
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def remote_daemon(root: Path) -> Iterator[RemoteLibvirtd]:
    """A private loopback libvirtd for the block; this run's objects on it are purged
    and it is stopped after, also when a test left it stopped (restart tests)."""
    daemon = start_remote(root)
    try:
        yield daemon
    finally:
        try:
            # Left stopped by a restart test, or gone by itself: it runs with
            # --timeout 900 (so a leaked daemon never outlives a run) and exits when a
            # long session leaves it idle that long.
            if daemon.process is None or daemon.process.poll() is not None:
                daemon.start()
            purge_libvirt(daemon.uri)
        finally:
            daemon.stop()
