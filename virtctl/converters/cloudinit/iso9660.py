"""A minimal ISO 9660 image writer: one root directory of small files, Joliet + Rock Ridge.

`make_iso(files, volume_id=...)` returns the bytes of a CD-ROM image holding `files`
(name -> content) in its root directory. It exists for cloud-init's NoCloud seed (see
cloudinit.py): virtctl attaches that image to a guest without calling genisoimage,
xorriso or cloud-localds at run time. Pure: no I/O and no clock; every timestamp is the
`timestamp` argument (a fixed default), so equal input gives byte-identical images.

Why three name spaces. ECMA-119 (= ISO 9660) level 1 allows only uppercase d-characters
in 8.3 names with a version (`USER_DAT.;1`, section 7.5), but cloud-init opens
`user-data` and `meta-data` by exact name. The image therefore carries, like
`genisoimage -volid cidata -joliet -rock` (what `cloud-localds` runs):

* the ISO 9660 tree with level-1 names, for any reader;
* Rock Ridge (RRIP 1.09, "RRIP_1991A", on top of SUSP 1.10) in the same directory
  records: an `NM` entry with the real name and a `PX` entry with POSIX mode/links/owner
  (0444 files, 0555 directory, owned by 0:0); the root's "." record opens with the `SP`
  entry and points (`CE`) to a continuation area holding the `ER` entry, which is what
  makes Linux's isofs pick Rock Ridge over Joliet;
* a Joliet tree (supplementary volume descriptor with escape sequence `%/E`, UCS-2
  level 3, big-endian names without a version, as genisoimage writes them), which
  Windows, libarchive and Linux with `norock` read.

Layout, in 2048-byte logical sectors (ECMA-119 6.1 and 6.2): sectors 0-15 the empty
system area; 16 the primary volume descriptor (8.4); 17 the Joliet supplementary volume
descriptor (8.5); 18 the volume descriptor set terminator (8.3); 19-22 the type L and type
M path tables (9.4) of each tree; from 23 the ISO root directory (9.1, records never
crossing a sector, 6.8.1.1), then the Joliet root directory, one sector of Rock Ridge
continuation area, and each file's single extent in name order, padded to a whole sector
(an empty file has extent 0). Numeric fields are
written as ECMA-119 7.2/7.3 ask: "both-byte orders" fields as little- then big-endian,
path table locations little-endian in the L table and big-endian in the M table.

Limits, checked with ValueError: names are 1-64 printable ASCII characters without
`/ \\ : ; * ? " < > |`, not ending in "." and unique; each file is smaller than 4 GiB
(one extent); the volume id is 1-32 of A-Z a-z 0-9 _ - (the Joliet copy holds its first
16 characters). A lowercase id such as `cidata` is written as given, as genisoimage does.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["DEFAULT_TIMESTAMP", "SECTOR", "iso_name", "make_iso"]

SECTOR = 2048
DEFAULT_TIMESTAMP = datetime(1980, 1, 1, tzinfo=UTC)

_FIRST_SECTOR = 16  # after the system area
_PVD, _SVD, _TERMINATOR = 16, 17, 18
_ISO_PATH_L, _ISO_PATH_M, _JOLIET_PATH_L, _JOLIET_PATH_M = 19, 20, 21, 22
_ISO_ROOT = 23

_NAME = re.compile(r'[^/\\:;*?"<>|\x00-\x1f\x7f-\U0010ffff]{1,64}')
_VOLUME_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NOT_D_CHAR = re.compile(r"[^A-Z0-9_]")

_FLAG_DIRECTORY = 0x02
_MODE_FILE = 0o100444
_MODE_DIRECTORY = 0o040555

_RRIP_ID = b"RRIP_1991A"
_RRIP_DESCRIPTOR = (b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE "
                    b"SYSTEM SEMANTICS")
_RRIP_SOURCE = (b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER "
                b"IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.")
_APPLICATION_ID = "VIRTCTL"


# ---- numbers (ECMA-119 7.1-7.3) ----

def _both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def _sectors(size: int) -> int:
    return -(-size // SECTOR)


# ---- dates (ECMA-119 8.4.26.1 and 9.1.5) ----

def _utc(timestamp: datetime) -> datetime:
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    stamp = timestamp.astimezone(UTC)
    if not 1970 <= stamp.year <= 2155:
        raise ValueError(f"timestamp year {stamp.year} is outside 1970-2155")
    return stamp


def _volume_date(stamp: datetime) -> bytes:
    """17 bytes: 16 digits YYYYMMDDHHMMSScc and the offset from GMT in 15-minute units."""
    return stamp.strftime("%Y%m%d%H%M%S").encode() + b"00" + b"\x00"


def _record_date(stamp: datetime) -> bytes:
    """7 bytes: years since 1900, month, day, hour, minute, second, GMT offset."""
    return bytes([stamp.year - 1900, stamp.month, stamp.day,
                  stamp.hour, stamp.minute, stamp.second, 0])


# ---- names ----

def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"file name {name!r}: use 1-64 printable ASCII characters, "
                         'none of / \\ : ; * ? " < > |')
    if name.endswith("."):
        raise ValueError(f"file name {name!r} must not end in '.'")


def iso_name(name: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """The ISO 9660 level-1 identifier for `name` (ECMA-119 7.5): uppercase d-characters,
    at most 8 + 3, the separators "." and ";" and version 1; `taken` holds identifiers
    already given out, and a clash gets a number at the end of the 8-character part."""
    stem, dot, ext = name.upper().rpartition(".")
    if not dot:
        stem, ext = ext, ""
    stem = _NOT_D_CHAR.sub("_", stem)[:8] or "_"
    ext = _NOT_D_CHAR.sub("_", ext)[:3]
    candidate, number = stem, 0
    while f"{candidate}.{ext};1" in taken:
        number += 1
        suffix = str(number)
        candidate = stem[: 8 - len(suffix)] + suffix
    return f"{candidate}.{ext};1"


# ---- directory records (ECMA-119 9.1) and SUSP/RRIP entries ----

def _record(identifier: bytes, *, extent: int, size: int, stamp: datetime,
            directory: bool, system_use: bytes = b"") -> bytes:
    pad = b"" if len(identifier) % 2 else b"\x00"  # 9.1.12: system use starts even
    length = 33 + len(identifier) + len(pad) + len(system_use)
    if length > 255:
        raise ValueError(f"directory record for {identifier!r} is {length} bytes (max 255)")
    return (bytes([length, 0]) + _both32(extent) + _both32(size) + _record_date(stamp)
            + bytes([_FLAG_DIRECTORY if directory else 0, 0, 0]) + _both16(1)
            + bytes([len(identifier)]) + identifier + pad + system_use)


def _susp(signature: bytes, body: bytes) -> bytes:
    """One System Use Sharing Protocol entry: signature, length, version 1, body."""
    return signature + bytes([4 + len(body), 1]) + body


def _px(mode: int, links: int) -> bytes:
    return _susp(b"PX", _both32(mode) + _both32(links) + _both32(0) + _both32(0))


def _rr(flags: int) -> bytes:
    """RRIP 1.09's RR entry: which Rock Ridge entries follow (PX 0x01, NM 0x08)."""
    return _susp(b"RR", bytes([flags]))


