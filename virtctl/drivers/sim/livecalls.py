"""The live calls of the `sim` driver (a mixin of SimDriver, sim.py): device hot-plug,
media and link changes, vcpus, virNetworkUpdate and the running note, over the records'
`running_xml` (live) and `xml` (config) through simlive.py and simnetlive.py, with the
driver's locking, faults and events (`_mutate`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from ...errors import DriverError, ErrorCode, ErrorDomain
from ...model import Kind, LiveOp, NetworkCommand, NetworkSection
from ...xmlutil import parse, tostring
from . import live as simlive
from ..base import EventType
from .netlive import network_update
from .store import Record, SimStore


def _error(message: str, code: ErrorCode) -> DriverError:
    return DriverError(message, code=code, domain=ErrorDomain.SIM)


def not_running(kind: Kind, name: str) -> DriverError:
    state = "running" if kind is Kind.DOMAIN else "active"
    return _error(f"{kind} '{name}' is not {state}", ErrorCode.OPERATION_INVALID)



class SimLiveCalls:
    """See the module doc; the Protocol's docstrings say what each call does."""

    if TYPE_CHECKING:
        store: SimStore

        def _parse(self, xml: str) -> etree._Element: ...
        def _require(self, kind: Kind, name: str) -> Record: ...
        def _fault(self, op: str, kind: Kind, name: str) -> dict[str, Any] | None: ...
        def _mutate(self, op: str, kind: Kind, name: str,
                    body: Callable[[], EventType | None]) -> None: ...

    def live_ops(self) -> frozenset[LiveOp]:
        return frozenset(LiveOp)

    def definition(self, kind: Kind, name: str, *, running: bool = False) -> str:
        with self.store.locked(exclusive=False):
            record = self._require(kind, name)
        xml = record.get("running_xml") if running else record["xml"]
        if not xml:
            raise not_running(kind, name)
        return str(xml)

    def attach_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        device = self._parse(xml)
        suffix = ":".join(secrets.token_hex(1) for _ in range(3))
        self._live("attach", "attach a device to", Kind.DOMAIN, name, live, config,
                   lambda root, now: simlive.attach(
                       root, simlive.with_mac(device, root, suffix), live=now))

    def detach_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        device = self._parse(xml)

        def change(root: etree._Element, now: bool) -> None:
            kept = now and (self._fault("detach", Kind.DOMAIN, name) or {}).get("action")
            simlive.detach(root, device, live=now, release=kept != "ignore")

        self._live("detach", "detach a device from", Kind.DOMAIN, name, live, config, change)

    def update_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        device = self._parse(xml)
        self._live("update", "update a device of", Kind.DOMAIN, name, live, config,
                   lambda root, _now: simlive.update(root, device))

    def set_vcpus(self, name: str, count: int, *, live: bool = True,
                  config: bool = False) -> None:
        self._live("set_vcpus", "set the vcpus of", Kind.DOMAIN, name, live, config,
                   lambda root, _now: simlive.set_vcpus(root, count))

    def update_network(
        self, name: str, command: NetworkCommand, section: NetworkSection, xml: str,
        *, parent_index: int = -1, live: bool = True, config: bool = False,
    ) -> None:
        entry = self._parse(xml)
        self._live("update_network", f"{command} a {section} entry of", Kind.NETWORK, name,
                   live, config,
                   lambda root, _now: network_update(root, command, section, entry,
                                                     parent_index))

    def set_running_note(self, name: str, xml: str | None) -> None:
        note = None if xml is None else self._parse(xml)
        self._live("set_running_note", "set the running note of", Kind.DOMAIN, name, True,
                   False, lambda root, _now: simlive.set_note(root, note), event=None)

    def _live(
        self, op: str, action: str, kind: Kind, name: str, live: bool, config: bool,
        change: Callable[[etree._Element, bool], None],
        event: EventType | None = EventType.CHANGED,
    ) -> None:
        """Run `change(root, is_running_definition)` on the running definition (`live`)
        and/or the persistent one (`config`); nothing is written unless all succeed."""
        if not (live or config):
            raise _error(f"cannot {action} {kind} '{name}': neither live nor config asked for",
                         ErrorCode.OPERATION_INVALID)

        def body() -> EventType | None:
            record = self._require(kind, name)
            if live and not record.get("running_xml"):
                raise not_running(kind, name)
            if config and not record["persistent"]:
                raise _error(f"cannot change persistent config of a transient {kind}",
                             ErrorCode.OPERATION_INVALID)
            for field in ("running_xml",) * live + ("xml",) * config:
                root = parse(record[field])
                try:
                    change(root, field == "running_xml")
                except simlive.LiveError as exc:
                    raise _error(f"cannot {action} {kind} '{name}': {exc.message}",
                                 exc.code) from None
                record[field] = tostring(root)
            self.store.put(kind, name, record)
            return event

        self._mutate(op, kind, name, body)

