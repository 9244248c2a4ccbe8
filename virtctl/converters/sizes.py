"""Memory sizes as people write them, and as libvirt stores them (KiB).

Called by the YAML converters (`memory: 512MiB`) and by anything that reads libvirt's
`unit=` attributes. Follows libvirt's own unit rules (virScaleInteger): the unit is
case-insensitive; a bare letter or `<letter>iB` is a power of 1024, `<letter>B` a power
of 1000, `b`/`bytes` are bytes; no unit means KiB, libvirt's default for memory. Values
that are not a whole number of KiB round up, as libvirt does. Pure.
"""

from __future__ import annotations

import re

from ..errors import ErrorCode, ErrorDomain, Source, SpecError

_SIZE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")
#: libvirt keeps sizes in 64-bit integers and QEMU and the kernel in signed ones: a size
#: of 8 EiB or more is no size any host has, and is refused rather than wrapped.
MAX_BYTES = 2**63 - 1
_EXPONENT = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
#: Largest first, so format_size picks the largest exact unit.
_BINARY_UNITS = (("EiB", 5), ("PiB", 4), ("TiB", 3), ("GiB", 2), ("MiB", 1))


def unit_bytes(unit: str) -> int | None:
    """Bytes per `unit` under libvirt's rules, or None if `unit` is not one."""
    lowered = unit.lower()
    if lowered in ("", "k", "kib"):
        return 1024
    if lowered in ("b", "bytes"):
        return 1
    exponent = _EXPONENT.get(lowered[:1])
    if exponent is None:
        return None
    suffix = lowered[1:]
    if suffix in ("", "ib"):
        return int(1024**exponent)
    if suffix == "b":
        return int(1000**exponent)
    return None


def parse_size(value: int | str, *, path: str) -> int:
    """Return `value` in KiB; a bare number is KiB. Errors name the field `path`."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _bad(value, path)
    if isinstance(value, int):
        if value < 0:
            raise _bad(value, path)
        return _bounded(value * 1024, value, path) // 1024
    match = _SIZE.match(value)
    per_unit = unit_bytes(match.group(2)) if match else None
    if match is None or per_unit is None:
        raise _bad(value, path)
    total = _bounded(int(match.group(1)) * per_unit, value, path)
    return -(-total // 1024)


def _bounded(count: int, value: object, path: str) -> int:
    if count > MAX_BYTES:
        raise SpecError(f"size {value!r} is 8 EiB or more: no host has that much",
                        code=ErrorCode.INVALID_SPEC, domain=ErrorDomain.CONVERTER,
                        source=Source(file="", path=path))
    return count


def scaled_kib(number: str, unit: str | None, *, path: str) -> int:
    """KiB for libvirt's `<memory unit='UNIT'>NUMBER</memory>` form."""
    return parse_size(f"{number.strip()}{unit or ''}", path=path)


def format_size(kib: int) -> str:
    """Write `kib` with the largest binary unit that divides it exactly."""
    for name, exponent in _BINARY_UNITS:
        if kib and kib % (1024**exponent) == 0:
            return f"{kib // 1024**exponent}{name}"
    return f"{kib}KiB"


def _bad(value: object, path: str, *, unitless: str = "KiB") -> SpecError:
    return SpecError(
        f"invalid size {value!r}: use a number of {unitless} or a number with a unit "
        "such as 512MiB, 1GiB, 2048M, 1G or 1000000KB",
        code=ErrorCode.INVALID_SPEC,
        domain=ErrorDomain.CONVERTER,
        source=Source(file="", path=path),
    )


def parse_bytes(value: int | str, *, path: str) -> int:
    """Return `value` in bytes: storage sizes (volume capacity and allocation), whose
    unit-less numbers are bytes, libvirt's default unit for volumes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _bad(value, path)
        return _bounded(value, value, path)
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is not None and not match.group(2):
            return _bounded(int(match.group(1)), value, path)
        if match is not None and unit_bytes(match.group(2)) is not None:
            return _bounded(int(match.group(1)) * (unit_bytes(match.group(2)) or 1), value,
                            path)
    raise _bad(value, path, unitless="bytes")


def format_bytes(count: int) -> str | int:
    """Write `count` bytes with the largest binary unit that divides it exactly
    (`20GiB`, `512KiB`), else as a plain number of bytes."""
    for name, exponent in (*_BINARY_UNITS, ("KiB", 0)):
        unit = 1024 ** (exponent + 1)
        if count and count % unit == 0:
            return f"{count // unit}{name}"
    return count
