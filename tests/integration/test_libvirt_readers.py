"""A snapshot read by several threads at once is the snapshot read by one.

The libvirt driver reads big hosts in slices, one thread a slice, on the one connection
(libvirt_driver.READERS): on test:///default (the threads forced on: it reads in one
thread by default) and on qemu:///system (real domains, one of them running). The
remote daemon case is in test_libvirt_remote.py. Every domain is named vctl-test-* and
removed afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.support import (
    PREFIX,
    Factory,
    libvirt_module,
    purge_libvirt,
    require_connection,
)
from virtctl.drivers.libvirt import reads as libvirt_reads
from virtctl.drivers.libvirt.driver import READERS, LibvirtDriver, _readers_for
from virtctl.model import DomainState


@pytest.mark.parametrize(
    ("uri", "readers"),
    [
        ("test:///default", 1),  # in this process: threads only contend for the GIL
        ("test:///tmp/host.xml", 1),
        ("test+tcp://127.0.0.1/default", READERS),  # through a daemon: round trips
        ("qemu:///system", READERS),
        ("qemu+ssh://admin@host/system", READERS),
        ("xen:///system", READERS),
    ],
)
def test_readers_by_connection(uri: str, readers: int) -> None:
    assert _readers_for(uri) == readers


def read(uri: str, readers: int) -> tuple[dict[str, tuple[Any, ...]], str, list[str]]:
    """The snapshot's domains, its fingerprint and the thread that read each slice."""
    threads: list[str] = []
    with LibvirtDriver(uri, readers=readers) as driver:
        real = driver._read_slice

        def spied(*args: Any) -> Any:
            threads.append(threading.current_thread().name)
            return real(*args)

        driver._read_slice = spied  # type: ignore[method-assign]
        live = driver.snapshot()
        table = {d.name: (d.uuid, d.state, d.autostart, d.persistent, d.id, d.xml,
                          d.running_xml, d.owner) for d in live.domains.values()}
        return table, live.fingerprint, threads


def no_reader_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("virtctl-read")]


@pytest.fixture
def host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`request.param`'s host with seven vctl-test-* domains, the first one running,
    and slices of one domain, so a few domains already use every reader."""
    uri = request.param
    require_connection(uri)
    monkeypatch.setattr(libvirt_reads, "PER_READER", 1)
    conn = libvirt_module().open(uri)  # on test:///default, also keeps the host alive
    factory = Factory()
    dom_type = "test" if uri.startswith("test") else "qemu"
    arch = "i686" if dom_type == "test" else "x86_64"
    made: list[str] = []
    try:
        for i in range(7):
            made.append(factory.name())
            dom = conn.defineXML(factory.domain_xml(made[-1], dom_type=dom_type, arch=arch))
            if i == 0:
                dom.create()
        MINE[:] = made
        yield uri
    finally:
        purge_libvirt(uri, made)
        conn.close()


MINE: list[str] = []  # the names the `host` fixture made, for the tests to pick out


@pytest.mark.parametrize("host", ["test:///default", "qemu:///system"], indirect=True)
def test_several_readers_read_what_one_reads(host: str) -> None:
    alone, alone_print, alone_threads = read(host, 1)
    together, together_print, together_threads = read(host, 3)
    # One reader reads on the snapshot's own thread (the call deadline's worker),
    # the others on reader threads.
    assert len(alone_threads) == 1 and not alone_threads[0].startswith("virtctl-read")
    assert sorted(together_threads) == sorted([*alone_threads, *["virtctl-read"] * 2])
    # Other work on the host (other suites, other tenants) may change its own objects
    # between the two reads: ours must read the same, and so must the whole host
    # (fingerprint included) whenever nothing else changed meanwhile.
    def ours(found: dict[str, Any]) -> dict[str, Any]:
        return {n: v for n, v in found.items() if n in MINE}

    assert ours(together) == ours(alone)
    if together == alone:
        assert together_print == alone_print
    mine = ours(together)
    assert len(mine) == 7
    assert sorted(v[1] for v in mine.values()).count(DomainState.RUNNING) == 1
    assert no_reader_threads(), "closing the driver stops its readers"


@pytest.mark.parametrize("host", ["test:///default"], indirect=True)
def test_a_domain_undefined_during_a_concurrent_read_is_left_out(host: str) -> None:
    with LibvirtDriver(host, readers=3) as driver:
        listed = driver._domains_with_state
        gone: list[str] = []

        def listed_then_undefined() -> Any:
            found = listed()
            # One of ours from the second half: beyond the first of three slices, so
            # another thread than this one reads it.
            last = next(d for d, _ in found[len(found) // 2:]
                        if d.name().startswith(PREFIX))
            gone.append(last.name())
            if last.isActive():
                last.destroy()
            last.undefine()
            return found

        driver._domains_with_state = listed_then_undefined  # type: ignore[method-assign]
        live = driver.snapshot()
        assert gone and gone[0] not in live.domains
        assert len([n for n in live.domains if n.startswith(PREFIX)]) == 6
    assert no_reader_threads()
