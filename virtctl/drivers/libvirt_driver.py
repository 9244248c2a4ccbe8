"""The libvirt driver: virtctl's Driver Protocol over libvirt-python.

`virtctl.drivers.connect()` builds it for every URI that is not `sim:` (qemu:///system,
qemu:///session, xen:///system, test:///default, qemu+ssh://, qemu+tls://, qemu+tcp://...).
It translates and decides nothing: each Protocol method is one libvirt call (plus the
lookup by name), every `libvirtError` becomes a virtctl `DriverError` or `TransientError`
(see libvirt_errors), and a read-only connection refuses mutating calls before libvirt
sees them. Events and reconnecting live in libvirt_events. Only these libvirt_* modules
import libvirt, and only when a libvirt URI is opened.

Undefining a domain keeps its NVRAM and TPM state, and libvirt refuses it while a
managed-save image or snapshots exist: virtctl removes definitions, never guest data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from ..errors import DriverError, ErrorCode, ErrorDomain
from ..metadata import owner_from_text
from ..model import DomainState, Kind, Live, LiveDomain, LiveNetwork, Ownership
from .base import EventCallback
from .libvirt_errors import load_libvirt, translated
from .libvirt_events import EventRelay, ensure_event_loop

# virDomainState values, in libvirt's order (VIR_DOMAIN_NOSTATE = 0 ...).
_STATES = (
    DomainState.NOSTATE,
    DomainState.RUNNING,
    DomainState.BLOCKED,
    DomainState.PAUSED,
    DomainState.SHUTDOWN,
    DomainState.SHUTOFF,
    DomainState.CRASHED,
    DomainState.PMSUSPENDED,
)


def _state(value: int) -> DomainState:
    return _STATES[value] if 0 <= value < len(_STATES) else DomainState.NOSTATE


class LibvirtDriver:
    """One libvirt connection. `readonly` opens libvirt's read-only socket."""

    def __init__(self, uri: str, *, readonly: bool = False) -> None:
        self.uri = uri
        self.readonly = readonly
        self._lv = load_libvirt()
        ensure_event_loop(self._lv)  # before opening: remote connections hook in at open
        self._conn: Any = self._open()
        self._network_xml_flags: int = self._lv.VIR_NETWORK_XML_INACTIVE
        self._relay = EventRelay(
            self._lv, current=lambda: self._conn, reopen=self._open, replace=self._replace
        )

    def _open(self) -> Any:
        lv = self._lv
        with translated(lv, context=f"cannot connect to {self.uri}"):
            return lv.openReadOnly(self.uri) if self.readonly else lv.open(self.uri)

    def _replace(self, conn: Any) -> None:
        old, self._conn = self._conn, conn
        try:
            old.close()
        except self._lv.libvirtError:
            pass  # it is the connection that just died

    def close(self) -> None:
        self._relay.close()
        with translated(self._lv):
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    # Reading

    def snapshot(self) -> Live:
        with translated(self._lv):
            domains = [d for d in self._read_domains() if d is not None]
            networks = [n for n in self._read_networks() if n is not None]
        return Live(domains={d.name: d for d in domains}, networks={n.name: n for n in networks})

    def capabilities(self) -> str:
        with translated(self._lv):
            return str(self._conn.getCapabilities())

    def _uuids(self, objects: Iterable[Any]) -> set[str]:
        return {obj.UUIDString() for obj in objects}

    def _read_domains(self) -> Iterable[LiveDomain | None]:
        # A handful of filtered listings instead of per-domain calls: state, autostart and
        # persistence come from which lists a domain is in (names, uuids and ids are
        # carried in the listed objects themselves, no round trip).
        lv, conn = self._lv, self._conn
        everything = conn.listAllDomains(0)
        autostart = self._uuids(conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_AUTOSTART))
        transient = self._uuids(conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_TRANSIENT))
        states: dict[str, DomainState] = {}
        for flag, state in (
            (lv.VIR_CONNECT_LIST_DOMAINS_RUNNING, DomainState.RUNNING),
            (lv.VIR_CONNECT_LIST_DOMAINS_PAUSED, DomainState.PAUSED),
            (lv.VIR_CONNECT_LIST_DOMAINS_SHUTOFF, DomainState.SHUTOFF),
        ):
            states.update(dict.fromkeys(self._uuids(conn.listAllDomains(flag)), state))
        for dom in everything:
            uuid = dom.UUIDString()
            yield self._read_domain(
                dom,
                state=states.get(uuid),
                autostart=uuid in autostart,
                persistent=uuid not in transient,
            )

    def _read_domain(
        self, dom: Any, *, state: DomainState | None, autostart: bool, persistent: bool
    ) -> LiveDomain | None:
        lv = self._lv
        try:
            if state is None:  # the "other" states, or it changed between listings
                state = _state(dom.state()[0])
            xml = dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)
            running_xml = dom.XMLDesc(0) if state.active else None
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                return None  # undefined since it was listed
            raise
        name = dom.name()
        dom_id = dom.ID() if state.active else -1
        return LiveDomain(
            name=name,
            uuid=dom.UUIDString(),
            xml=xml,
            state=state,
            autostart=autostart,
            persistent=persistent,
            id=dom_id if dom_id >= 0 else None,
            owner=_owner(xml, f"{self.uri}: domain {name}"),
            running_xml=running_xml,
        )

    def _read_networks(self) -> Iterable[LiveNetwork | None]:
        lv, conn = self._lv, self._conn
        everything = conn.listAllNetworks(0)
        active = self._uuids(conn.listAllNetworks(lv.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
        autostart = self._uuids(conn.listAllNetworks(lv.VIR_CONNECT_LIST_NETWORKS_AUTOSTART))
        transient = self._uuids(conn.listAllNetworks(lv.VIR_CONNECT_LIST_NETWORKS_TRANSIENT))
        for net in everything:
            uuid = net.UUIDString()
            xml = self._network_xml(net)
            if xml is None:
                yield None
                continue
            name = net.name()
            yield LiveNetwork(
                name=name,
                uuid=uuid,
                xml=xml,
                active=uuid in active,
                autostart=uuid in autostart,
                persistent=uuid not in transient,
                owner=_owner(xml, f"{self.uri}: network {name}"),
            )

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

    # Writing

    def _writable(self, action: str, kind: Kind, name: str = "") -> None:
        if self.readonly:
            what = f"{kind} {name!r}" if name else str(kind)
            raise DriverError(
                f"{self.uri} is open read-only: refusing to {action} {what}",
                code=ErrorCode.OPERATION_INVALID,
                domain=ErrorDomain.LIBVIRT,
            )

    def _lookup(self, kind: Kind, name: str) -> Any:
        if kind is Kind.DOMAIN:
            return self._conn.lookupByName(name)
        return self._conn.networkLookupByName(name)

    def _call(self, action: str, kind: Kind, name: str, call: Callable[[Any], object]) -> None:
        self._writable(action, kind, name)
        with translated(self._lv):
            call(self._lookup(kind, name))

    def define(self, kind: Kind, xml: str) -> None:
        self._writable("define", kind)
        with translated(self._lv):
            if kind is Kind.DOMAIN:
                self._conn.defineXML(xml)
            else:
                self._conn.networkDefineXML(xml)

    def undefine(self, kind: Kind, name: str) -> None:
        if kind is Kind.NETWORK:
            self._call("undefine", kind, name, lambda net: net.undefine())
            return
        self._call("undefine", kind, name, self._undefine_domain)

    def _undefine_domain(self, dom: Any) -> None:
        lv = self._lv
        keep = getattr(lv, "VIR_DOMAIN_UNDEFINE_KEEP_NVRAM", 0) | getattr(
            lv, "VIR_DOMAIN_UNDEFINE_KEEP_TPM", 0
        )
        try:
            dom.undefineFlags(keep)
        except lv.libvirtError as exc:
            # Drivers without NVRAM/TPM support (test://, older xen) reject the flags;
            # they have nothing to keep, so a plain undefine is equivalent.
            if not keep or exc.get_error_code() not in (
                lv.VIR_ERR_INVALID_ARG,
                lv.VIR_ERR_NO_SUPPORT,
            ):
                raise
            dom.undefineFlags(0)

    def start(self, kind: Kind, name: str) -> None:
        self._call("start", kind, name, lambda obj: obj.create())

    def shutdown(self, kind: Kind, name: str) -> None:
        if kind is Kind.NETWORK:  # networks have no graceful stop
            self._call("shut down", kind, name, lambda net: net.destroy())
            return
        self._call("shut down", kind, name, lambda dom: dom.shutdown())

    def destroy(self, kind: Kind, name: str) -> None:
        self._call("destroy", kind, name, lambda obj: obj.destroy())

    def suspend(self, name: str) -> None:
        self._call("suspend", Kind.DOMAIN, name, lambda dom: dom.suspend())

    def resume(self, name: str) -> None:
        self._call("resume", Kind.DOMAIN, name, lambda dom: dom.resume())

    def set_autostart(self, kind: Kind, name: str, enabled: bool) -> None:
        action = "enable autostart of" if enabled else "disable autostart of"
        self._call(action, kind, name, lambda obj: obj.setAutostart(1 if enabled else 0))

    def set_memory(self, name: str, kib: int) -> None:
        flags = self._lv.VIR_DOMAIN_AFFECT_LIVE | self._lv.VIR_DOMAIN_AFFECT_CONFIG
        self._call("set the memory of", Kind.DOMAIN, name,
                   lambda dom: dom.setMemoryFlags(kib, flags))

    # Events

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        with translated(self._lv):
            return self._relay.subscribe(callback)


__all__ = ["LibvirtDriver"]


def _owner(xml: str, source: str) -> Ownership | None:
    return owner_from_text(xml, source=source)
