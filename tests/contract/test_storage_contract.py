"""The driver conformance suite for storage: dir pools and their volumes, on every
backend (see conftest).

Where libvirt's test driver lacks an operation (resize, upload, download: see
storagesupport), the case checks that it refuses it (`unsupported`) and ends there, so
nothing is skipped silently. Pool targets are directories below a fresh
/var/tmp/vctl-test-<random>, made by the pool's build; the sim only records them.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.storagesupport import (
    QEMU,
    FailingReader,
    active_pool,
    backing_path,
    pool_xml,
    qemu_img_backing,
    supported,
    volume,
    volume_format,
    volume_path,
    volume_xml,
)
from tests.contract.support import Backend, Factory, shared_dir
from virtctl.drivers import Driver
from virtctl.drivers.sim.driver import SimDriver
from virtctl.errors import DriverError, ErrorCode
from virtctl.model import STATE_VOLUME, Kind
from virtctl.xmlutil import parse

MIB = 1 << 20


@pytest.fixture
def folder() -> Iterator[Path]:
    """A shared test directory (support.shared_dir); pool targets go below it,
    made by the pool's build."""
    with shared_dir() as root:
        yield root


def refused(call: object, *codes: ErrorCode) -> DriverError:
    assert callable(call)
    with pytest.raises(DriverError) as caught:
        call()
    # A remote libvirt now and then loses the reason of a refusal (libvirt-python then
    # says only "virXxx() failed"): still a refusal, with no code to check.
    if codes and "libvirt gave no reason" not in caught.value.message:
        assert caught.value.code in codes, caught.value
    return caught.value


# Pools


def test_dir_pool_lifecycle(driver: Driver, factory: Factory, folder: Path) -> None:
    name = factory.name()
    target = folder / name
    driver.define(Kind.POOL, pool_xml(name, target))  # no uuid: the host gives one
    pool = driver.storage().pools[name]
    assert (pool.active, pool.autostart, pool.persistent, pool.record) == (
        False, False, True, None)
    assert parse(pool.xml).findtext("target/path") == str(target)
    # As networks: the uuid is kept on redefinition, and a definition without it clashes.
    driver.define(Kind.POOL, pool_xml(name, target, uuid=pool.uuid))
    assert driver.storage().pools[name].uuid == pool.uuid
    refused(lambda: driver.define(Kind.POOL, pool_xml(name, target)), ErrorCode.OPERATION_FAILED)
    driver.build_pool(name)
    driver.start(Kind.POOL, name)
    assert driver.storage().pools[name].active
    for running in (True, False):
        assert parse(driver.definition(Kind.POOL, name, running=running)).findtext(
            "uuid") == pool.uuid
    refused(lambda: driver.start(Kind.POOL, name), ErrorCode.OPERATION_INVALID)
    refused(lambda: driver.build_pool(name), ErrorCode.OPERATION_INVALID)
    driver.set_autostart(Kind.POOL, name, True)
    assert driver.storage().pools[name].autostart
    driver.set_autostart(Kind.POOL, name, False)
    assert not driver.storage().pools[name].autostart
    # libvirt (every driver) refuses to undefine an active pool, unlike a domain.
    refused(lambda: driver.undefine(Kind.POOL, name), ErrorCode.OPERATION_INVALID)
    driver.destroy(Kind.POOL, name)
    assert not driver.storage().pools[name].active
    refused(lambda: driver.definition(Kind.POOL, name, running=True),
            ErrorCode.OPERATION_INVALID)
    refused(lambda: driver.destroy(Kind.POOL, name), ErrorCode.OPERATION_INVALID)
    driver.undefine(Kind.POOL, name)
    assert name not in driver.storage().pools
    refused(lambda: driver.start(Kind.POOL, name), ErrorCode.NO_SUCH_POOL)


