"""A host's identity: what makes two connection URIs the same host.

`qemu+ssh://root@web1/system` and `qemu+tls://web1.example.com/system` reach one
hypervisor; locks (and fleet status) must be keyed by the host, not by the text of its
URI. The identity, in order of preference:

1. a sim host: its state directory on this machine (`sim-NAME-HASH`); every sim host
   reports the same capabilities uuid, so the uuid cannot tell them apart;
2. libvirt's host UUID, `<capabilities><host><uuid>` (the SMBIOS system UUID, or
   `host_uuid` in libvirtd.conf), unless it is one no real machine is told apart by
   (all zeros, all one digit, or the placeholder some firmware ships: see _PLACEHOLDERS);
3. else the URI's host name (the local host name for a local URI) plus the driver
   (`name-web1-qemu`): two spellings of one host then differ, but one spelling always
   maps to one lock.

`host_identity(driver)` asks the capabilities once per connection (the libvirt driver
caches them per connection too) and caches the answer on the driver object.
"""

from __future__ import annotations

import hashlib
import re
import socket
import weakref
from dataclasses import dataclass
from typing import Protocol

from ..uri import parse_uri
from ..xmlutil import parse as parse_xml

# UUIDs firmware vendors ship unchanged on many boards (seen in the wild; libvirt's
# docs recommend host_uuid for them).
_PLACEHOLDERS = frozenset({
    "03000200-0400-0500-0006-000700080009",
    "00020003-0004-0005-0006-000700080009",
    "12345678-1234-5678-90ab-cddeefaabbcc",
})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class _Host(Protocol):
    uri: str

    def capabilities(self) -> str: ...


@dataclass(frozen=True, slots=True)
class HostId:
    key: str  # safe as one etcd key segment: [A-Za-z0-9._-]
    how: str  # "uuid", "sim" or "name": where the key came from

    def __str__(self) -> str:
        return self.key


_cache: weakref.WeakKeyDictionary[object, HostId] = weakref.WeakKeyDictionary()


def host_identity(driver: _Host) -> HostId:
    """The identity of the host `driver` is connected to, cached per connection."""
    try:
        return _cache[driver]
    except (KeyError, TypeError):
        pass
    found = identify(driver.uri, lambda: driver.capabilities(),
                     state_dir=_sim_root(driver))
    try:
        _cache[driver] = found
    except TypeError:  # not weak-referenceable: asked again next time
        pass
    return found


def _sim_root(driver: object) -> str | None:
    store = getattr(driver, "store", None)
    root = getattr(store, "root", None)
    return None if root is None else str(root)


def identify(uri: str, capabilities: object, *, state_dir: str | None = None,
             local_name: str | None = None) -> HostId:
    """The identity for `uri` (pure but for `capabilities`, a callable returning the
    capabilities XML, asked only when needed, and the local host name)."""
    parsed = parse_uri(uri)
    if parsed.driver == "sim":
        # A sim lives in a state directory of one machine: the same path on another
        # machine is another sim.
        name = parsed.path.strip("/") or "default"
        where = state_dir if state_dir is not None else name
        machine = local_name or socket.gethostname()
        digest = hashlib.sha256(f"{machine}\0{where}".encode()).hexdigest()[:16]
        return HostId(f"sim-{_safe(name)[:40]}-{digest}", "sim")
    uuid = host_uuid(capabilities() if callable(capabilities) else str(capabilities))
    if uuid is not None:
        return HostId(uuid, "uuid")
    host = parsed.host or local_name or socket.gethostname()
    return HostId(f"name-{_safe(host.lower())[:120]}-{_safe(parsed.driver)}", "name")


def host_uuid(capabilities_xml: str) -> str | None:
    """`<host><uuid>` from capabilities XML, normalised; None if absent or a
    placeholder."""
    try:
        root = parse_xml(capabilities_xml)
    except Exception:  # noqa: BLE001 (an unreadable document names no host)
        return None
    text = (root.findtext("host/uuid") or "").strip().lower()
    if not _UUID.match(text) or text in _PLACEHOLDERS:
        return None
    if len(set(text.replace("-", ""))) == 1:  # all zeros, all f
        return None
    return text


def _safe(text: str) -> str:
    return _SAFE.sub("_", text) or "_"
