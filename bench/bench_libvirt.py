"""Benchmark: virtctl on libvirt versus the physical limit, on test:///default.

Applies N domains (default 200: type test, i686, 64 MiB, running) to libvirt's
in-process test driver and compares, each as the best of --repeat runs on a fresh
test:///default (its state lives only while a connection is open):

- direct     a minimal libvirt-python script: defineXML + create per domain;
- driver     the same calls through virtctl's LibvirtDriver (lookups by name included);
- apply      virtctl's real path minus spec loading: snapshot + capabilities check +
             plan + apply (api.plan, api.apply);
- reconcile  `apply` plus the verifying snapshot and re-plan (what `virtctl apply` does).

and, with the N domains in place:

- listing    one listing of their XML: listAllDomains + XMLDesc(INACTIVE) per domain;
- no-op      virtctl's no-op re-apply: api.reconcile of the same specs (plans nothing).

Targets (issue 3): apply / direct < 1.5, no-op / listing < 1.2.
Usage: python bench/bench_libvirt.py [-n 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt

from virtctl import api
from virtctl.drivers.libvirt_driver import LibvirtDriver
from virtctl.model import Desired, Kind

URI = "test:///default"


def domain_xml(i: int) -> str:
    return (
        f"<domain type='test'><name>bench-{i:04d}</name>"
        f"<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='i686'>hvm</type></os><devices/></domain>"
    )


def write_specs(folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"bench-{i:04d}.xml").write_text(domain_xml(i) + "\n")


def direct(xmls: list[str]) -> None:
    conn = libvirt.open(URI)
    try:
        for xml in xmls:
            conn.defineXML(xml).create()
    finally:
        conn.close()


def through_driver(xmls: list[str]) -> None:
    with LibvirtDriver(URI) as driver:
        for i, xml in enumerate(xmls):
            driver.define(Kind.DOMAIN, xml)
            driver.start(Kind.DOMAIN, f"bench-{i:04d}")


def through_apply(desired: Desired) -> None:
    with LibvirtDriver(URI) as driver:
        report = api.apply(api.plan(desired, driver), driver)
        assert report.return_code == 0, report


def through_reconcile(desired: Desired) -> None:
    with LibvirtDriver(URI) as driver:
        result = api.reconcile(desired, driver)
        assert result.return_code == 0 and result.remaining.empty


def timed(setup: Callable[[Any], None] | None, body: Callable[[Any], None], repeat: int) -> float:
    """Best wall time of `body(conn)`, each run on a fresh test:///default."""
    times = []
    for _ in range(repeat):
        keeper = libvirt.open(URI)  # holds this run's test:///default alive
        try:
            if setup is not None:
                setup(keeper)
            began = time.perf_counter()
            body(keeper)
            times.append(time.perf_counter() - began)
        finally:
            keeper.close()
    return min(times)


def listing(conn: Any) -> None:
    for dom in conn.listAllDomains(0):
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def noop(desired: Desired) -> Callable[[Any], None]:
    def run(_conn: Any) -> None:
        with LibvirtDriver(URI) as driver:
            result = api.reconcile(desired, driver)
            assert result.plan.empty, result.plan

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    xmls = [domain_xml(i) for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        write_specs(Path(tmp), args.n)
        began = time.perf_counter()
        desired = api.load([tmp], use_cache=False)
        load_s = time.perf_counter() - began

    r = args.repeat
    results = {
        "direct": timed(None, lambda _c: direct(xmls), r),
        "driver": timed(None, lambda _c: through_driver(xmls), r),
        "apply": timed(None, lambda _c: through_apply(desired), r),
        "reconcile": timed(None, lambda _c: through_reconcile(desired), r),
    }

    def populate(_conn: Any) -> None:  # as virtctl left them: running and marked as managed
        through_apply(desired)

    results["listing"] = timed(populate, listing, r)
    results["no-op"] = timed(populate, noop(desired), r)

    print(f"# virtctl on {URI}: {args.n} domains, best of {r} (spec loading {load_s:.3f}s)")
    for label, seconds in results.items():
        print(f"{label:>10}  {seconds * 1000:8.1f} ms")
    ratios = {
        "driver / direct": results["driver"] / results["direct"],
        "apply / direct": results["apply"] / results["direct"],
        "reconcile / direct": results["reconcile"] / results["direct"],
        "no-op / listing": results["no-op"] / results["listing"],
    }
    for label, ratio in ratios.items():
        print(f"{label:>20}  {ratio:5.2f}x")
    ok = ratios["apply / direct"] < 1.5 and ratios["no-op / listing"] < 1.2
    print("targets met" if ok else "targets MISSED (apply/direct < 1.5, no-op/listing < 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
