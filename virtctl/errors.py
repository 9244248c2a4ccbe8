"""virtctl's error hierarchy.

Every error virtctl raises on purpose is a `VirtctlError`. Like libvirt's virError it
carries a `code` (what went wrong), a `domain` (which part of virtctl raised it) and a
human `message`; where the fault lies in a spec it also carries a `Source` naming the
file, the line and the field path. Subclasses say whose fault it is, so callers can
decide what to do without parsing messages:

- `SpecError`: the input is wrong; fix it. Also a `ValueError`.
- `DriverError`: the hypervisor refused or failed an operation.
- `TransientError`: a driver failure worth retrying (`retry_after` seconds).
- `CallTimeout`: a host that did not answer a call in time (the call is uncertain).
- `VerificationError`: after applying, live state still differs from desired.
- `InternalError`: a bug in virtctl.

Only the CLI and the watch loop catch broadly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorDomain(StrEnum):
    """Which part of virtctl raised an error (libvirt's virErrorDomain)."""

    SPEC = "spec"
    CONVERTER = "converter"
    PLANNER = "planner"
    APPLIER = "applier"
    DRIVER = "driver"
    SIM = "sim"
    LIBVIRT = "libvirt"
    URI = "uri"
    CLI = "cli"
    WATCH = "watch"
    COORDINATION = "coordination"


class ErrorCode(StrEnum):
    """What went wrong (libvirt's virErrorNumber, by name)."""

    INVALID_SPEC = "invalid-spec"
    PARSE_ERROR = "parse-error"
    SCHEMA_VIOLATION = "schema-violation"
    DUPLICATE = "duplicate"
    UNKNOWN_REFERENCE = "unknown-reference"
    NOT_MANAGED = "not-managed"
    INVALID_URI = "invalid-uri"
    NO_SUCH_DOMAIN = "no-such-domain"
    NO_SUCH_NETWORK = "no-such-network"
    NO_SUCH_POOL = "no-such-pool"
    NO_SUCH_VOLUME = "no-such-volume"
    OPERATION_INVALID = "operation-invalid"
    OPERATION_FAILED = "operation-failed"
    UNSUPPORTED = "unsupported"
    CONFIG_UNSUPPORTED = "config-unsupported"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    VERIFICATION = "verification"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Source:
    """Where in the user's input something came from."""

    file: str
    line: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        return where


class VirtctlError(Exception):
    """Root of every error virtctl raises on purpose."""

    default_code = ErrorCode.INTERNAL
    default_domain = ErrorDomain.CLI

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        domain: ErrorDomain | None = None,
        source: Source | None = None,
    ) -> None:
        self.message = message
        self.code = code or self.default_code
        self.domain = domain or self.default_domain
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.source is not None:
            return f"{self.source}: {self.message}"
        return self.message

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": str(self.code),
            "domain": str(self.domain),
            "message": self.message,
        }
        if self.source is not None:
            out["source"] = {
                "file": self.source.file,
                "line": self.source.line,
                "path": self.source.path,
            }
        return out


class SpecError(VirtctlError, ValueError):
    """The user's input is wrong; nothing was applied."""

    default_code = ErrorCode.INVALID_SPEC
    default_domain = ErrorDomain.SPEC


class SpecErrors(SpecError):
    """Several spec errors found in one validation pass, reported together."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = tuple(errors)
        first = errors[0]
        super().__init__(
            "\n".join(str(e) for e in errors),
            code=first.code,
            domain=first.domain,
        )

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class DriverError(VirtctlError):
    """The hypervisor refused or failed an operation."""

    default_code = ErrorCode.OPERATION_FAILED
    default_domain = ErrorDomain.DRIVER

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        domain: ErrorDomain | None = None,
        source: Source | None = None,
        driver_code: int | None = None,
    ) -> None:
        # driver_code keeps the hypervisor's own error number (libvirt's virErrorNumber).
        self.driver_code = driver_code
        super().__init__(message, code=code, domain=domain, source=source)

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        if self.driver_code is not None:
            out["driver_code"] = self.driver_code
        return out


class TransientError(DriverError):
    """A driver failure that may succeed if retried after `retry_after` seconds."""

    default_code = ErrorCode.CONNECTION

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class CallTimeout(TransientError):
    """The host did not answer one call within the per-call deadline (--call-timeout):
    the call may or may not have taken effect, and the connection is given up.
    `attempted` is False when the call was refused at once because an earlier one on
    the same connection had timed out."""

    default_code = ErrorCode.TIMEOUT

    def __init__(self, message: str, *, attempted: bool = True,
                 domain: ErrorDomain = ErrorDomain.LIBVIRT) -> None:
        self.attempted = attempted
        super().__init__(message, code=ErrorCode.TIMEOUT, domain=domain)


class VerificationError(VirtctlError):
    """Applying finished but the live state still differs from what was declared."""

    default_code = ErrorCode.VERIFICATION
    default_domain = ErrorDomain.APPLIER

    def __init__(self, message: str, *, differences: tuple[str, ...] = ()) -> None:
        self.differences = differences
        super().__init__(message)

    def __str__(self) -> str:
        if not self.differences:
            return self.message
        return self.message + "\n" + "\n".join(f"  {d}" for d in self.differences)


class InternalError(VirtctlError):
    """A bug in virtctl."""

    default_code = ErrorCode.INTERNAL
