"""Benchmark: virtctl against a real libvirtd (qemu:///system), where every call is a
round trip, versus the same libvirt-python calls made directly.

N QEMU domains (default 200; type qemu, x86_64, pc, 64 MiB, no disk) are *defined* but not
started (starting 200 emulated guests would measure QEMU, not virtctl). Each measure is
timed --repeat times; every run starts from a host without the bench domains and
removes them again:

- direct     defineXML per domain of the definitions virtctl sends (uuid and ownership
             mark included): the same calls;
- plain      defineXML of the user's XML as written, for reference;
- apply      virtctl's plan + apply (snapshot, capabilities check, plan, define);
- listing    listAllDomains + XMLDesc(INACTIVE) per domain, on an open connection;
- read       the same reads virtctl's no-op makes, directly: open a connection,
             capabilities, every domain with its state, the autostart and transient
             listings, each domain's name, uuid and XML, the network listings, close;
- read x4    the same, the domains read in four slices at once as virtctl reads them
             (libvirt_driver.READERS): how much of the no-op is virtctl's own work;
- no-op      a no-op re-apply (api.plan on an unchanged host; plans nothing).

Targets (issue 3): apply / direct < 1.5, no-op / read < 1.2. Each measure is printed
as the best and the median of its runs, and each ratio for both.

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
from bench_libvirt import minimal_read, report  # noqa: E402 (bench/ is the script's folder)

from virtctl import api
from virtctl.drivers.libvirt.driver import READERS, LibvirtDriver
from virtctl.reconciler.plan.actions import Define

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


def timed(
    prepare: Callable[[], None], bodies: dict[str, Callable[[], None]], repeat: int
) -> dict[str, list[float]]:
    """Every wall time of each body; bodies take turns, each after `prepare`."""
    times: dict[str, list[float]] = {label: [] for label in bodies}
    for _ in range(repeat):
        for label, body in bodies.items():
            prepare()
            began = time.perf_counter()
            body()
            times[label].append(time.perf_counter() - began)
    return times


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

    clean(conn)
    with LibvirtDriver(URI) as driver:
        sent = [a.xml for a in api.plan(desired, driver).actions if isinstance(a, Define)]
    assert len(sent) == args.n

    def direct() -> None:
        for xml in sent:
            conn.defineXML(xml)

    def plain() -> None:
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
        results = timed(lambda: clean(conn), {
            "direct": direct, "plain": plain, "apply": through_virtctl}, args.repeat)
        populated()
        noop()  # a first no-op records the host as in sync
        def read() -> None:
            minimal_read(URI, network_flags=libvirt.VIR_NETWORK_XML_INACTIVE)

        def read_together() -> None:
            minimal_read(URI, network_flags=libvirt.VIR_NETWORK_XML_INACTIVE,
                         readers=READERS)

        results.update(timed(lambda: None, {"listing": listing, "read": read,
                                            "read x4": read_together, "no-op": noop},
                             args.repeat * 3))
    finally:
        clean(conn)
        conn.close()
    report(f"# virtctl on {URI}: {args.n} defined domains, {args.repeat} runs "
           f"({args.repeat * 3} of the reads)", results,
           (("apply / direct", "apply", "direct"),
            ("apply / plain", "apply", "plain"),
            ("no-op / read", "no-op", "read"),
            ("no-op / read x4", "no-op", "read x4"),
            ("no-op / listing", "no-op", "listing")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