def test_start_needs_the_directory_build_makes(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    name = factory.name()
    target = folder / name
    driver.define(Kind.POOL, pool_xml(name, target))
    if backend.id == "test":  # the test driver has no directories: it starts anyway
        driver.start(Kind.POOL, name)
        assert driver.storage().pools[name].active
        return
    error = refused(lambda: driver.start(Kind.POOL, name), ErrorCode.OPERATION_FAILED)
    assert "No such file or directory" in error.message
    driver.build_pool(name)
    driver.build_pool(name)  # again, while inactive: nothing to do
    driver.start(Kind.POOL, name)
    assert driver.storage().pools[name].active
    # The sim keeps the pool's data in its state directory, never at the target path.
    assert target.is_dir() is (backend.id != "sim")


def test_a_second_dir_pool_on_one_target_is_refused(
    driver: Driver, factory: Factory, folder: Path
) -> None:
    first, second = factory.name(), factory.name()
    driver.define(Kind.POOL, pool_xml(first, folder / "shared"))
    error = refused(lambda: driver.define(Kind.POOL, pool_xml(second, folder / "shared")),
                    ErrorCode.OPERATION_FAILED)
    assert first in error.message


def test_other_pool_types_define_and_the_sim_refuses_to_run_them(
    driver: Driver, factory: Factory, folder: Path
) -> None:
    name = factory.name()
    driver.define(Kind.POOL, pool_xml(name, "/dev/vctl-test-vg", pool_type="logical"))
    assert parse(driver.storage().pools[name].xml).get("type") == "logical"
    if isinstance(driver, SimDriver):
        for call in (lambda: driver.build_pool(name), lambda: driver.start(Kind.POOL, name)):
            assert "dir pools only" in refused(call, ErrorCode.UNSUPPORTED).message
    driver.undefine(Kind.POOL, name)  # never started on libvirt: it would look for the VG
    refused(lambda: driver.define(Kind.POOL, pool_xml(name, folder, pool_type="nosuch")),
            ErrorCode.INVALID_SPEC)


# Volumes


def test_raw_and_qcow2_volumes(driver: Driver, factory: Factory, folder: Path) -> None:
    pool, target = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("disk.raw", 4, unit="MiB"))
    driver.create_volume(pool, volume_xml("disk.qcow2", 8 * MIB, fmt="qcow2"))
    raw, qcow = volume(driver, pool, "disk.raw"), volume(driver, pool, "disk.qcow2")
    assert (raw.capacity, qcow.capacity) == (4 * MIB, 8 * MIB)
    assert (volume_format(raw), volume_format(qcow)) == ("raw", "qcow2")
    assert volume_path(raw) == str(target / "disk.raw")
    assert volume_path(qcow) == str(target / "disk.qcow2")
    assert raw.key.name == f"{pool}/disk.raw"


def test_qcow2_overlay_on_a_base_volume(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, target = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("base.raw", 4 * MIB))
    base = str(target / "base.raw")
    overlay = volume_xml("top.qcow2", fmt="qcow2", backing=base)
    if backend.id == "test":  # the test driver wants a capacity even here
        refused(lambda: driver.create_volume(pool, overlay), ErrorCode.INVALID_SPEC)
        overlay = volume_xml("top.qcow2", 4 * MIB, fmt="qcow2", backing=base)
    driver.create_volume(pool, overlay)  # as big as its base
    top = volume(driver, pool, "top.qcow2")
    assert (top.capacity, backing_path(top), volume_format(top)) == (4 * MIB, base, "qcow2")
    if backend.id in QEMU:
        assert qemu_img_backing(volume_path(top)) == base
    if backend.id != "test":  # which accepts any path
        missing = volume_xml("lost.qcow2", MIB, fmt="qcow2", backing=str(target / "nope"))
        refused(lambda: driver.create_volume(pool, missing), ErrorCode.OPERATION_FAILED)


