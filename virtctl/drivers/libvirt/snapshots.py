"""The libvirt driver's snapshot and health-probe calls: mixed into `LibvirtDriver`
(kept here with the rest of the feature; like every libvirt_* module it touches
libvirt only through the driver's loaded module, `self._lv`).

Checkpoints are internal snapshots (QEMU's, inside the qcow2 files), taken while the
guest is off unless memory state is asked for; CD-ROMs, floppies and read-only disks
are left out of them (`snapshot='no'`). Probes: the guest agent's `guest-ping`, a TCP
connection to the guest's address (DHCP lease, else agent, else ARP), and cloud-init's
`boot-finished` file read through the agent.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from ...errors import DriverError
from ...model import Kind
from ...xmlutil import parse, tostring
from ...checkpoints import SnapshotInfo

if TYPE_CHECKING:
    from types import ModuleType

AGENT_TIMEOUT = 5  # seconds one agent command may take (libvirt's own bound)
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"


def snapshot_xml(name: str, description: str, domain_xml: str, *, memory: bool) -> str:
    """The <domainsnapshot> asking for an internal snapshot of the writable disks."""
    root = parse(domain_xml)
    skip = []
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        if target is None:
            continue
        if (disk.get("device", "disk") != "disk" or disk.find("readonly") is not None
                or disk.find("source") is None):
            skip.append(f"<disk name={quoteattr(target.get('dev', ''))} snapshot='no'/>")
    mem = "" if memory else "<memory snapshot='no'/>"
    return (f"<domainsnapshot><name>{escape(name)}</name>"
            f"<description>{escape(description)}</description>{mem}"
            f"<disks>{''.join(skip)}</disks></domainsnapshot>")


class LibvirtSnapshots:
    _lv: ModuleType
    _conn: Any

    if TYPE_CHECKING:
        def _lookup(self, kind: Kind, name: str) -> Any: ...
        def _writable(self, action: str, kind: Kind, name: str = "") -> None: ...

    def _translated(self, context: str) -> Any:
        from .errors import translated

        return translated(self._lv, context=context)

    def snapshots(self, name: str) -> tuple[SnapshotInfo, ...]:
        out = []
        with self._translated(f"cannot list the snapshots of '{name}'"):
            for snap in self._lookup(Kind.DOMAIN, name).listAllSnapshots(0):
                root = parse(snap.getXMLDesc(0))
                memory = root.find("memory")
                state = root.findtext("state") or ""
                # The persistent definition it saved: <inactiveDomain> when it differs
                # from the running one (a snapshot with memory), else <domain>.
                saved = root.find("inactiveDomain")
                saved = saved if saved is not None else root.find("domain")
                if saved is not None and saved.tag == "inactiveDomain":
                    saved = copy.deepcopy(saved)
                    saved.tag = "domain"
                out.append(SnapshotInfo(
                    name=snap.getName(), created=float(root.findtext("creationTime") or 0),
                    description=root.findtext("description") or "",
                    memory=state in ("running", "paused") and (
                        memory is None or memory.get("snapshot") != "no"),
                    definition=tostring(saved, pretty=False) if saved is not None else ""))
        return tuple(sorted(out, key=lambda s: (s.created, s.name)))

    def create_snapshot(self, name: str, snapshot: str, description: str, *,
                        memory: bool = False) -> None:
        self._writable("snapshot", Kind.DOMAIN, name)
        with self._translated(f"cannot take checkpoint '{snapshot}' of '{name}'"):
            dom = self._lookup(Kind.DOMAIN, name)
            dom.snapshotCreateXML(snapshot_xml(snapshot, description, dom.XMLDesc(0),
                                               memory=memory), 0)

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        self._writable("revert", Kind.DOMAIN, name)
        with self._translated(f"cannot revert '{name}' to '{snapshot}'"):
            dom = self._lookup(Kind.DOMAIN, name)
            dom.revertToSnapshot(dom.snapshotLookupByName(snapshot, 0), 0)

    def delete_snapshot(self, name: str, snapshot: str, *, keep_data: bool = False) -> None:
        self._writable("delete a snapshot of", Kind.DOMAIN, name)
        flags = self._lv.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY if keep_data else 0
        with self._translated(f"cannot delete checkpoint '{snapshot}' of '{name}'"):
            self._lookup(Kind.DOMAIN, name).snapshotLookupByName(snapshot, 0).delete(flags)

    # -- probes: False when the guest does not answer (yet) ----------------------------

    def _agent(self, name: str, command: dict[str, Any]) -> Any:
        import libvirt_qemu  # part of libvirt-python, as libvirt itself

        dom = self._lookup(Kind.DOMAIN, name)
        return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(command),
                                                        AGENT_TIMEOUT, 0))

    def agent_ping(self, name: str) -> bool:
        try:
            self._agent(name, {"execute": "guest-ping"})
        except (self._lv.libvirtError, ValueError):
            return False
        return True

    def cloud_init_done(self, name: str) -> bool:
        try:
            handle = self._agent(name, {"execute": "guest-file-open",
                                        "arguments": {"path": BOOT_FINISHED, "mode": "r"}})
        except (self._lv.libvirtError, ValueError):
            return False
        with contextlib.suppress(self._lv.libvirtError, ValueError):
            self._agent(name, {"execute": "guest-file-close",
                               "arguments": {"handle": handle.get("return")}})
        return True

    def tcp_open(self, name: str, port: int) -> bool:
        lv = self._lv
        try:
            dom = self._lookup(Kind.DOMAIN, name)
        except lv.libvirtError as exc:
            raise DriverError(f"cannot probe '{name}': {exc}") from None
        addresses: list[str] = []
        for source in ("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE",
                       "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT",
                       "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP"):
            try:
                found = dom.interfaceAddresses(getattr(lv, source), 0) or {}
            except lv.libvirtError:
                continue
            addresses += [a["addr"] for nic in found.values() for a in nic.get("addrs") or ()
                          if a.get("addr")]
            if addresses:
                break
        for address in addresses:
            with contextlib.suppress(OSError):
                socket.create_connection((address, port), timeout=2).close()
                return True
        return False
