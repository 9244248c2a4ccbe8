"""Loading libvirt-python and turning its errors into virtctl's.

Used by the libvirt driver and its event machinery, the only modules that touch libvirt.
`load_libvirt` imports the binding (a clear DriverError, not a traceback, when it is
missing) and silences libvirt's habit of printing every error to stderr; `translated`
turns each `libvirtError` into a `DriverError` or `TransientError` that keeps libvirt's
message and error number (`driver_code`) and maps the number to an `ErrorCode`.
"""

from __future__ import annotations

import threading
from types import ModuleType, TracebackType
from typing import Any

from ...errors import DriverError, ErrorCode, ErrorDomain, TransientError

INSTALL_HINT = "pip install 'virtctl[libvirt]'"

# libvirt error numbers by name (resolved against the loaded module, so a binding that
# lacks a newer constant simply maps fewer codes).
_CODES: dict[str, ErrorCode] = {
    "VIR_ERR_NO_DOMAIN": ErrorCode.NO_SUCH_DOMAIN,
    "VIR_ERR_NO_NETWORK": ErrorCode.NO_SUCH_NETWORK,
    "VIR_ERR_NO_STORAGE_POOL": ErrorCode.NO_SUCH_POOL,
    "VIR_ERR_NO_STORAGE_VOL": ErrorCode.NO_SUCH_VOLUME,
    "VIR_ERR_STORAGE_VOL_EXIST": ErrorCode.DUPLICATE,
    "VIR_ERR_OPERATION_INVALID": ErrorCode.OPERATION_INVALID,
    "VIR_ERR_OPERATION_DENIED": ErrorCode.OPERATION_INVALID,  # e.g. a read-only connection
    "VIR_ERR_ACCESS_DENIED": ErrorCode.OPERATION_INVALID,
    "VIR_ERR_AUTH_FAILED": ErrorCode.OPERATION_INVALID,
    "VIR_ERR_OPERATION_FAILED": ErrorCode.OPERATION_FAILED,
    "VIR_ERR_INTERNAL_ERROR": ErrorCode.OPERATION_FAILED,
    "VIR_ERR_DOM_EXIST": ErrorCode.DUPLICATE,
    "VIR_ERR_NETWORK_EXIST": ErrorCode.DUPLICATE,
    "VIR_ERR_CONFIG_UNSUPPORTED": ErrorCode.CONFIG_UNSUPPORTED,
    "VIR_ERR_NO_SUPPORT": ErrorCode.UNSUPPORTED,
    "VIR_ERR_OPERATION_UNSUPPORTED": ErrorCode.UNSUPPORTED,
    "VIR_ERR_XML_ERROR": ErrorCode.INVALID_SPEC,
    "VIR_ERR_XML_DETAIL": ErrorCode.INVALID_SPEC,
    "VIR_ERR_XML_INVALID_SCHEMA": ErrorCode.INVALID_SPEC,
    "VIR_ERR_INVALID_ARG": ErrorCode.INVALID_SPEC,
}

# Failures of the connection itself: retrying (after a reconnect) may succeed.
_CONNECTION_CODES = ("VIR_ERR_NO_CONNECT", "VIR_ERR_RPC", "VIR_ERR_INVALID_CONN")
_TIMEOUT_CODES = ("VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE")
# VIR_ERR_SYSTEM_ERROR is an errno from anywhere (a missing disk image too) and
# VIR_ERR_INTERNAL_ERROR a catch-all; they mean a lost connection only when the RPC layer
# or the remote driver raised them ("End of file while reading data", "client socket is
# closed", "Connection refused").
_CONNECTION_IF_RPC = ("VIR_ERR_SYSTEM_ERROR", "VIR_ERR_INTERNAL_ERROR")
_CONNECTION_ERROR_DOMAINS = ("VIR_FROM_RPC", "VIR_FROM_REMOTE")

_silenced = threading.Lock()
_silenced_done = False


def load_libvirt() -> ModuleType:
    """Import libvirt-python, or raise a DriverError telling how to install it."""
    try:
        import libvirt
    except ImportError as exc:
        raise DriverError(
            f"the libvirt driver needs libvirt-python ({exc}); install it with: {INSTALL_HINT}",
            code=ErrorCode.UNSUPPORTED,
            domain=ErrorDomain.LIBVIRT,
        ) from None
    module: ModuleType = libvirt
    _silence(module)
    return module


def _ignore_error(_context: object, _error: object) -> None:
    """libvirt's default handler prints each error to stderr; ours become exceptions."""


def _silence(lv: ModuleType) -> None:
    global _silenced_done  # noqa: PLW0603 (libvirt's error handler is per process)
    with _silenced:
        if not _silenced_done:
            lv.registerErrorHandler(_ignore_error, None)
            _silenced_done = True


def _lookup(lv: ModuleType, names: tuple[str, ...]) -> set[int]:
    return {getattr(lv, name) for name in names if hasattr(lv, name)}


def translate(lv: ModuleType, exc: Any, *, context: str = "") -> DriverError:
    """The virtctl error for one `libvirt.libvirtError`; `context` prefixes the message."""
    number = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    if number is None:
        # libvirt-python found no error recorded for the failed call ("virXxx() failed"):
        # seen, rarely, on a remote connection for a refusal it normally explains.
        message += " (libvirt gave no reason)"
    if context:
        message = f"{context}: {message}"
    error_domain = exc.get_error_domain()
    connection_lost = number in _lookup(lv, _CONNECTION_CODES) or (
        number in _lookup(lv, _CONNECTION_IF_RPC)
        and error_domain in _lookup(lv, _CONNECTION_ERROR_DOMAINS)
    )
    if connection_lost:
        return TransientError(
            message, code=ErrorCode.CONNECTION, domain=ErrorDomain.LIBVIRT, driver_code=number
        )
    if number in _lookup(lv, _TIMEOUT_CODES):
        return TransientError(
            message, code=ErrorCode.TIMEOUT, domain=ErrorDomain.LIBVIRT, driver_code=number
        )
    code = next(
        (mapped for name, mapped in _CODES.items() if getattr(lv, name, None) == number),
        ErrorCode.OPERATION_FAILED,
    )
    return DriverError(message, code=code, domain=ErrorDomain.LIBVIRT, driver_code=number)


class _Translated:
    # A plain class, not @contextmanager: it wraps every libvirt call an apply makes,
    # and a generator-based manager costs several times more per use.
    __slots__ = ("_lv", "_context")

    def __init__(self, lv: ModuleType, context: str) -> None:
        self._lv, self._context = lv, context

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, _type: type[BaseException] | None, exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, self._lv.libvirtError):
            raise translate(self._lv, exc, context=self._context) from exc


def translated(lv: ModuleType, *, context: str = "") -> _Translated:
    """Run a block of libvirt calls, raising virtctl errors instead of libvirt's."""
    return _Translated(lv, context)
