"""Connection URIs in libvirt's form, and how virtctl picks one.

`driver[+transport]://[user@][host][:port]/[path][?params]`, e.g. `qemu:///system`,
`qemu+ssh://root@host/system`, `test:///default`, `sim:///lab`. Pure, except
`default_uri`, which reads the environment it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .errors import ErrorCode, ErrorDomain, SpecError

DEFAULT_URI = "sim:///default"

_URI_RE = re.compile(
    r"""^(?P<driver>[A-Za-z][A-Za-z0-9_-]*)
        (?:\+(?P<transport>[A-Za-z][A-Za-z0-9_-]*))?
        ://
        (?:(?P<user>[^@/?#]*)@)?
        (?P<host>\[[0-9A-Fa-f:.]+\]|[^:/?#]*)
        (?::(?P<port>[0-9]+))?
        (?P<path>/[^?#]*)?
        (?:\?(?P<query>[^#]*))?$""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class ConnectionURI:
    driver: str
    transport: str | None = None
    user: str | None = None
    host: str | None = None
    port: int | None = None
    path: str = "/"
    params: Mapping[str, str] = field(default_factory=dict)
    raw: str = ""

    @property
    def is_local(self) -> bool:
        return not self.host and self.transport in (None, "unix")

    def __str__(self) -> str:
        return self.raw


def parse_uri(text: str) -> ConnectionURI:
    """Parse a connection URI; raise SpecError naming what is wrong with it."""
    match = _URI_RE.match(text.strip())
    if not match:
        raise SpecError(
            f"invalid connection URI {text!r}: expected "
            "driver[+transport]://[user@][host][:port]/[path][?params]",
            code=ErrorCode.INVALID_URI,
            domain=ErrorDomain.URI,
        )
    port = match["port"]
    host = match["host"] or None
    if host and host.startswith("["):
        host = host[1:-1]
    return ConnectionURI(
        driver=match["driver"].lower(),
        transport=(match["transport"] or None) and match["transport"].lower(),
        user=unquote(match["user"]) if match["user"] else None,
        host=unquote(host) if host else None,
        port=int(port) if port else None,
        path=unquote(match["path"] or "/"),
        params=dict(parse_qsl(match["query"] or "", keep_blank_values=True)),
        raw=text.strip(),
    )


def default_uri(explicit: str | None, env: Mapping[str, str]) -> str:
    """--connect, else $VIRTCTL_CONNECT, else $LIBVIRT_DEFAULT_URI, else sim:///default."""
    for candidate in (explicit, env.get("VIRTCTL_CONNECT"), env.get("LIBVIRT_DEFAULT_URI")):
        if candidate:
            return candidate
    return DEFAULT_URI