def _er() -> bytes:
    return _susp(b"ER", bytes([len(_RRIP_ID), len(_RRIP_DESCRIPTOR), len(_RRIP_SOURCE), 1])
                 + _RRIP_ID + _RRIP_DESCRIPTOR + _RRIP_SOURCE)


def _root_dot_system_use(continuation: int) -> bytes:
    """SP first (SUSP 5.3), then RR, PX and a CE (5.1) naming the ER entry's sector."""
    return (_susp(b"SP", b"\xbe\xef\x00") + _rr(0x01) + _px(_MODE_DIRECTORY, 2)
            + _susp(b"CE", _both32(continuation) + _both32(0) + _both32(len(_er()))))


def _file_system_use(name: str) -> bytes:
    return _rr(0x09) + _px(_MODE_FILE, 1) + _susp(b"NM", b"\x00" + name.encode("ascii"))


def _pack_directory(records: list[bytes]) -> bytes:
    """Records one after another; one that would cross a sector starts the next (6.8.1.1)."""
    out = bytearray()
    for record in records:
        room = SECTOR - len(out) % SECTOR
        if len(record) > room:
            out += bytes(room)
        out += record
    return bytes(out) + bytes(-len(out) % SECTOR)


def _path_table(root: int, *, big_endian: bool) -> bytes:
    """The path table of a tree with only its root (ECMA-119 9.4): 10 bytes."""
    order = ">" if big_endian else "<"
    return bytes([1, 0]) + struct.pack(order + "IH", root, 1) + b"\x00\x00"


# ---- volume descriptors (ECMA-119 8.3-8.5) ----

