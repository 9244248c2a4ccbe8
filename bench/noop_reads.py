"""The floor of a no-op re-apply, as a whole process: a minimal libvirt-python script
making the reads virtctl's no-op makes (bench_libvirt.read_host: the capabilities, the
autostart and transient listings, every domain's state in one getAllDomainStats, each
domain's uuid, name and persistent XML, and the running XML and id of a running one,
the network listings and definitions), then nothing else. bench_startup.py times it
against `virtctl apply`.

Kept apart from the other benches so that it imports libvirt and nothing more.
Usage: python bench/noop_reads.py URI [READERS]
"""

import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import libvirt

libvirt.registerErrorHandler(lambda _c, _e: None, None)  # no messages on stderr

ACTIVE = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PAUSED,
          libvirt.VIR_DOMAIN_SHUTDOWN, libvirt.VIR_DOMAIN_PMSUSPENDED)


def read_slice(part):
    for dom, stats in part:
        try:
            dom.UUIDString()
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if stats["state.state"] in ACTIVE:
                dom.XMLDesc(0)
                dom.ID()
            dom.name()
        except libvirt.libvirtError:  # gone meanwhile (a shared host): as virtctl skips it
            continue


def main(uri, readers):
    conn = libvirt.open(uri)
    try:
        conn.getCapabilities()
        for flags in (libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART,
                      libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT):
            {d.UUIDString() for d in conn.listAllDomains(flags)}
        listed = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE, 0)
        if readers > 1:
            bounds = [len(listed) * i // readers for i in range(readers + 1)]
            with ThreadPoolExecutor(readers - 1) as pool:
                others = [pool.submit(read_slice, listed[a:b]) for a, b in pairwise(bounds[1:])]
                read_slice(listed[:bounds[1]])
                for future in others:
                    future.result()
        else:
            read_slice(listed)
        active = {n.UUIDString() for n in conn.listAllNetworks(
            libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)}
        for flags in (libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART,
                      libvirt.VIR_CONNECT_LIST_NETWORKS_TRANSIENT):
            {n.UUIDString() for n in conn.listAllNetworks(flags)}
        for net in conn.listAllNetworks(0):
            try:
                uuid = net.UUIDString()
                net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
                if uuid in active:
                    net.XMLDesc(0)
                net.name()
            except libvirt.libvirtError:
                continue
    finally:
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
