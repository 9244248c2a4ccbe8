"""The libvirt driver's live calls: hot-plug, media change, vcpus, virNetworkUpdate, the
running note and one object's definition (docs/libvirt-driver.md, "Live changes").

A mixin of `LibvirtDriver` (libvirt_driver.py), kept apart so each file stays small.
Like the rest of the driver, each method is one libvirt call on the looked-up object;
`live`/`config` become libvirt's AFFECT_LIVE/AFFECT_CONFIG flags (at least one is
required), and a refusal keeps libvirt's message behind a prefix naming the operation,
e.g. "cannot attach a device to domain 'web': unsupported configuration: disk bus 'ide'
cannot be hotplugged." (code `config-unsupported`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lxml import etree

from ...errors import DriverError, ErrorCode, ErrorDomain, SpecError
from ...model import Kind, LiveOp, NetworkCommand, NetworkSection
from ...uri import parse_uri
from ...xmlutil import LIVE_NS, LIVE_NS_PREFIX, parse, tostring
from .errors import translated

# What each libvirt driver changes on running objects, by the URI's driver name. Anything
# not listed gets NETWORK only (the network driver is libvirt's own, whatever runs the
# guests). Decision: a table by driver name rather than probing (a probe would have to
# change a guest to learn whether it can) and rather than asking for every operation
# everywhere (a host that cannot would fail each run where a restart was the answer).
_ALL = frozenset(LiveOp)
LIVE_OPS: dict[str, frozenset[LiveOp]] = {
    "qemu": _ALL,
    "kvm": _ALL,
    "xen": _ALL,
    "libxl": _ALL,
    # libvirt 9.0's test driver has no attach/detach/updateDeviceFlags; setVcpusFlags and
    # networkUpdate work.
    "test": frozenset({LiveOp.VCPUS, LiveOp.NETWORK}),
    "lxc": frozenset({LiveOp.NETWORK}),
}
_DEFAULT_OPS = frozenset({LiveOp.NETWORK})

_SECTIONS = {
    NetworkSection.DHCP_HOST: "VIR_NETWORK_SECTION_IP_DHCP_HOST",
    NetworkSection.DHCP_RANGE: "VIR_NETWORK_SECTION_IP_DHCP_RANGE",
    NetworkSection.DNS_HOST: "VIR_NETWORK_SECTION_DNS_HOST",
    NetworkSection.DNS_TXT: "VIR_NETWORK_SECTION_DNS_TXT",
    NetworkSection.DNS_SRV: "VIR_NETWORK_SECTION_DNS_SRV",
    NetworkSection.PORTGROUP: "VIR_NETWORK_SECTION_PORTGROUP",
    NetworkSection.FORWARD_INTERFACE: "VIR_NETWORK_SECTION_FORWARD_INTERFACE",
}
_COMMANDS = {
    NetworkCommand.ADD: "VIR_NETWORK_UPDATE_COMMAND_ADD_LAST",
    NetworkCommand.DELETE: "VIR_NETWORK_UPDATE_COMMAND_DELETE",
    NetworkCommand.MODIFY: "VIR_NETWORK_UPDATE_COMMAND_MODIFY",
}

# A running domain's XML carries its id on the root element; a shut-off one's does not.
_RUNNING_ROOT = re.compile(r"<domain\b[^>]*\sid=['\"]")


def live_ops_for(uri: str) -> frozenset[LiveOp]:
    try:
        driver = parse_uri(uri).driver
    except SpecError:
        return _DEFAULT_OPS
    return LIVE_OPS.get(driver, _DEFAULT_OPS)


def _not_running(uri: str, kind: Kind, name: str) -> DriverError:
    what = "running" if kind is Kind.DOMAIN else "active"
    return DriverError(f"{uri}: {kind} '{name}' is not {what}",
                       code=ErrorCode.OPERATION_INVALID, domain=ErrorDomain.LIBVIRT)


class LiveCalls:
    """The live part of the Driver Protocol for LibvirtDriver (see the module doc)."""

    if TYPE_CHECKING:
        uri: str
        _lv: Any
        _network_xml_flags: int

        def _writable(self, action: str, kind: Kind, name: str = "") -> None: ...
        def _lookup(self, kind: Kind, name: str) -> Any: ...
        def _pool_xml(self, pool: Any) -> str: ...

    def live_ops(self) -> frozenset[LiveOp]:
        """What this host changes on running objects, by the URI's driver name:
        qemu, kvm, xen, libxl: every LiveOp; test: VCPUS and NETWORK (libvirt 9.0's
        test driver implements setVcpusFlags and networkUpdate but no device hot-plug);
        lxc and any other driver: NETWORK only (virNetworkUpdate is the network
        driver's, whatever runs the guests). A table rather than a probe: learning
        whether a host hot-plugs would mean changing a guest."""
        return live_ops_for(self.uri)

    def definition(self, kind: Kind, name: str, *, running: bool = False) -> str:
        lv = self._lv
        with translated(lv):
            obj = self._lookup(kind, name)
            if kind is Kind.DOMAIN:
                xml = str(obj.XMLDesc(0 if running else lv.VIR_DOMAIN_XML_INACTIVE))
                if running and not _RUNNING_ROOT.match(xml):
                    raise _not_running(self.uri, kind, name)
                return xml
            if running:
                if not obj.isActive():
                    raise _not_running(self.uri, kind, name)
                return str(obj.XMLDesc(0))
            if kind is Kind.POOL:
                return self._pool_xml(obj)
            return self._inactive_network_xml(obj)

    def _inactive_network_xml(self, net: Any) -> str:
        lv = self._lv
        try:
            return str(net.XMLDesc(self._network_xml_flags))
        except lv.libvirtError as exc:
            if not self._network_xml_flags or exc.get_error_code() not in (
                lv.VIR_ERR_INVALID_ARG, lv.VIR_ERR_NO_SUPPORT
            ):
                raise
        # The test driver keeps one definition and rejects the INACTIVE flag.
        self._network_xml_flags = 0
        return str(net.XMLDesc(0))

    def _flags(self, action: str, name: str, *, live: bool, config: bool,
               network: bool = False) -> int:
        lv = self._lv
        if not (live or config):
            raise DriverError(
                f"cannot {action} '{name}': neither the running object (live) nor the "
                "persistent definition (config) was asked for",
                code=ErrorCode.OPERATION_INVALID, domain=ErrorDomain.LIBVIRT,
            )
        if network:
            return (lv.VIR_NETWORK_UPDATE_AFFECT_LIVE if live else 0) | (
                lv.VIR_NETWORK_UPDATE_AFFECT_CONFIG if config else 0)
        return (lv.VIR_DOMAIN_AFFECT_LIVE if live else 0) | (
            lv.VIR_DOMAIN_AFFECT_CONFIG if config else 0)

    def _live_call(self, action: str, kind: Kind, name: str,
                   call: Callable[[Any], object]) -> None:
        """One call on the looked-up object; a refusal says what was refused."""
        self._writable(action, kind, name)
        try:
            with translated(self._lv, context=f"cannot {action} {kind} '{name}'"):
                call(self._lookup(kind, name))
        except DriverError as exc:
            # QEMU's own refusal ("Bus 'ide.0' does not support hotplugging") reaches
            # libvirt 9.0 as an internal error; it is a refusal like libvirt's own
            # OPERATION_UNSUPPORTED "disk bus 'ide' cannot be hotplugged.", not a failure.
            if exc.code is ErrorCode.OPERATION_FAILED and "hotplug" in exc.message.lower():
                raise DriverError(exc.message, code=ErrorCode.UNSUPPORTED,
                                  domain=exc.domain, driver_code=exc.driver_code) from exc
            raise

    def attach_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        flags = self._flags("attach a device to", name, live=live, config=config)
        self._live_call("attach a device to", Kind.DOMAIN, name,
                        lambda dom: dom.attachDeviceFlags(xml, flags))

    def detach_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        """dom.detachDeviceFlags. On a running QEMU guest libvirt asks the guest and
        waits about 5 s for the release; it returns without an error when the guest has
        not released the device by then (callers poll `definition`)."""
        flags = self._flags("detach a device from", name, live=live, config=config)
        self._live_call("detach a device from", Kind.DOMAIN, name,
                        lambda dom: dom.detachDeviceFlags(xml, flags))

    def update_device(self, name: str, xml: str, *, live: bool = True,
                      config: bool = False) -> None:
        """dom.updateDeviceFlags. A CD-ROM medium change is open tray, remove, insert,
        close. A guest that closes the tray itself meanwhile (firmware probing the drive
        at boot does) makes QEMU refuse the next step, and libvirt 9.0 never hears of
        that close: it keeps `tray='open'` and refuses every later change the same way.
        Asking again cannot help, so that refusal is raised at once, saying how to
        recover."""
        flags = self._flags("update a device of", name, live=live, config=config)
        try:
            self._live_call("update a device of", Kind.DOMAIN, name,
                            lambda dom: dom.updateDeviceFlags(xml, flags))
        except DriverError as exc:
            if "tray" not in exc.message.lower() or "not open" not in exc.message.lower():
                raise
            raise DriverError(
                f"{exc.message}; the guest closed the CD-ROM tray while libvirt changed "
                "the medium (the drive may now be empty), and libvirt takes the tray for "
                "open when it is not. It refuses medium changes until it sees the tray "
                "move: the guest ejecting the medium, or a restart of libvirtd (which "
                "reads the tray again), clears it", code=exc.code, domain=exc.domain,
                driver_code=exc.driver_code) from exc

    def set_vcpus(self, name: str, count: int, *, live: bool = True,
                  config: bool = False) -> None:
        flags = self._flags("set the vcpus of", name, live=live, config=config)
        self._live_call("set the vcpus of", Kind.DOMAIN, name,
                        lambda dom: dom.setVcpusFlags(count, flags))

    def guest_filesystems(self, name: str) -> dict[str, tuple[str, ...]]:
        """disk target -> mount points of the guest's filesystems on it, from its agent
        (virDomainGetGuestInfo(FILESYSTEM): guest-get-fsinfo, each guest disk mapped to
        its libvirt target by libvirt). DriverError when no agent answers."""
        lv = self._lv
        with translated(lv, context=f"cannot ask the guest agent of '{name}'"):
            info = self._lookup(Kind.DOMAIN, name).guestInfo(
                lv.VIR_DOMAIN_GUEST_INFO_FILESYSTEM, 0)
        out: dict[str, set[str]] = {}
        for fs in range(int(info.get("fs.count", 0))):
            point = str(info.get(f"fs.{fs}.mountpoint", ""))
            for disk in range(int(info.get(f"fs.{fs}.disk.count", 0))):
                target = info.get(f"fs.{fs}.disk.{disk}.alias")
                if target and point:
                    out.setdefault(str(target), set()).add(point)
        return {target: tuple(sorted(points)) for target, points in out.items()}

    def online_guest_vcpus(self, name: str, count: int) -> None:
        """Ask the guest agent to online `count` vcpus (virDomainSetVcpusFlags with
        VIR_DOMAIN_VCPU_GUEST: guest-set-vcpus)."""
        lv = self._lv
        self._live_call("online the vcpus of", Kind.DOMAIN, name,
                        lambda dom: dom.setVcpusFlags(count, lv.VIR_DOMAIN_VCPU_GUEST))

    def guest_online_vcpus(self, name: str) -> int:
        """How many vcpus the guest has online, from its agent (guest-get-vcpus)."""
        with translated(self._lv, context=f"cannot ask the guest agent of '{name}'"):
            info = self._lookup(Kind.DOMAIN, name).guestVcpus(0)
        return online_count(str(info.get("online", "")))

    def update_network(
        self, name: str, command: NetworkCommand, section: NetworkSection, xml: str,
        *, parent_index: int = -1, live: bool = True, config: bool = False,
    ) -> None:
        lv = self._lv
        action = f"{command} a {section} entry of"
        flags = self._flags(action, name, live=live, config=config, network=True)
        code, part = getattr(lv, _COMMANDS[command]), getattr(lv, _SECTIONS[section])
        self._live_call(action, Kind.NETWORK, name,
                        lambda net: net.update(code, part, parent_index, xml, flags))

    def set_running_note(self, name: str, xml: str | None) -> None:
        """dom.setMetadata(ELEMENT, xml, LIVE_NS_PREFIX, LIVE_NS, AFFECT_LIVE); None
        removes the element of that namespace. libvirt puts the element and its
        children into the namespace itself and refuses one that declares the prefix
        already ("failed to create a new XML namespace"), so it gets them unqualified."""
        lv = self._lv
        plain = None if xml is None else unqualified(xml)
        self._live_call(
            "set the running note of", Kind.DOMAIN, name,
            lambda dom: dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, plain, LIVE_NS_PREFIX,
                                        LIVE_NS, lv.VIR_DOMAIN_AFFECT_LIVE),
        )


def online_count(cpus: str) -> int:
    """How many cpus a libvirt cpu list names ('0-1,3' -> 3; '' -> 0)."""
    count = 0
    for part in (p.strip() for p in cpus.split(",")):
        if part:
            low, _, high = part.partition("-")
            count += int(high or low) - int(low) + 1
    return count


def unqualified(xml: str) -> str:
    """The note with its LIVE_NS elements in no namespace (libvirt adds it back)."""
    try:
        root = parse(xml, source="<running note>")
    except SpecError as exc:
        raise DriverError(f"running note: {exc.message}", code=ErrorCode.INVALID_SPEC,
                          domain=ErrorDomain.LIBVIRT) from None
    for elem in root.iter():
        if isinstance(elem.tag, str) and elem.tag.startswith(f"{{{LIVE_NS}}}"):
            elem.tag = etree.QName(elem).localname
    etree.cleanup_namespaces(root)
    return tostring(root, pretty=False)
