"""virtctl through libvirt's remote transport: a private libvirtd on 127.0.0.1 (TCP).

The daemon (see libvirtd_tcp.py) has its own config file: TCP on 127.0.0.1 only, no
auth, no TLS. Tests here prove it listens nowhere else, drive the CLI through
`qemu+tcp://127.0.0.1:PORT/system`, and kill and restart the daemon under a subscribed
driver to prove a dropped connection is reported and re-opened (events flow again).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.support import PREFIX, Factory, libvirt_module, purge_libvirt, remote_daemon
from tests.integration.libvirtd_tcp import RemoteLibvirtd, listening_addresses
from tests.integration.test_libvirt_reconcile import (
    domain_yaml,
    name,
    network_yaml,
    ok,
    run_cli,
    write_specs,
)
from tests.integration.test_libvirt_readers import read
from virtctl.drivers import connect
from virtctl.drivers.libvirt import reads as libvirt_reads
from virtctl.drivers.base import Event, EventType
from virtctl.errors import TransientError
from virtctl.model import Kind


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteLibvirtd]:
    with remote_daemon(tmp_path_factory.mktemp("libvirtd-remote")) as remote:
        yield remote


def test_private_daemon_listens_on_loopback_only(daemon: RemoteLibvirtd) -> None:
    assert listening_addresses(daemon.port) == {"127.0.0.1"}


def test_cli_reconciles_over_tcp(daemon: RemoteLibvirtd, tmp_path: Path) -> None:
    virtctl = run_cli(daemon.uri, tmp_path / "state")
    dom, net = name(), name()
    specs = write_specs(tmp_path / "specs", domain_yaml(dom), network_yaml(net))
    try:
        ok(virtctl("apply", "-f", str(specs)))
        ok(virtctl("diff", "-f", str(specs)), 0)
        domains = {d["name"]: d for d in json.loads(ok(virtctl("get", "domains", "-o", "json")))}
        assert (domains[dom]["state"], domains[dom]["managed"]) == ("running", True)
        ok(virtctl("delete", "-f", str(specs), "--shutdown-timeout", "10", "--force-stop"))
        assert json.loads(ok(virtctl("get", "domains", "-o", "json"))) == []
    finally:
        purge_libvirt(daemon.uri)


def test_several_readers_over_tcp(daemon: RemoteLibvirtd,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls in flight together on one remote connection (the daemon serves up to
    five at once per client) read what one at a time reads."""
    monkeypatch.setattr(libvirt_reads, "PER_READER", 1)
    conn = libvirt_module().open(daemon.uri)
    try:
        for _ in range(5):
            conn.defineXML(Factory().domain_xml(Factory().name()))
        alone, alone_print, alone_threads = read(daemon.uri, 1)
        together, together_print, together_threads = read(daemon.uri, 4)
        # One reader reads on the snapshot's own thread (the call deadline's worker),
        # the others on reader threads.
        assert len(alone_threads) == 1 and not alone_threads[0].startswith("virtctl-read")
        assert sorted(together_threads) == sorted([*alone_threads, *["virtctl-read"] * 3])
        assert together == alone and together_print == alone_print
        assert len([n for n in together if n.startswith(PREFIX)]) == 5
    finally:
        conn.close()
        purge_libvirt(daemon.uri)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, wanted: EventType, *, name: str | None = None, timeout: float) -> Event:
        def found() -> Event | None:
            return next(
                (e for e in self.events if e.type is wanted and name in (None, e.name)), None
            )

        with self.changed:
            assert self.changed.wait_for(lambda: found() is not None, timeout=timeout), (
                f"no {wanted} event within {timeout}s; saw {self.events}"
            )
            event = found()
            assert event is not None
            return event


def test_dropped_connection_is_reported_and_reopened(daemon: RemoteLibvirtd) -> None:
    driver = connect(daemon.uri)
    recorder = Recorder()
    unsubscribe = driver.subscribe(recorder)
    try:
        daemon.stop()
        lost = recorder.wait_for(EventType.CONNECTION_LOST, timeout=30)
        assert lost.detail in ("eof", "error", "keepalive")
        with pytest.raises(TransientError):
            driver.snapshot()
        daemon.start()
        recorder.wait_for(EventType.RECONNECTED, timeout=60)
        dom = Factory().name()
        driver.define(Kind.DOMAIN, Factory().domain_xml(dom))
        recorder.wait_for(EventType.DEFINED, name=dom, timeout=10)
        assert dom in driver.snapshot().domains
    finally:
        unsubscribe()
        driver.close()
        if daemon.process is None:  # failed while it was down: bring it back for cleanup
            daemon.start()
        purge_libvirt(daemon.uri)
