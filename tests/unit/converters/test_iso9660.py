"""The ISO 9660 writer, checked by its own reading of the structure (ECMA-119 fields,
both-endian pairs) and by independent readers: isoinfo (genisoimage; each of the ISO,
Rock Ridge and Joliet trees on its own) and bsdtar (libarchive). (A loop mount would
test Linux's own isofs, but these machines' kernels have no iso9660 support.)

CI installs isoinfo and bsdtar (ci/install-libvirt.sh): there a missing tool fails the
tests; elsewhere they skip.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.unit.converters.isotools import run, tool

from virtctl.converters.cloudinit.iso9660 import SECTOR, iso_name, make_iso

FILES = {
    "user-data": b"#cloud-config\nhostname: web1\n",
    "meta-data": b"instance-id: iid-1\n",
    "network-config": bytes(range(256)) * 12,  # 3072 bytes: two sectors, not text
    "vendor-data": b"",  # empty: no extent
    "big.bin": b"0123456789abcdef" * (3 * 1024 * 1024 // 16 + 7),  # a few MiB
}




@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iso") / "seed.iso"
    path.write_bytes(make_iso(FILES, volume_id="cidata"))
    return path


# ---- the structure, read by hand ----

def both32(data: bytes, offset: int) -> int:
    little, big = struct.unpack_from("<I", data, offset)[0], struct.unpack_from(">I", data,
                                                                                offset + 4)[0]
    assert little == big, f"both-endian field at {offset}: {little} != {big}"
    return int(little)


def both16(data: bytes, offset: int) -> int:
    little, big = struct.unpack_from("<H", data, offset)[0], struct.unpack_from(">H", data,
                                                                                offset + 2)[0]
    assert little == big, f"both-endian field at {offset}: {little} != {big}"
    return int(little)


def records(data: bytes, extent: int, size: int) -> list[tuple[bytes, int, int, int]]:
    """(identifier, extent, size, flags) of each record in a directory."""
    found, start = [], extent * SECTOR
    for sector in range(start, start + size, SECTOR):
        at = sector
        while at < sector + SECTOR and data[at]:
            length = data[at]
            assert at + length <= sector + SECTOR, "record crosses a sector"
            name = data[at + 33: at + 33 + data[at + 32]]
            both16(data, at + 28)
            found.append((name, both32(data, at + 2), both32(data, at + 10), data[at + 25]))
            at += length
    return found


def test_volume_descriptors_and_both_endian_fields() -> None:
    data = make_iso(FILES, volume_id="cidata")
    assert len(data) % SECTOR == 0 and not any(data[: 16 * SECTOR])
    kinds = [data[s * SECTOR] for s in (16, 17, 18)]
    assert kinds == [1, 2, 255]
    assert all(data[s * SECTOR + 1: s * SECTOR + 7] == b"CD001\x01" for s in (16, 17, 18))
    for sector, joliet in ((16, False), (17, True)):
        vd = data[sector * SECTOR: (sector + 1) * SECTOR]
        volume_id = vd[40:72].decode("utf-16-be" if joliet else "ascii").rstrip()
        assert volume_id == "cidata"
        assert both32(vd, 80) * SECTOR == len(data)
        assert vd[88:91] == (b"%/E" if joliet else b"\0\0\0")
        assert (both16(vd, 120), both16(vd, 124), both16(vd, 128)) == (1, 1, SECTOR)
        assert both32(vd, 132) == 10
        path_l, path_m = struct.unpack_from("<I", vd, 140)[0], struct.unpack_from(">I", vd,
                                                                                 148)[0]
        root_extent, root_size = both32(vd, 156 + 2), both32(vd, 156 + 10)
        l_table, m_table = data[path_l * SECTOR:][:10], data[path_m * SECTOR:][:10]
        assert l_table == bytes([1, 0]) + struct.pack("<IH", root_extent, 1) + b"\0\0"
        assert m_table == bytes([1, 0]) + struct.pack(">IH", root_extent, 1) + b"\0\0"
        assert vd[881] == 1
        entries = records(data, root_extent, root_size)
        assert entries[0] == (b"\x00", root_extent, root_size, 2)
        assert entries[1] == (b"\x01", root_extent, root_size, 2)
        by_name = {name: (extent, size) for name, extent, size, _ in entries[2:]}
        assert len(by_name) == len(FILES)
        for name, content in FILES.items():
            key = name.encode("utf-16-be") if joliet else iso_name(name).encode()
            extent, size = by_name[key]
            assert size == len(content)
            assert data[extent * SECTOR: extent * SECTOR + size] == content


def test_level1_names() -> None:
    assert iso_name("user-data") == "USER_DAT.;1"
    assert iso_name("meta-data") == "META_DAT.;1"
    assert iso_name("network-config") == "NETWORK_.;1"
    assert iso_name("Big.Archive.tar") == "BIG_ARCH.TAR;1"
    assert iso_name(".hidden") == "_.HID;1"
    assert iso_name("user-data-2", {"USER_DAT.;1"}) == "USER_DA1.;1"
    assert iso_name("user-data-3", {"USER_DAT.;1", "USER_DA1.;1"}) == "USER_DA2.;1"


def test_same_input_same_bytes_and_order_does_not_matter() -> None:
    once = make_iso(FILES, volume_id="cidata")
    assert make_iso(dict(reversed(list(FILES.items()))), volume_id="cidata") == once
    assert make_iso(FILES, volume_id="cidata", timestamp=datetime(1980, 1, 1,
                                                                  tzinfo=UTC)) == once
    assert make_iso(FILES, volume_id="cidata",
                    timestamp=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)) != once
    later = make_iso({**FILES, "user-data": b"#cloud-config\nhostname: web2\n"},
                     volume_id="cidata")
    assert later != once and len(later) == len(once)


def test_timestamps_are_stored_in_utc() -> None:
    local = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert make_iso(FILES, volume_id="cidata", timestamp=local) == make_iso(
        FILES, volume_id="cidata", timestamp=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))


@pytest.mark.parametrize("files", [
    pytest.param({"a/b": b""}, id="slash"),
    pytest.param({"": b""}, id="empty"),
    pytest.param({"x;1": b""}, id="semicolon"),
    pytest.param({"trailing.": b""}, id="trailing-dot"),
    pytest.param({"x" * 65: b""}, id="too-long"),
    pytest.param({"caf\u00e9": b""}, id="not-ascii"),
    pytest.param({"line\nbreak": b""}, id="control"),
    pytest.param({"User-Data": b"", "user-data": b""}, id="case-clash"),
])
def test_bad_names_are_refused(files: dict[str, bytes]) -> None:
    with pytest.raises(ValueError):
        make_iso(files, volume_id="cidata")


@pytest.mark.parametrize("volume_id", ["", "x" * 33, "ci data", "cí"])
def test_bad_volume_ids_are_refused(volume_id: str) -> None:
    with pytest.raises(ValueError):
        make_iso(FILES, volume_id=volume_id)


def test_content_must_be_bytes_and_timestamps_aware() -> None:
    with pytest.raises(TypeError):
        make_iso({"user-data": "text"}, volume_id="cidata")  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        make_iso(FILES, volume_id="cidata", timestamp=datetime(2024, 1, 1))


# ---- independent readers ----

def test_isoinfo_sees_the_volume_joliet_and_rock_ridge(image: Path) -> None:
    info = run(tool("isoinfo"), "-d", "-i", str(image)).decode()
    assert "Volume id: cidata" in info
    assert f"Volume size is: {image.stat().st_size // SECTOR}" in info
    assert "Logical block size is: 2048" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info


@pytest.mark.parametrize(("option", "expected"), [
    pytest.param((), sorted("/" + iso_name(n) for n in FILES), id="iso9660"),
    pytest.param(("-R",), sorted("/" + n for n in FILES), id="rock-ridge"),
    pytest.param(("-J",), sorted("/" + n for n in FILES), id="joliet"),
])
def test_isoinfo_lists_each_tree(image: Path, option: tuple[str, ...],
                                 expected: list[str]) -> None:
    listing = run(tool("isoinfo"), "-f", *option, "-i", str(image)).decode().split()
    assert sorted(listing) == expected


@pytest.mark.parametrize("option", ["-R", "-J"])
@pytest.mark.parametrize("name", sorted(FILES))
def test_isoinfo_extracts_each_file(image: Path, option: str, name: str) -> None:
    assert run(tool("isoinfo"), option, "-i", str(image), "-x", "/" + name) == FILES[name]


def test_isoinfo_shows_rock_ridge_modes(image: Path) -> None:
    lines = run(tool("isoinfo"), "-l", "-R", "-i", str(image)).decode().splitlines()
    modes = {line.split()[-1]: line.split()[0] for line in lines if line.startswith(("-", "d"))}
    assert modes["."] == "dr-xr-xr-x"
    assert {modes[n] for n in FILES} == {"-r--r--r--"}


def test_bsdtar_extracts_exact_names_and_content(image: Path, tmp_path: Path) -> None:
    bsdtar = tool("bsdtar")
    listing = run(bsdtar, "-tf", str(image)).decode().split()
    assert sorted(n for n in listing if n not in (".", "./")) == sorted(FILES)
    run(bsdtar, "-xf", str(image), "-C", str(tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == FILES


def test_a_directory_of_several_sectors(tmp_path: Path) -> None:
    """Sixty files whose level-1 names clash: records spill into later sectors, names
    get numbers, and every reader still sees the real names."""
    files = {f"settings-file-{i:02d}.yaml": f"n: {i}\n".encode() for i in range(60)}
    data = make_iso(files, volume_id="CIDATA")
    root = both32(data, 16 * SECTOR + 156 + 2), both32(data, 16 * SECTOR + 156 + 10)
    assert root[1] > SECTOR
    level1 = [name for name, *_ in records(data, *root)[2:]]
    assert len(set(level1)) == 60
    path = tmp_path / "many.iso"
    path.write_bytes(data)
    listing = run(tool("isoinfo"), "-f", "-R", "-i", str(path)).decode().split()
    assert sorted(listing) == sorted("/" + n for n in files)
    listing = run(tool("isoinfo"), "-f", "-J", "-i", str(path)).decode().split()
    assert sorted(listing) == sorted("/" + n for n in files)
    out = tmp_path / "out"
    out.mkdir()
    run(tool("bsdtar"), "-xf", str(path), "-C", str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


# ---- Linux's isofs ----
