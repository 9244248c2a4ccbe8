"""Benchmark: a no-op re-apply over libvirt's remote transport, on a slow link.

Starts a private libvirtd listening on TCP 127.0.0.1 only (the one the integration
suite uses: tests/integration/libvirtd_tcp.py) and, in front of it, latency_proxy.py,
which delays every byte by --delay-ms each way. N QEMU domains (default 200, defined,
not started) are applied with virtctl; then, through `qemu+tcp://127.0.0.1:PORT/system`,
once with no proxy (loopback) and once through it (a slow link):

- read       what a no-op must read, one call at a time (bench_libvirt.minimal_read);
- read x4    the same in four slices at once, as virtctl reads a host this size;
- no-op x1   virtctl's no-op re-apply (api.plan, plans nothing) reading in one thread;
- no-op      the same with the driver's default readers (libvirt_driver.READERS);
- rtt        one round trip (getLibVersion), so the link's latency is measured too.

Each is timed --repeat times (taking turns) and printed as the best and the median.
Needs root, unshare and libvirtd (the private daemon runs in its own mount namespace).
Usage: python bench/bench_libvirt_remote.py [-n 200] [--delay-ms 1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt
from bench_libvirt import minimal_read, report  # noqa: E402 (bench/ is the script's folder)
from bench_libvirt_qemu import PREFIX, clean, domain_xml, timed  # noqa: E402

from tests.integration.libvirtd_tcp import RemoteLibvirtd
from virtctl import api
from virtctl.drivers.libvirt.driver import READERS, LibvirtDriver
from virtctl.model import Desired


def measure(uri: str, desired: Desired, repeat: int) -> dict[str, list[float]]:
    flags = libvirt.VIR_NETWORK_XML_INACTIVE

    def noop(readers: int) -> Callable[[], None]:
        def run() -> None:
            with LibvirtDriver(uri, readers=readers) as driver:
                assert api.plan(desired, driver).empty

        return run

    noop(READERS)()  # the first no-op records the host as in sync
    conn = libvirt.open(uri)
    try:
        return timed(lambda: None, {
            "rtt": conn.getLibVersion,
            "read": lambda: minimal_read(uri, network_flags=flags),
            "read x4": lambda: minimal_read(uri, network_flags=flags, readers=READERS),
            "no-op x1": noop(1),
            "no-op": noop(READERS),
        }, repeat)
    finally:
        conn.close()


def start_proxy(target_port: int, delay_ms: float) -> tuple[subprocess.Popen[str], int]:
    proxy = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("latency_proxy.py")),
         "--target-port", str(target_port), "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proxy.stdout is not None
    return proxy, int(proxy.stdout.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=1.0, help="one way")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    work = Path(tempfile.mkdtemp(prefix="virtctl-bench-remote-"))
    os.environ["VIRTCTL_CACHE_DIR"] = str(work / "cache")  # not the user's cache
    specs = work / "specs"
    specs.mkdir()
    for i in range(args.n):
        (specs / f"{i:04d}.xml").write_text(domain_xml(i))
    desired = api.load([str(specs)], use_cache=False)

    daemon = RemoteLibvirtd(work / "libvirtd")
    daemon.start()
    proxy: subprocess.Popen[str] | None = None
    try:
        with LibvirtDriver(daemon.uri) as driver:
            api.apply(api.plan(desired, driver), driver)  # the N domains, as virtctl left them
        proxy, port = start_proxy(daemon.port, args.delay_ms)
        slow = f"qemu+tcp://127.0.0.1:{port}/system"
        rows = {"loopback": measure(daemon.uri, desired, args.repeat),
                f"+{args.delay_ms:g} ms each way": measure(slow, desired, args.repeat)}
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait()
        try:
            conn = libvirt.open(daemon.uri)
            clean(conn)
            conn.close()
        finally:
            daemon.stop()

    ratios = (("no-op / read", "no-op", "read"), ("no-op / read x4", "no-op", "read x4"),
              ("no-op x1 / no-op", "no-op x1", "no-op"))
    for link, times in rows.items():
        report(f"# {link}: virtctl over qemu+tcp, {args.n} defined domains ({PREFIX}*), "
               f"{args.repeat} runs", times, ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
