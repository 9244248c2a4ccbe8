"""Hypervisor drivers behind one Protocol (see base.py), and `connect`, which picks one.

`sim` URIs get the embedded driver (sim/); every other URI goes to libvirt (libvirt/),
which is imported only then, so virtctl runs without libvirt-python installed.
snapshot.py and storageshared.py hold what both drivers share. Importing the package
imports no model: libvirt/reads.py and sim/rawread.py read a host's raw records for the
no-op fast path (cli/noop.py) before virtctl.model is imported.

May import virtctl.converters and the foundation modules; never the reconciler or
anything above. sim/ and libvirt/ never import each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, ErrorDomain, SpecError
from ..uri import default_uri, parse_uri

if TYPE_CHECKING:
    from .base import Driver, Reader

__all__ = ["Driver", "Reader", "connect"]  # noqa: F822 (module __getattr__ below)


def __getattr__(name: str) -> Any:
    """`Driver` and `Reader` (base.py), imported on first use: base.py imports
    virtctl.model, which the CLI's no-op fast path (cli/noop.py) reads the host without."""
    if name in ("Driver", "Reader"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(
    uri: str | None = None,
    *,
    readonly: bool = False,
    env: Mapping[str, str] | None = None,
    call_timeout: float | None = None,
) -> Driver:
    """Open a connection. `readonly` connections refuse every mutating call. A libvirt
    connection gives up on a call after `call_timeout` seconds (None:
    $VIRTCTL_CALL_TIMEOUT, else 60; see libvirt_deadline.py); the sim answers in
    process and has no such wait."""
    env = os.environ if env is None else env
    text = default_uri(uri, env)
    parsed = parse_uri(text)
    if parsed.driver == "sim":
        if parsed.host or parsed.transport:
            raise SpecError(
                f"{text}: the sim driver is local only (no host or transport)",
                code=ErrorCode.INVALID_URI,
                domain=ErrorDomain.URI,
            )
        from .sim.driver import SimDriver

        return SimDriver(parsed, readonly=readonly, env=env)
    from .libvirt.driver import LibvirtDriver

    from .libvirt.deadline import call_timeout as resolve_call_timeout

    return LibvirtDriver(text, readonly=readonly,
                         call_timeout=resolve_call_timeout(call_timeout, env))
