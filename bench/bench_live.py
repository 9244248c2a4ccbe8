"""Benchmark: one live change to one running guest among N domains (default 200), virtctl
versus the libvirt calls it makes (issue 13's target: at most 1.3x).

The change alternates between two specs of the guest, so every run changes it:

- test:///default (in-process): the guest's running vcpus, 1 -> 2 (setVcpusFlags; only
  raising is live, so an untimed restart puts it back to 1 before each run);
- qemu:///system: the medium in the guest's CD-ROM, a.iso <-> b.iso (updateDeviceFlags);
  the guest is a real QEMU process with no OS, the N others are defined, not started.

Measures, each the best and the median of --repeat runs:

- virtctl   `virtctl apply` minus spec loading: open a connection, snapshot and
            capabilities, check and plan, redefine, the live call, the running definition
            read back to verify it, snapshot and plan again (verify), close;
- direct    a minimal libvirt-python script making the same calls: open, the host read
            as virtctl reads it (bench_libvirt.read_host: one reader in-process, four
            over a socket), defineXML of the XML virtctl sends, the live call, XMLDesc(0),
            the host read again, close.

Usage: python bench/bench_live.py [--uri test:///default|qemu:///system] [-n 200]
       [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt
from bench_libvirt import read_host, report  # noqa: E402 (bench/ is the script's folder)

from virtctl import api
from virtctl.drivers.libvirt.driver import LibvirtDriver, _readers_for
from virtctl.model import Desired
from virtctl.reconciler.plan.actions import Define, SetVcpus, UpdateDevice

PREFIX = "vctl-bench-live-"
GUEST = PREFIX + "guest"


def other_xml(i: int, dom_type: str) -> str:
    return (f"<domain type='{dom_type}'><name>{PREFIX}{i:04d}</name>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>")


def guest_yaml(uri: str, variant: int, images: Path) -> str:
    if uri.startswith("test:"):
        return textwrap.dedent(f"""\
            kind: Domain
            name: {GUEST}
            type: test
            memory: 64MiB
            vcpus: {{count: 2, current: {1 + variant}}}
            os: {{type: hvm, arch: i686}}
            """)
    iso = images / ("a.iso", "b.iso")[variant]
    return textwrap.dedent(f"""\
        kind: Domain
        name: {GUEST}
        type: qemu
        memory: 64MiB
        vcpus: 1
        os: {{type: hvm, arch: x86_64, machine: pc}}
        disks:
          - {{type: file, device: cdrom, source: {iso}, target: hdc, bus: ide, readonly: true}}
        """)


def load(uri: str, variant: int, images: Path) -> Desired:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "guest.yaml").write_text(guest_yaml(uri, variant, images))
        return api.load([tmp], use_cache=False)


def through_virtctl(uri: str, desired: Desired, *, live: bool = True) -> None:
    with LibvirtDriver(uri) as driver:
        result = api.reconcile(desired, driver)
    assert result.return_code == 0 and result.remaining.empty, result.report
    verbs = [a.verb for a in result.plan.actions]
    assert not live or verbs == ["define", "update-device"] or verbs == ["define", "set-vcpus"]


def reset(uri: str, desired: Desired) -> None:
    with LibvirtDriver(uri) as driver:
        api.reconcile(desired, driver, policy=api.Policy(allow_restart=True, force_stop=True))


def calls_of(uri: str, desired: Desired) -> Callable[[], None]:
    """The direct script for the change virtctl would make now (planned untimed)."""
    with LibvirtDriver(uri) as driver:
        planned = api.plan(desired, driver)
    define, live = planned.actions
    assert isinstance(define, Define) and isinstance(live, SetVcpus | UpdateDevice)
    readers = _readers_for(uri)

    def run() -> None:
        conn = libvirt.open(uri)
        try:
            read_host(conn, readers=readers)
            dom = conn.defineXML(define.xml)
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
            if isinstance(live, SetVcpus):
                dom.setVcpusFlags(live.count, flags)
            else:
                dom.updateDeviceFlags(live.xml, flags)
            dom.XMLDesc(0)
            read_host(conn, readers=readers)
        finally:
            conn.close()

    return run


def floor(uri: str, conn: Any, repeat: int) -> None:
    """What one snapshot costs against the script's read of the same host: a verified
    apply takes two, so twice this is the least it can cost."""
    times: dict[str, list[float]] = {"snapshot": [], "read": []}
    with LibvirtDriver(uri) as driver:
        for _ in range(3 * repeat):
            for label, body in (("snapshot", driver.snapshot),
                                ("read", lambda: read_host(conn, readers=_readers_for(uri)))):
                began = time.perf_counter()
                body()
                times[label].append(time.perf_counter() - began)
    report("# the floor: one host read", times, (("snapshot / read", "snapshot", "read"),))


def clean(conn: Any) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(PREFIX):
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="test:///default")
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--floor", action="store_true",
                        help="also time one virtctl snapshot against the script's read")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    uri = args.uri
    images = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/var/lib/libvirt/images")
                  if uri.startswith("qemu") else tempfile.mkdtemp(prefix=PREFIX))
    images.chmod(0o755)
    for name in ("a.iso", "b.iso"):
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(images / name), "1M"],
                       check=True)
    keep = libvirt.open(uri)  # test:///default lives while a connection is open
    dom_type = "test" if uri.startswith("test:") else "qemu"
    try:
        clean(keep)
        for i in range(args.n - 1):
            keep.defineXML(other_xml(i, dom_type))
        variants = [load(uri, v, images) for v in (0, 1)]
        through_virtctl(uri, variants[0], live=False)  # the guest, created and running
        times: dict[str, list[float]] = {"virtctl": [], "direct": []}
        # Vcpus only go up live: on the test driver each run raises them, after an
        # untimed restart back to one vcpu. The CD-ROM medium simply alternates.
        timed_variants = (1,) if dom_type == "test" else (1, 0)
        for _ in range(args.repeat):
            for label in ("virtctl", "direct"):
                for variant in timed_variants:
                    if dom_type == "test":
                        reset(uri, variants[0])
                    desired = variants[variant]
                    body = (calls_of(uri, desired) if label == "direct"
                            else lambda d=desired: through_virtctl(uri, d))
                    began = time.perf_counter()
                    body()
                    times[label].append(time.perf_counter() - began)
        if args.floor:
            floor(uri, keep, args.repeat)
        ratios = report(f"# one live change among {args.n} domains on {uri} "
                        f"({len(times['virtctl'])} runs each)", times,
                        (("virtctl / direct", "virtctl", "direct"),))
        print("target met (best)" if ratios["virtctl / direct"] <= 1.3
              else "target MISSED (best: virtctl/direct <= 1.3)")
    finally:
        clean(keep)
        keep.close()
        shutil.rmtree(images, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
