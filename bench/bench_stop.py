"""Benchmark: stopping N running guests that ignore ACPI (issue 20, B9).

Every guest needs the whole stop ladder: the graceful request, the wait up to the
shutdown timeout, then destroy. Measured in-process on the real clock, each run from a
fresh set of running guests:

- together   the applier as `delete` runs it: one plan of N Shutdowns (force, as
             deletion does) and N Undefines; every guest is asked, all wait on one
             deadline, the guests due together are destroyed side by side;
- one by one the same actions applied one plan at a time (the ladder of one guest,
             then the next), which is how the applier ran them before: N timeouts.

Hosts: `sim` (the guests get the sim's `ignore` fault on shutdown), or `qemu:///system`
(real QEMU processes, type qemu, 64 MiB, no OS and no disk, so nothing answers the ACPI
request). Also printed: how many per-guest state reads the wait made (no host snapshot
is taken while waiting).

Usage: python bench/bench_stop.py [--uri sim|qemu:///system] [-n 5] [--timeout 5]
       [--repeat 1] [--serial/--no-serial]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from virtctl.drivers import Driver, connect  # noqa: E402 (after the path insert)
from virtctl.model import Kind  # noqa: E402
from virtctl.reconciler.plan.actions import Action, Shutdown, Undefine  # noqa: E402
from virtctl.reconciler.apply.apply import apply  # noqa: E402
from virtctl.reconciler.plan.plan import Plan  # noqa: E402

PREFIX = "vctl-bench-stop-"


def guest_xml(name: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<devices/></domain>")


def start_guests(driver: Driver, uri: str, names: list[str]) -> None:
    for name in names:
        driver.define(Kind.DOMAIN, guest_xml(name))
        driver.start(Kind.DOMAIN, name)
        if uri.startswith("sim"):
            driver.inject_fault("shutdown", Kind.DOMAIN, name,  # type: ignore[attr-defined]
                                action="ignore")


def actions(names: list[str], timeout: float) -> tuple[Action, ...]:
    return (*(Shutdown(kind=Kind.DOMAIN, name=n, timeout=timeout, force=True,
                       reason="deleted") for n in names),
            *(Undefine(kind=Kind.DOMAIN, name=n, reason="deleted") for n in names))


def counting(driver: Driver) -> Callable[[], int]:
    """Count the driver's per-guest state reads and refuse snapshots while applying."""
    seen = [0]
    state = driver.domain_state

    def domain_state(name: str) -> Any:
        seen[0] += 1
        return state(name)

    def snapshot() -> Any:
        raise AssertionError("the stop ladder took a host snapshot")

    driver.domain_state = domain_state  # type: ignore[method-assign]
    driver.snapshot = snapshot  # type: ignore[method-assign]
    return lambda: seen[0]


def run(uri: str, n: int, timeout: float, *, serial: bool) -> tuple[float, int]:
    names = [f"{PREFIX}{i:03d}" for i in range(n)]
    driver = connect(uri)
    try:
        start_guests(driver, uri, names)
        reads = counting(driver)
        planned = actions(names, timeout)
        began = time.monotonic()
        if serial:
            for name in names:
                mine = tuple(a for a in planned if a.name == name)
                assert apply(Plan(actions=mine), driver).return_code == 0
        else:
            assert apply(Plan(actions=planned), driver).return_code == 0
        return time.monotonic() - began, reads()
    finally:
        driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="sim")
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--serial", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure one guest after the other (N timeouts)")
    args = parser.parse_args()
    uri = "sim:///bench-stop" if args.uri == "sim" else args.uri
    with tempfile.TemporaryDirectory() as state:
        os.environ.setdefault("VIRTCTL_STATE_DIR", state)
        os.environ.setdefault("VIRTCTL_SIM_FSYNC", "0")
        modes = ["together", *(["one by one"] if args.serial else [])]
        print(f"{uri}: {args.n} guests ignoring ACPI, shutdown timeout {args.timeout:g} s")
        for mode in modes:
            times, reads = [], 0
            for _ in range(args.repeat):
                took, reads = run(uri, args.n, args.timeout, serial=mode != "together")
                times.append(took)
            print(f"{mode:>11}: best {min(times):6.2f} s, median "
                  f"{statistics.median(times):6.2f} s ({min(times) / args.timeout:.2f} "
                  f"timeouts), {reads} state reads, no snapshot")


if __name__ == "__main__":
    main()
