"""Memory sizes: libvirt's unit rules in, the largest exact binary unit out."""

from __future__ import annotations

import pytest

from virtctl.converters.sizes import format_size, parse_size
from virtctl.errors import SpecError


@pytest.mark.parametrize(
    ("value", "kib"),
    [
        pytest.param(524288, 524288, id="bare-int-is-kib"),
        pytest.param("524288", 524288, id="bare-string-is-kib"),
        pytest.param("512MiB", 524288, id="mib"),
        pytest.param("2048M", 2097152, id="m-is-binary"),
        pytest.param("1GiB", 1048576, id="gib"),
        pytest.param("1G", 1048576, id="g-is-binary"),
        pytest.param("1g", 1048576, id="unit-case-insensitive"),
        pytest.param("524288KiB", 524288, id="kib"),
        pytest.param("1024k", 1024, id="k"),
        pytest.param("1024000KB", 1000000, id="kb-is-decimal"),
        pytest.param("1MB", 977, id="mb-rounds-up-to-whole-kib"),
        pytest.param("2TiB", 2 * 1024**3, id="tib"),
        pytest.param("1048576b", 1024, id="bytes"),
        pytest.param("2048 bytes", 2, id="bytes-word-with-space"),
        pytest.param("1EiB", 1024**5, id="eib"),
    ],
)
def test_parse_size_follows_libvirt_units(value: int | str, kib: int) -> None:
    assert parse_size(value, path="memory") == kib


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("lots", id="no-number"),
        pytest.param("1.5GiB", id="fraction"),
        pytest.param("12QiB", id="unknown-unit"),
        pytest.param("1GiBB", id="trailing-garbage"),
        pytest.param(-1, id="negative"),
        pytest.param(True, id="boolean"),
    ],
)
def test_parse_size_rejects_with_field_path(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_size(value, path="currentMemory")  # type: ignore[arg-type]
    assert caught.value.source is not None
    assert caught.value.source.path == "currentMemory"


@pytest.mark.parametrize(
    ("kib", "text"),
    [
        pytest.param(524288, "512MiB", id="mib"),
        pytest.param(1048576, "1GiB", id="gib"),
        pytest.param(1000, "1000KiB", id="not-a-whole-mib"),
        pytest.param(1536 * 1024, "1536MiB", id="not-a-whole-gib"),
        pytest.param(3 * 1024**4, "3PiB", id="pib"),
        pytest.param(0, "0KiB", id="zero"),
    ],
)
def test_format_size_uses_largest_exact_unit(kib: int, text: str) -> None:
    assert format_size(kib) == text
    assert parse_size(text, path="memory") == kib