def test_create_is_refused_in_an_inactive_or_missing_pool_and_for_a_duplicate(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, _ = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("a.raw", MIB))
    # The test driver says "storage vol already exists" with a generic code.
    dup = ErrorCode.OPERATION_FAILED if backend.id == "test" else ErrorCode.DUPLICATE
    refused(lambda: driver.create_volume(pool, volume_xml("a.raw", MIB)), dup)
    refused(lambda: driver.create_volume(factory.name(), volume_xml("b.raw", MIB)),
            ErrorCode.NO_SUCH_POOL)
    driver.destroy(Kind.POOL, pool)
    refused(lambda: driver.create_volume(pool, volume_xml("b.raw", MIB)),
            ErrorCode.OPERATION_INVALID)
    assert not any(key.startswith(f"{pool}/") for key in driver.storage().volumes)


def test_delete_removes_the_volume(driver: Driver, factory: Factory, folder: Path) -> None:
    pool, _ = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("a.raw", MIB))
    driver.delete_volume(pool, "a.raw")
    assert f"{pool}/a.raw" not in driver.storage().volumes
    refused(lambda: driver.delete_volume(pool, "a.raw"), ErrorCode.NO_SUCH_VOLUME)


def test_resize_grows_and_refuses_to_shrink(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, _ = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("a.raw", 2 * MIB))
    driver.create_volume(pool, volume_xml("b.qcow2", 2 * MIB, fmt="qcow2"))
    # The driver refuses a smaller size itself, whatever the host could do.
    for name in ("a.raw", "b.qcow2"):
        refused(lambda n=name: driver.resize_volume(pool, n, MIB), ErrorCode.OPERATION_INVALID)
    if not supported(backend, "resize", lambda: driver.resize_volume(pool, "a.raw", 4 * MIB)):
        return
    for name in ("a.raw", "b.qcow2"):
        driver.resize_volume(pool, name, 4 * MIB)
        driver.resize_volume(pool, name, 4 * MIB)  # the same size: nothing to do
        assert volume(driver, pool, name).capacity == 4 * MIB


# Upload and download


