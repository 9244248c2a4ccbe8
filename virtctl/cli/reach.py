"""Reaching guests: their addresses, and the ssh command line to one of them.

Addresses on a libvirt host come from the guest agent, else the network's DHCP leases,
else the host's ARP table (virDomainInterfaceAddresses with each source in turn, the
first that answers with an address wins, per guest). The sim runs no guest: what it
knows is a network's DHCP host entries (`dhcp-host`, the address a guest with that
MAC is given), reported for its running guests only and named as such.

`ssh_argv` builds the argument list for the system ssh, never a shell string: the
guest name, user and command are arguments, not text a local shell reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Live, LiveDomain
from ..xmlutil import parse

AGENT, LEASE, ARP, DHCP_HOST = "agent", "lease", "arp", "dhcp-host"


@dataclass(frozen=True, slots=True)
class Address:
    ip: str
    source: str  # agent | lease | arp | dhcp-host
    mac: str = ""
    prefix: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ip": self.ip, "prefix": self.prefix, "mac": self.mac, "source": self.source}


def guest_addresses(reader: Any, live: Live,
                    names: Sequence[str] | None = None) -> dict[str, tuple[Address, ...]]:
    """name -> addresses of the running guests of `live` (or of `names`)."""
    wanted = [d for n, d in sorted(live.domains.items())
              if (names is None or n in names) and d.state.active]
    if getattr(reader, "_lv", None) is not None and getattr(reader, "_conn", None) is not None:
        return {d.name: _libvirt_addresses(reader, d.name) for d in wanted}
    return {d.name: _reserved(d, live) for d in wanted}


def _macs(dom: LiveDomain) -> list[tuple[str, str]]:
    root = parse(dom.xml)
    return [((nic.find("mac").get("address") or "").lower(),  # type: ignore[union-attr]
             nic.find("source").get("network") or "")  # type: ignore[union-attr]
            for nic in root.iterfind("devices/interface[@type='network']")
            if nic.find("mac") is not None and nic.find("source") is not None]


def _reserved(dom: LiveDomain, live: Live) -> tuple[Address, ...]:
    out: list[Address] = []
    for mac, network in _macs(dom):
        net = live.networks.get(network)
        if net is None or not net.active:
            continue
        root = parse(net.xml)
        for ip in root.iterfind("ip"):
            for host in ip.iterfind("dhcp/host"):
                if (host.get("mac") or "").lower() == mac and host.get("ip"):
                    prefix = ip.get("prefix")
                    out.append(Address(host.get("ip") or "", DHCP_HOST, mac,
                                       int(prefix) if prefix and prefix.isdigit() else None))
    return tuple(out)


def _libvirt_addresses(reader: Any, name: str) -> tuple[Address, ...]:
    lv = reader._lv
    sources = ((AGENT, lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT),
               (LEASE, lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE),
               (ARP, lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP))
    for label, source in sources:
        def ask(source: int = source) -> Any:
            return reader._conn.lookupByName(name).interfaceAddresses(source, 0)

        try:
            found = reader._deadline.run(f"addresses of {name}", ask)
        except Exception:  # noqa: BLE001 - no agent, no lease: the next source is asked
            continue
        out = [Address(a["addr"], label, (iface.get("hwaddr") or "").lower(), a.get("prefix"))
               for iface in (found or {}).values() for a in iface.get("addrs") or []
               if a.get("addr") and not a["addr"].startswith(("127.", "::1", "fe80:"))]
        if out:
            return tuple(out)
    return ()


def first_ip(addresses: Sequence[Address]) -> str | None:
    """IPv4 first: a guest's IPv6 link-local or SLAAC address is rarely what ssh wants."""
    v4 = [a.ip for a in addresses if ":" not in a.ip]
    return (v4 or [a.ip for a in addresses] or [None])[0]


def ssh_argv(ip: str, user: str | None, command: Sequence[str],
             options: Sequence[str] = ()) -> list[str]:
    """`ssh [-l USER] [OPTIONS] -- IP [COMMAND...]`: "--" ends ssh's options, so nothing
    after it is read as one; the command's words go to the guest as they are (ssh joins
    them for the remote shell, as it always does)."""
    argv = ["ssh"]
    if user:
        argv += ["-l", user]
    argv += [*options, "--", ip, *command]
    return argv


def cloud_user(user_data: Any) -> str | None:
    """The login user of a cloud-init user-data document: the first user of `users`
    that is not "default", else `system_info.default_user.name`; None: ssh's own."""
    import yaml

    if isinstance(user_data, str):
        try:
            user_data = yaml.safe_load(user_data)
        except yaml.YAMLError:
            return None
    if not isinstance(user_data, Mapping):
        return None
    for user in user_data.get("users") or []:
        if isinstance(user, Mapping) and isinstance(user.get("name"), str):
            return str(user["name"])
        if isinstance(user, str) and user != "default":
            return user
    info = user_data.get("system_info")
    default = info.get("default_user") if isinstance(info, Mapping) else None
    if isinstance(default, Mapping) and isinstance(default.get("name"), str):
        return str(default["name"])
    return None
