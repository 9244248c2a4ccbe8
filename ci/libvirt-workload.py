#!/usr/bin/env python3
"""Other libvirt work on the same host, for proving the suite holds beside it
(docs/reliability.md): until stopped, cycles guests and an isolated network on
qemu:///system (define, start, destroy, undefine) under names of its own (`bgload-*`),
which the suite never touches and which never touch the suite's `vctl-test-*` objects.

Usage: python3 ci/libvirt-workload.py [--guests N]   (Ctrl-C or SIGTERM stops it and
removes what it made). Prints one line per 50 cycles.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

import libvirt

PREFIX = "bgload-"
GUEST = ("<domain type='qemu'><name>{name}</name><memory unit='MiB'>48</memory>"
         "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
         "<devices><interface type='network'><source network='{net}'/></interface>"
         "</devices></domain>")
NETWORK = ("<network><name>{name}</name><bridge name='bgload0'/>"
           "<ip address='172.31.250.1' prefix='24'/></network>")


def cleanup(conn: libvirt.virConnect) -> None:
    for obj in [*conn.listAllDomains(0), *conn.listAllNetworks(0)]:
        if obj.name().startswith(PREFIX):
            with contextlib.suppress(libvirt.libvirtError):
                obj.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                obj.undefine()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--guests", type=int, default=2, help="guests cycled at once")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open("qemu:///system")
    stop = False

    def halt(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    cleanup(conn)
    net = f"{PREFIX}net"
    conn.networkDefineXML(NETWORK.format(name=net)).create()
    cycles = 0
    try:
        while not stop:
            for i in range(args.guests):
                name = f"{PREFIX}{i}"
                dom = conn.defineXML(GUEST.format(name=name, net=net))
                dom.create()
            for i in range(args.guests):
                dom = conn.lookupByName(f"{PREFIX}{i}")
                dom.destroy()
                dom.undefine()
            cycles += 1
            if cycles % 50 == 0:
                print(f"libvirt-workload: {cycles} cycles", flush=True)
    finally:
        cleanup(conn)
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
