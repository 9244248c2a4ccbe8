"""`--coordination URL` and its credentials (docs/fleet.md, "Options").

    etcd://h1:2379,h2:2379,h3:2379          plain HTTP to etcd's gateway
    etcd+https://h1:2379,h2:2379            TLS: --etcd-ca (else the system's CAs),
                                            client certificate --etcd-cert/--etcd-key
    etcd://alice@h1:2379                    etcd auth as alice (also $VIRTCTL_ETCD_USER)

The password comes from --etcd-password-file (its first line) or $VIRTCTL_ETCD_PASSWORD,
never from the command line, where `ps` shows it to every user: a URL holding one is
refused, and the refusal does not repeat it. A `Coordination` never prints its password
(repr hidden) and errors name the endpoints only.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ErrorCode, ErrorDomain, VirtctlError
from ..fileio import open_regular
from .etcd import DEFAULT_TIMEOUT, Credentials, EtcdClient

DEFAULT_PORT = 2379
DEFAULT_TTL = 15  # seconds: how long a host stays locked by a holder that died
MIN_TTL = 2  # etcd grants at least its own minimum (about 1.5 s x election)


class CoordinationError(VirtctlError):
    """A --coordination URL, option or credential file that cannot be used."""

    default_code = ErrorCode.INVALID_URI
    default_domain = ErrorDomain.COORDINATION


@dataclass(frozen=True, slots=True)
class Coordination:
    endpoints: tuple[str, ...]
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    credentials: Credentials | None = field(default=None, repr=False)
    lease_ttl: int = DEFAULT_TTL
    timeout: float = DEFAULT_TIMEOUT

    @property
    def url(self) -> str:
        """The URL without credentials (safe to print)."""
        user = f"{self.credentials.user}@" if self.credentials else ""
        return f"etcd{'+https' if self.tls else ''}://{user}{','.join(self.endpoints)}"

    def client(self) -> EtcdClient:
        return EtcdClient(self.endpoints, tls=self._context() if self.tls else None,
                          credentials=self.credentials, timeout=self.timeout)

    def _context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca)
            if self.cert:
                context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise CoordinationError(f"cannot use the etcd TLS files: "
                                    f"{getattr(exc, 'strerror', None) or exc}",
                                    code=ErrorCode.OPERATION_INVALID) from None
        return context


def parse_coordination(
    url: str, *, env: Mapping[str, str], ca: str | None = None, cert: str | None = None,
    key: str | None = None, password_file: str | None = None, lease_ttl: int = DEFAULT_TTL,
) -> Coordination:
    """The coordination `url` names, with TLS files and credentials. Raises
    CoordinationError; its message never holds a password."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in ("etcd", "etcd+https", "etcd+http"):
        raise CoordinationError(
            "--coordination takes etcd://HOST:PORT[,HOST:PORT...] or etcd+https://...")
    user: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        if ":" in userinfo:
            raise CoordinationError(
                "the --coordination URL holds a password, which `ps` shows to every user "
                "of this machine: give it in a file (--etcd-password-file) or in "
                "$VIRTCTL_ETCD_PASSWORD, and the user alone in the URL (etcd://USER@HOST)")
        user = userinfo or None
    if "/" in rest or "?" in rest or "#" in rest:
        raise CoordinationError("a --coordination URL names endpoints only: "
                                "etcd://HOST:PORT[,HOST:PORT...]")
    endpoints = tuple(_endpoint(part) for part in rest.split(",") if part.strip())
    if not endpoints:
        raise CoordinationError("--coordination names no etcd endpoint")
    tls = scheme == "etcd+https"
    if not tls and (ca or cert or key):
        raise CoordinationError("--etcd-ca/--etcd-cert/--etcd-key need etcd+https://")
    if key and not cert:
        raise CoordinationError("--etcd-key needs --etcd-cert")
    user = user or env.get("VIRTCTL_ETCD_USER") or None
    password = _password(password_file, env)
    if password is not None and user is None:
        raise CoordinationError("an etcd password needs a user: etcd://USER@HOST:PORT or "
                                "$VIRTCTL_ETCD_USER")
    if user is not None and password is None:
        raise CoordinationError(f"etcd user {user!r} needs a password: "
                                "--etcd-password-file FILE or $VIRTCTL_ETCD_PASSWORD")
    if lease_ttl < MIN_TTL:
        raise CoordinationError(f"--lease-ttl must be at least {MIN_TTL} seconds",
                                code=ErrorCode.OPERATION_INVALID)
    return Coordination(
        endpoints=endpoints, tls=tls, ca=ca, cert=cert, key=key,
        credentials=Credentials(user, password) if user and password is not None else None,
        lease_ttl=lease_ttl)


def _endpoint(part: str) -> str:
    text = part.strip()
    if text.startswith("["):  # [v6]:port
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
        host = f"[{host}]"
    else:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()) or (port and not 0 < int(port) < 65536):
        raise CoordinationError(f"not an etcd endpoint (HOST:PORT): {text!r}")
    return f"{host}:{port or DEFAULT_PORT}"


def _password(path: str | None, env: Mapping[str, str]) -> str | None:
    if path is not None:
        try:
            with open_regular(path) as handle:
                data = handle.read(4097)
        except OSError as exc:
            raise CoordinationError(f"cannot read the etcd password file {path}: "
                                    f"{exc.strerror or exc}",
                                    code=ErrorCode.OPERATION_INVALID) from None
        if len(data) > 4096:
            raise CoordinationError(f"the etcd password file {path} is over 4 KiB",
                                    code=ErrorCode.OPERATION_INVALID)
        line = data.decode("utf-8", "replace").splitlines()
        if not line or not line[0]:
            raise CoordinationError(f"the etcd password file {path} is empty",
                                    code=ErrorCode.OPERATION_INVALID)
        return line[0]
    found = env.get("VIRTCTL_ETCD_PASSWORD")
    return found if found else None