def _text(value: str, length: int, *, joliet: bool) -> bytes:
    if joliet:
        # UCS-2 in an odd-length field (the 37-byte file ids) leaves one byte: zero.
        return value[: length // 2].ljust(length // 2).encode("utf-16-be").ljust(length, b"\0")
    return value[:length].ljust(length).encode("ascii")


def _volume_descriptor(*, joliet: bool, volume_id: str, total: int, root: bytes,
                       path_l: int, path_m: int, path_size: int, stamp: datetime) -> bytes:
    def text(value: str, length: int) -> bytes:
        return _text(value, length, joliet=joliet)

    date = _volume_date(stamp)
    escapes = b"%/E".ljust(32, b"\x00") if joliet else bytes(32)
    empty_date = b"0" * 16 + b"\x00"
    descriptor = (
        bytes([2 if joliet else 1]) + b"CD001" + b"\x01\x00"
        + text("", 32) + text(volume_id, 32) + bytes(8) + _both32(total) + escapes
        + _both16(1) + _both16(1) + _both16(SECTOR) + _both32(path_size)
        + struct.pack("<II", path_l, 0) + struct.pack(">II", path_m, 0)
        + root + text("", 128) + text("", 128) + text("", 128) + text(_APPLICATION_ID, 128)
        + text("", 37) + text("", 37) + text("", 37)
        + date + date + empty_date + date + b"\x01\x00"
    )
    assert len(descriptor) == 883, len(descriptor)
    return descriptor.ljust(SECTOR, b"\x00")


def _terminator() -> bytes:
    return (b"\xffCD001\x01").ljust(SECTOR, b"\x00")


# ---- the image ----

def _joliet_name(name: str) -> bytes:
    return name.encode("utf-16-be")


def _sort_key(identifier: bytes) -> tuple[bytes, bytes]:
    """ECMA-119 9.3: by name, then extension, the shorter padded (with 0x20)."""
    stem, _, ext = identifier.partition(b".")
    return stem.ljust(8, b" "), ext.ljust(8, b" ")


def make_iso(files: Mapping[str, bytes], *, volume_id: str,
             timestamp: datetime = DEFAULT_TIMESTAMP) -> bytes:
    """An ISO 9660 image with `files` in its root directory, readable by their exact names
    through Rock Ridge and Joliet. `timestamp` dates the volume and every record."""
    if not _VOLUME_ID.fullmatch(volume_id):
        raise ValueError(f"volume id {volume_id!r}: use 1-32 of A-Z a-z 0-9 _ -")
    stamp = _utc(timestamp)
    names = sorted(files)
    iso_ids: dict[str, str] = {}
    for name in names:
        _check_name(name)
        if not isinstance(files[name], bytes | bytearray):
            raise TypeError(f"content of {name!r} must be bytes")
        if len(files[name]) >= 1 << 32:
            raise ValueError(f"{name!r} is 4 GiB or larger (one extent only)")
        iso_ids[name] = iso_name(name, set(iso_ids.values()))
    if len({name.lower() for name in names}) != len(names):
        raise ValueError("file names must differ in more than case")

    def directory(extent: int, extents: Mapping[str, int], *, joliet: bool,
                  size: int, continuation: int) -> bytes:
        dot_use = b"" if joliet else _root_dot_system_use(continuation)
        parent_use = b"" if joliet else _rr(0x01) + _px(_MODE_DIRECTORY, 2)
        records = [_record(b"\x00", extent=extent, size=size, stamp=stamp, directory=True,
                           system_use=dot_use),
                   _record(b"\x01", extent=extent, size=size, stamp=stamp, directory=True,
                           system_use=parent_use)]
        entries = [(_joliet_name(n) if joliet else iso_ids[n].encode("ascii"), n)
                   for n in names]
        entries.sort(key=lambda entry: entry[0] if joliet else _sort_key(entry[0]))
        records += [_record(identifier, extent=extents[name], size=len(files[name]),
                            stamp=stamp, directory=False,
                            system_use=b"" if joliet else _file_system_use(name))
                    for identifier, name in entries]
        return _pack_directory(records)

    # Record lengths do not depend on locations: measure with zeros, then lay out.
    zeros = dict.fromkeys(names, 0)
    iso_size = len(directory(0, zeros, joliet=False, size=0, continuation=0))
    joliet_size = len(directory(0, zeros, joliet=True, size=0, continuation=0))
    joliet_root = _ISO_ROOT + iso_size // SECTOR
    # After both directories: libarchive reads forward and rejects a CE behind it.
    continuation = joliet_root + joliet_size // SECTOR
    extents, cursor = {}, continuation + 1
    for name in names:
        extents[name] = cursor if files[name] else 0  # empty files have no extent
        cursor += _sectors(len(files[name]))
    total = cursor

    iso_dir = directory(_ISO_ROOT, extents, joliet=False, size=iso_size,
                        continuation=continuation)
    joliet_dir = directory(joliet_root, extents, joliet=True, size=joliet_size,
                           continuation=continuation)

    def root_record(extent: int, size: int) -> bytes:
        return _record(b"\x00", extent=extent, size=size, stamp=stamp, directory=True)

    def descriptor(joliet: bool, root: int, size: int, path_l: int, path_m: int) -> bytes:
        return _volume_descriptor(joliet=joliet, volume_id=volume_id, total=total,
                                  root=root_record(root, size), path_l=path_l,
                                  path_m=path_m, path_size=10, stamp=stamp)

    parts = [
        bytes(_FIRST_SECTOR * SECTOR),
        descriptor(False, _ISO_ROOT, iso_size, _ISO_PATH_L, _ISO_PATH_M),
        descriptor(True, joliet_root, joliet_size, _JOLIET_PATH_L, _JOLIET_PATH_M),
        _terminator(),
        _path_table(_ISO_ROOT, big_endian=False).ljust(SECTOR, b"\x00"),
        _path_table(_ISO_ROOT, big_endian=True).ljust(SECTOR, b"\x00"),
        _path_table(joliet_root, big_endian=False).ljust(SECTOR, b"\x00"),
        _path_table(joliet_root, big_endian=True).ljust(SECTOR, b"\x00"),
        iso_dir,
        joliet_dir,
        _er().ljust(SECTOR, b"\x00"),
        *(bytes(files[n]) + bytes(-len(files[n]) % SECTOR) for n in names),
    ]
    image = b"".join(parts)
    assert len(image) == total * SECTOR
    return image
