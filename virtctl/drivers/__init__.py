"""Hypervisor drivers behind one Protocol (see base.py), and `connect`, which picks one.

`sim` URIs get the embedded driver (sim/); every other URI goes to libvirt (libvirt/),
which is imported only then, so virtctl runs without libvirt-python installed.
snapshot.py and storageshared.py hold what both drivers share.

May import virtctl.converters and the foundation modules; never the reconciler or
anything above. sim/ and libvirt/ never import each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ErrorCode, ErrorDomain, SpecError
from ..uri import default_uri, parse_uri
from .base import Driver, Reader

__all__ = ["Driver", "Reader", "connect"]


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
