"""A libvirt host's snapshot as raw records: every domain's and network's definitions,
state, autostart and persistence (drivers/snapshot.py's DomainRead and NetworkRead),
read without virtctl.model.

LibvirtDriver reads its snapshots with these methods (SnapshotReads), and so does the
CLI's no-op fast path (virtctl/cli/noop.py, through RawReader) before it imports the
model: both hash the very same records into the very same fingerprint, so a fast path
that matches a fingerprint recorded by a full run saw exactly what that run saw.
Domain states are the names DomainState has (model.py); the driver makes them enums.

May import the foundation modules but virtctl.model, and drivers/snapshot.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import partial
from itertools import chain, pairwise, repeat
from typing import Any

from ..snapshot import DomainRead, NetworkRead

# virDomainState values, in libvirt's order (VIR_DOMAIN_NOSTATE = 0 ...), as DomainState
# names them (tests/unit/test_noop_fastpath.py checks they are DomainState's values).
STATE_NAMES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed",
               "pmsuspended")
# Those of a guest that is running (DomainState.active).
_ACTIVE_NAMES = frozenset({"running", "blocked", "paused", "shutdown", "pmsuspended"})


# A DomainRead from a tuple of its fields, built in C (the NamedTuple's own __new__ is
# Python code, run once per domain on every snapshot).
_record = partial(tuple.__new__, DomainRead)


def state_name(value: int) -> str:
    return STATE_NAMES[value] if 0 <= value < len(STATE_NAMES) else "nostate"


# The state numbers above other than nostate, and those of a guest that is running.
_KNOWN = frozenset(range(1, len(STATE_NAMES)))
_ACTIVE = frozenset(i for i, s in enumerate(STATE_NAMES) if s in _ACTIVE_NAMES)

# A snapshot reads every domain's definitions with up to READERS calls in flight on the
# one connection. Over a socket each call is a round trip, and libvirtd serves up to
# five calls of one client at once (max_client_requests): a local qemu:///system no-op
# of 200 domains reads in 60% of the time with four. A reader gets at least PER_READER
# domains: fewer would not pay for starting its thread. The test driver runs in this
# process: its calls are a few µs of work, which threads contending for the GIL only
# slow down, so it reads in one.
READERS = 4
PER_READER = 32


class SnapshotReads:
    """The reads of a snapshot, over `_conn` (libvirt's connection, `_lv` its module) with
    up to `readers` threads; `_stats` and `_network_xml_flags` remember what this
    connection's driver refused (bulk stats, the INACTIVE flag for networks)."""

    _lv: Any
    _conn: Any
    readers: int
    _stats: bool
    _network_xml_flags: int

    def read_records(self) -> tuple[list[DomainRead], list[NetworkRead]]:
        """Every domain's and network's record (libvirt errors are the caller's to
        translate)."""
        domains = self._read_domains()
        return domains, [n for n in self._read_networks() if n is not None]

    def _uuids(self, objects: Iterable[Any]) -> set[str]:
        return {obj.UUIDString() for obj in objects}

    def _read_domains(self) -> list[DomainRead]:
        # One call for every domain with its state, two for the (usually few) autostart
        # and transient ones, instead of a call per domain for each.
        lv, conn = self._lv, self._conn
        autostart = self._uuids(conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_AUTOSTART))
        transient = self._uuids(conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_TRANSIENT))
        listed = self._domains_with_state()
        try:
            return self._read_all(listed, autostart, transient)
        except lv.libvirtError as exc:
            if exc.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise
        # One went away while being read: again, one by one, leaving such ones out.
        read = (self._read_one(dom, stats, autostart, transient) for dom, stats in listed)
        return [r for r in read if r is not None]

    def _read_all(
        self, listed: list[tuple[Any, dict[str, int]]], autostart: set[str], transient: set[str]
    ) -> list[DomainRead]:
        """Every listed domain, in listing order, read in contiguous slices by up to
        `readers` threads at once (this one included)."""
        count = min(self.readers, len(listed) // PER_READER)
        if count <= 1:
            return self._read_slice(listed, autostart, transient)
        bounds = [len(listed) * i // count for i in range(count + 1)]
        slices = [listed[start:end] for start, end in pairwise(bounds)]
        # Daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's
        # threads at exit, and one stuck in a read of a daemon that stopped answering
        # (abandoned at the call's deadline) would then hold the process forever.
        others = [_Reader(self._read_slice, part, autostart, transient)
                  for part in slices[1:]]
        try:
            first = self._read_slice(slices[0], autostart, transient)
        finally:
            for reader in others:  # no read outlives this call, even when one failed
                reader.join()
        # .result() raises what a reader raised (a domain gone: read again one by one).
        return list(chain(first, *(reader.result() for reader in others)))

    def _read_slice(
        self, listed: list[tuple[Any, dict[str, int]]], autostart: set[str], transient: set[str]
    ) -> list[DomainRead]:
        """Domains read column by column, each column one `map` over them: most of what
        a no-op run does is this, and a loop of Python statements per domain would cost
        more than the calls it makes."""
        lv, cls = self._lv, self._lv.virDomain
        doms = [dom for dom, _ in listed]
        codes = [c if (c := stats.get("state.state", 0)) in _KNOWN else cls.state(dom)[0]
                 for dom, stats in listed]
        uuids = list(map(cls.UUIDString, doms))
        running = [cls.XMLDesc(d, 0) if c in _ACTIVE else None
                   for d, c in zip(doms, codes, strict=True)]
        columns = zip(
            map(cls.name, doms),
            uuids,
            map(cls.XMLDesc, doms, repeat(lv.VIR_DOMAIN_XML_INACTIVE)),
            map(state_name, codes),
            [u in autostart for u in uuids],
            [u not in transient for u in uuids],
            [None if x is None else cls.ID(d) for d, x in zip(doms, running, strict=True)],
            running,
            strict=True,
        )
        return list(map(_record, columns))

    def _read_one(
        self, dom: Any, stats: dict[str, int], autostart: set[str], transient: set[str]
    ) -> DomainRead | None:
        lv = self._lv
        code = stats.get("state.state", 0)
        try:
            if code not in _KNOWN:  # nostate, or a state newer than this code
                code = dom.state()[0]
            xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)
            running_xml = dom.XMLDesc(0) if code in _ACTIVE else None
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                return None  # undefined since it was listed
            raise
        uuid = dom.UUIDString()
        return DomainRead(dom.name(), uuid, xml, state_name(code), uuid in autostart,
                          uuid not in transient, None if running_xml is None else dom.ID(),
                          running_xml)

    def _domains_with_state(self) -> list[tuple[Any, dict[str, int]]]:
        """Every domain with its stats: "state.state", the virDomainState number (none
        when unknown)."""
        lv, conn = self._lv, self._conn
        if self._stats:
            try:
                return conn.getAllDomainStats(lv.VIR_DOMAIN_STATS_STATE, 0)
            except lv.libvirtError as exc:
                if exc.get_error_code() not in (lv.VIR_ERR_NO_SUPPORT, lv.VIR_ERR_INVALID_ARG):
                    raise
                self._stats = False  # a driver without bulk stats: filtered listings
        codes: dict[str, int] = {}
        for flag, code in (
            (lv.VIR_CONNECT_LIST_DOMAINS_RUNNING, lv.VIR_DOMAIN_RUNNING),
            (lv.VIR_CONNECT_LIST_DOMAINS_PAUSED, lv.VIR_DOMAIN_PAUSED),
            (lv.VIR_CONNECT_LIST_DOMAINS_SHUTOFF, lv.VIR_DOMAIN_SHUTOFF),
        ):
            codes.update(dict.fromkeys(self._uuids(conn.listAllDomains(flag)), code))
        return [(dom, {"state.state": codes[uuid]} if (uuid := dom.UUIDString()) in codes
                 else {}) for dom in conn.listAllDomains(0)]

    def _read_networks(self) -> Iterable[NetworkRead | None]:
        lv, conn = self._lv, self._conn
        everything = conn.listAllNetworks(0)
        active = self._uuids(conn.listAllNetworks(lv.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
        autostart = self._uuids(conn.listAllNetworks(lv.VIR_CONNECT_LIST_NETWORKS_AUTOSTART))
        transient = self._uuids(conn.listAllNetworks(lv.VIR_CONNECT_LIST_NETWORKS_TRANSIENT))
        for net in everything:
            uuid = net.UUIDString()
            xml = self._network_xml(net)
            if xml is None:
                yield None  # undefined since it was listed
                continue
            running = self._running_network_xml(net) if uuid in active else None
            yield NetworkRead(name=net.name(), uuid=uuid, xml=xml, active=uuid in active,
                              autostart=uuid in autostart, persistent=uuid not in transient,
                              running_xml=running)

    def _running_network_xml(self, net: Any) -> str | None:
        """The definition an active network runs; None where the driver keeps only one
        (the test driver, found out by `_network_xml`) or the network is gone."""
        if not self._network_xml_flags:
            return None
        try:
            return str(net.XMLDesc(0))
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_NETWORK:
                return None
            raise

    def _network_xml(self, net: Any) -> str | None:
        lv = self._lv
        try:
            return str(net.XMLDesc(self._network_xml_flags))
        except lv.libvirtError as exc:
            code = exc.get_error_code()
            if code == lv.VIR_ERR_NO_NETWORK:
                return None  # undefined since it was listed
            if self._network_xml_flags and code in (lv.VIR_ERR_INVALID_ARG, lv.VIR_ERR_NO_SUPPORT):
                # The test driver keeps one definition and rejects the INACTIVE flag.
                self._network_xml_flags = 0
                return self._network_xml(net)
            raise


class RawReader(SnapshotReads):
    """The reads alone, on a connection someone else opened and closes."""

    def __init__(self, lv: Any, conn: Any, readers: int) -> None:
        self._lv, self._conn, self.readers = lv, conn, readers
        self._stats = True
        self._network_xml_flags = lv.VIR_NETWORK_XML_INACTIVE


class _Reader(threading.Thread):
    """One slice of a big snapshot, read on a daemon thread."""

    def __init__(self, read: Callable[..., list[DomainRead]], *args: Any) -> None:
        super().__init__(name="virtctl-read", daemon=True)
        self._read, self._args = read, args
        self._value: list[DomainRead] = []
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._read(*self._args)
        except BaseException as exc:  # noqa: BLE001 - raised again by result()
            self._error = exc

    def result(self) -> list[DomainRead]:
        if self._error is not None:
            raise self._error
        return self._value
