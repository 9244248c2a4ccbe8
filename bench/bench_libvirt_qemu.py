"""Benchmark: virtctl against a real libvirtd (qemu:///system), where every call is a
round trip, versus the same libvirt-python calls made directly.

N QEMU domains (default 200; type qemu, x86_64, pc, 64 MiB, no disk) are *defined* but not
started (starting 200 emulated guests would measure QEMU, not virtctl). Each measure is
the best of --repeat runs; every run starts from a host without the bench domains and
removes them again:

- direct     defineXML per domain;
- apply      virtctl's plan + apply (snapshot, capabilities check, plan, define);
- listing    one listing of their XML: listAllDomains + XMLDesc(INACTIVE) per domain;
- no-op      a no-op re-apply (api.plan on an unchanged host; plans nothing).

Complements bench_libvirt.py (test:///default, in-process). Needs root and a running
libvirtd. Usage: python bench/bench_libvirt_qemu.py [-n 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt

from virtctl import api
from virtctl.drivers.libvirt_driver import LibvirtDriver

URI = "qemu:///system"
PREFIX = "vctl-bench-"


def domain_xml(i: int) -> str:
    return (
        f"<domain type='qemu'><name>{PREFIX}{i:04d}</name>"
        "<metadata><virtctl:runtime xmlns:virtctl='https://virtctl.dev/xmlns/1' "
        "state='shutoff'/></metadata>"
        "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>"
    )


def clean(conn: libvirt.virConnect) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(PREFIX):
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def best(prepare: Callable[[], None], body: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        prepare()
        began = time.perf_counter()
        body()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open(URI)
    xmls = [domain_xml(i) for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, xml in enumerate(xmls):
            (Path(tmp) / f"{i:04d}.xml").write_text(xml)
        desired = api.load([tmp], use_cache=False)

    def direct() -> None:
        for xml in xmls:
            conn.defineXML(xml)

    def through_virtctl() -> None:
        with LibvirtDriver(URI) as driver:
            report = api.apply(api.plan(desired, driver), driver)
            assert report.return_code == 0, report

    def populated() -> None:
        clean(conn)
        through_virtctl()

    def listing() -> None:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(PREFIX):
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    def noop() -> None:
        with LibvirtDriver(URI) as driver:
            assert api.plan(desired, driver).empty

    try:
        results = {
            "direct": best(lambda: clean(conn), direct, args.repeat),
            "apply": best(lambda: clean(conn), through_virtctl, args.repeat),
        }
        populated()
        api.plan(desired, LibvirtDriver(URI))  # a first no-op records the pairs in sync
        results["listing"] = best(lambda: None, listing, args.repeat)
        results["no-op"] = best(lambda: None, noop, args.repeat)
    finally:
        clean(conn)
        conn.close()
    print(f"# virtctl on {URI}: {args.n} defined domains, best of {args.repeat}")
    for label, seconds in results.items():
        print(f"{label:>10}  {seconds * 1000:8.1f} ms")
    print(f"{'apply / direct':>20}  {results['apply'] / results['direct']:5.2f}x")
    print(f"{'no-op / listing':>20}  {results['no-op'] / results['listing']:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