def test_upload_and_download_round_trip(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, _ = active_pool(driver, factory, folder)
    data = secrets.token_bytes(3 * MIB + 123)
    driver.create_volume(pool, volume_xml("blob.raw", len(data)))
    seen: list[int] = []
    upload = lambda: driver.upload_volume(  # noqa: E731
        pool, "blob.raw", io.BytesIO(data), len(data), seen.append)
    if not supported(backend, "upload", upload):
        supported(backend, "download",
                  lambda: driver.download_volume(pool, "blob.raw", limit=len(data)))
        return
    upload()
    assert seen and seen[-1] == len(data) and seen == sorted(seen)
    assert driver.download_volume(pool, "blob.raw", limit=len(data)) == data
    # libvirt writes over the first bytes and keeps the rest.
    driver.upload_volume(pool, "blob.raw", io.BytesIO(b"abc"), 3)
    assert driver.download_volume(pool, "blob.raw", limit=len(data)) == b"abc" + data[3:]
    refused(lambda: driver.download_volume(pool, "blob.raw", limit=len(data) - 1),
            ErrorCode.OPERATION_INVALID)
    # Fewer bytes than announced: refused, whatever was sent.
    refused(lambda: driver.upload_volume(pool, "blob.raw", io.BytesIO(b"x"), 10),
            ErrorCode.OPERATION_FAILED)


def test_a_failed_upload_is_reported_and_the_sim_keeps_the_old_content(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, _ = active_pool(driver, factory, folder)
    old, new = secrets.token_bytes(2 * MIB), secrets.token_bytes(2 * MIB)
    driver.create_volume(pool, volume_xml("blob.raw", len(old)))
    if not supported(backend, "upload", lambda: driver.upload_volume(
            pool, "blob.raw", io.BytesIO(old), len(old))):
        return
    driver.upload_volume(pool, "blob.raw", io.BytesIO(old), len(old))
    # The data source fails half-way: the upload is aborted and reported.
    refused(lambda: driver.upload_volume(pool, "blob.raw", FailingReader(new, MIB), len(new)),
            ErrorCode.OPERATION_FAILED)
    if isinstance(driver, SimDriver):  # libvirt writes in place: part may have landed
        assert driver.download_volume(pool, "blob.raw", limit=len(old)) == old
        driver.inject_fault("upload", Kind.VOLUME, f"{pool}/blob.raw", after=MIB)
        refused(lambda: driver.upload_volume(pool, "blob.raw", io.BytesIO(new), len(new)),
                ErrorCode.OPERATION_FAILED)
        assert driver.download_volume(pool, "blob.raw", limit=len(old)) == old
        spool = driver.store.root / "pools-data" / ".uploads"
        assert not spool.exists() or not os.listdir(spool)


def test_storage_reads_the_state_volume_as_the_pool_record(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, _ = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("a.raw", MIB))
    assert driver.storage().pools[pool].record is None  # no state volume yet
    text = json.dumps({"volumes": {"a.raw": {"owner": "virtctl"}}})
    driver.create_volume(pool, volume_xml(STATE_VOLUME, 0))
    upload = lambda: driver.upload_volume(  # noqa: E731
        pool, STATE_VOLUME, io.BytesIO(text.encode()), len(text))
    if not supported(backend, "upload", upload):
        return  # and storage() now says it cannot read the record (no download)
    upload()
    storage = driver.storage()
    assert storage.pools[pool].record == text
    assert set(k for k in storage.volumes if k.startswith(f"{pool}/")) == {f"{pool}/a.raw"}
    # An upload writes over the first bytes and keeps the rest: zero padding is dropped.
    driver.resize_volume(pool, STATE_VOLUME, 4096)
    assert driver.storage().pools[pool].record == text
    driver.destroy(Kind.POOL, pool)  # an inactive pool shows neither volumes nor record
    storage = driver.storage()
    assert storage.pools[pool].record is None
    assert not any(key.startswith(f"{pool}/") for key in storage.volumes)


def test_read_only_connection_refuses_every_storage_write(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    pool, target = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("a.raw", MIB))
    reader = backend.connect(readonly=True)
    try:
        try:
            listed = reader.storage().volumes
        except DriverError as exc:
            # Another run's managed pool on the same host (a state volume): a read-only
            # connection cannot read its records, so storage() refuses; ours has none.
            assert "read-only" in exc.message and f"pool '{pool}'" not in exc.message, exc
            listed = driver.storage().volumes
        assert f"{pool}/a.raw" in listed
        calls = [
            lambda: reader.define(Kind.POOL, pool_xml(factory.name(), target)),
            lambda: reader.build_pool(pool),
            lambda: reader.start(Kind.POOL, pool),
            lambda: reader.destroy(Kind.POOL, pool),
            lambda: reader.set_autostart(Kind.POOL, pool, True),
            lambda: reader.undefine(Kind.POOL, pool),
            lambda: reader.create_volume(pool, volume_xml("b.raw", MIB)),
            lambda: reader.delete_volume(pool, "a.raw"),
            lambda: reader.resize_volume(pool, "a.raw", 2 * MIB),
            lambda: reader.upload_volume(pool, "a.raw", io.BytesIO(b"x"), 1),
            # libvirt refuses downloads too on a read-only connection, so storage()
            # cannot read virtctl's record there.
            lambda: reader.download_volume(pool, "a.raw", limit=MIB),
        ]
        for call in calls:
            refused(call, ErrorCode.OPERATION_INVALID)
        driver.create_volume(pool, volume_xml(STATE_VOLUME, 0))
        assert "read-only" in refused(reader.storage, ErrorCode.OPERATION_INVALID).message
    finally:
        reader.close()
    driver.delete_volume(pool, STATE_VOLUME)  # test:/// could not read it (no download)
    assert f"{pool}/a.raw" in driver.storage().volumes


# Issue 20: what a pool not running yet holds; backing files that are no volume


def test_pool_files_lists_what_a_pool_not_running_will_hold(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    """A pool undefined with its storage kept (as `delete` leaves it): defined again
    over the same directory, it lists the files as volumes. pool_files says so before
    (with each one's capacity); libvirt's test driver (storage in memory) and a remote
    daemon cannot tell (None)."""
    pool, target = active_pool(driver, factory, folder)
    driver.create_volume(pool, volume_xml("a.raw", MIB))
    driver.create_volume(pool, volume_xml("b.qcow2", 4 * MIB, fmt="qcow2"))
    if backend.id != "test":  # which has no upload
        driver.create_volume(pool, volume_xml(STATE_VOLUME, MIB))
        driver.upload_volume(pool, STATE_VOLUME, io.BytesIO(b'{"a": 1}'), 8)
    driver.destroy(Kind.POOL, pool)
    driver.undefine(Kind.POOL, pool)
    found = driver.pool_files(pool_xml(pool, target))
    if backend.id in ("test", "qemu+tcp"):
        assert found is None
        return
    assert found is not None
    assert {key: (vol.pool, vol.name, vol.capacity, volume_format(vol))
            for key, vol in found.volumes.items()} == {
        f"{pool}/a.raw": (pool, "a.raw", MIB, "raw"),
        f"{pool}/b.qcow2": (pool, "b.qcow2", 4 * MIB, "qcow2")}
    assert found.pools[pool].record == '{"a": 1}'  # read as a file: no download
    empty = driver.pool_files(pool_xml(pool, folder / "never-made"))
    assert empty is not None and not empty.volumes and empty.pools[pool].record is None
    assert driver.pool_files(pool_xml(pool, target, pool_type="logical")) is None
    again = factory.name()
    driver.define(Kind.POOL, pool_xml(again, target))
    driver.start(Kind.POOL, again)
    storage = driver.storage()
    assert {k for k in storage.volumes if k.startswith(f"{again}/")} == {
        f"{again}/a.raw", f"{again}/b.qcow2"}
    assert storage.pools[again].record == '{"a": 1}'  # as pool_files said
    driver.destroy(Kind.POOL, again)
    driver.undefine(Kind.POOL, again)


def test_a_backing_file_that_is_no_volume(
    driver: Driver, backend: Backend, factory: Factory, folder: Path
) -> None:
    """libvirt takes any file of the host as a backing store, not only a volume of a
    pool; the sim does too (reading it, never writing it). file_exists says whether one
    is there (None where it cannot tell: the test driver, a remote daemon)."""
    base = folder / f"{factory.name()}-base.qcow2"
    # A qcow2 header of 8 MiB virtual size (QEMU reads the size from bytes 24-31).
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + (8 * MIB).to_bytes(8, "big")
    base.write_bytes(header.ljust(64 * 1024, b"\0"))
    base.chmod(0o644)
    expected = {"test": None, "qemu+tcp": None}.get(backend.id, True)
    assert driver.file_exists(str(base)) is expected
    assert driver.file_exists(str(folder / "nope.qcow2")) is (
        None if expected is None else False)
    if backend.id in QEMU:
        return  # QEMU checks the image's content: the contract ends at file_exists
    pool, _ = active_pool(driver, factory, folder)
    overlay = ("<volume><name>top.qcow2</name><target><format type='qcow2'/></target>"
               f"<backingStore><path>{base}</path><format type='qcow2'/></backingStore>"
               "</volume>")
    if backend.id == "test":  # the test driver wants a capacity
        overlay = overlay.replace("<target>", f"<capacity>{8 * MIB}</capacity><target>")
    driver.create_volume(pool, overlay)
    top = volume(driver, pool, "top.qcow2")
    assert (top.capacity, backing_path(top)) == (8 * MIB, str(base))
