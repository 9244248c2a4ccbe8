"""Helpers of the storage contract suite (test_storage_contract.py): pool directories,
pool and volume definitions, and what libvirt's test driver lacks.

libvirt 9.0's test driver (test:///default) keeps pools and volumes in memory: it
defines, builds (a no-op), starts (without looking for a directory: it has none),
stops, undefines and sets autostart on pools, creates and deletes volumes, and refuses
with "this function is not supported by the connection driver" (code `unsupported`)
virStorageVolResize, virStorageVolUpload and virStorageVolDownload. It accepts any
backing-store path and requires a capacity even for an overlay.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.contract.support import Backend, Factory
from virtctl.drivers import Driver
from virtctl.errors import DriverError, ErrorCode
from virtctl.model import Kind, LiveVolume
from virtctl.xmlutil import parse

# What test:///default refuses (see the module doc).
TEST_LACKS = frozenset({"resize", "upload", "download"})
QEMU = ("qemu", "qemu+tcp")


def supported(backend: Backend, op: str, call: Callable[[], object]) -> bool:
    """Whether the backend implements `op`; where it does not, it must refuse it
    (checked here), and the case ends."""
    if backend.id != "test" or op not in TEST_LACKS:
        return True
    with pytest.raises(DriverError) as caught:
        call()
    assert caught.value.code is ErrorCode.UNSUPPORTED, caught.value
    return False


def pool_xml(name: str, target: Path | str, *, uuid: str | None = None,
             pool_type: str = "dir") -> str:
    uuid_elem = f"<uuid>{uuid}</uuid>" if uuid else ""
    source = "<source><name>vctl-test-vg</name></source>" if pool_type == "logical" else ""
    return (f"<pool type='{pool_type}'><name>{name}</name>{uuid_elem}{source}"
            f"<target><path>{target}</path></target></pool>")


def volume_xml(name: str, capacity: int | None = None, *, fmt: str = "raw",
               backing: str | None = None, unit: str = "bytes") -> str:
    cap = f"<capacity unit='{unit}'>{capacity}</capacity>" if capacity is not None else ""
    store = (f"<backingStore><path>{backing}</path><format type='raw'/></backingStore>"
             if backing else "")
    return (f"<volume><name>{name}</name>{cap}<target><format type='{fmt}'/></target>"
            f"{store}</volume>")


def active_pool(driver: Driver, factory: Factory, folder: Path) -> tuple[str, Path]:
    """A defined, built and started dir pool; its name and target path."""
    name = factory.name()
    target = folder / name
    driver.define(Kind.POOL, pool_xml(name, target))
    driver.build_pool(name)
    driver.start(Kind.POOL, name)
    return name, target


def volume(driver: Driver, pool: str, name: str) -> LiveVolume:
    return driver.storage().volumes[f"{pool}/{name}"]


def volume_path(vol: LiveVolume) -> str:
    return parse(vol.xml).findtext("target/path") or ""


def backing_path(vol: LiveVolume) -> str | None:
    return parse(vol.xml).findtext("backingStore/path")


def volume_format(vol: LiveVolume) -> str | None:
    found = parse(vol.xml).find("target/format")
    return None if found is None else found.get("type")


def qemu_img_backing(path: str) -> str:
    """The backing file QEMU sees in an image (qemu-img info)."""
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         capture_output=True, text=True, check=True).stdout
    return str(json.loads(out).get("backing-filename", ""))


class FailingReader:
    """A file-like object that raises OSError once `after` bytes were read."""

    def __init__(self, data: bytes, after: int) -> None:
        self.data, self.after, self.offset = data, after, 0

    def read(self, size: int = -1) -> bytes:
        if self.offset >= self.after:
            raise OSError("the disk went away")
        size = len(self.data) - self.offset if size < 0 else size
        chunk = self.data[self.offset:self.offset + size]
        self.offset += len(chunk)
        return chunk
