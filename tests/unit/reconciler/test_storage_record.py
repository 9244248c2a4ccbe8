"""virtctl's storage records (the STATE_VOLUME of each pool): written deterministically,
read back equal, and anything that is not virtctl's own format is refused, never
guessed at (a pool whose record cannot be read is unmanaged)."""

from __future__ import annotations

import pytest

from virtctl.model import DeletePolicy
from virtctl.reconciler.storage_record import (
    ObjectRecord,
    PoolRecord,
    RecordError,
    read_record,
    record_text,
)

POOL = ObjectRecord(spec_hash="sha256:aa", source="specs/pool.yaml", commit="abc",
                    declared="eJy=", active=True, autostart=False)
DISK = ObjectRecord(spec_hash="sha256:bb", source="specs/vol.yaml", declared="eJz=",
                    delete_policy=DeletePolicy.DELETE, content="sha256:" + "0" * 64)


def test_a_record_round_trips_and_is_written_the_same_way_every_time() -> None:
    record = PoolRecord(pool=POOL).with_volume("b.qcow2", DISK).with_volume("a.raw", DISK)
    text = record_text(record)
    assert read_record(text) == record
    assert record_text(read_record(text)) == text
    assert text.index('"a.raw"') < text.index('"b.qcow2"')


def test_forgetting_a_volume_and_the_empty_record() -> None:
    record = PoolRecord().with_volume("x", DISK)
    assert not record.empty and record.with_volume("x", None).empty
    assert read_record(None) == PoolRecord() and read_record("  \n") == PoolRecord()


@pytest.mark.parametrize("text", [
    pytest.param("{", id="not-json"),
    pytest.param("[]", id="not-an-object"),
    pytest.param('{"kind": "Other", "apiVersion": "virtctl/v1"}', id="other-kind"),
    pytest.param('{"kind": "StorageRecord", "apiVersion": "virtctl/v9"}', id="future-version"),
    pytest.param('{"kind": "StorageRecord", "apiVersion": "virtctl/v1", "volumes": []}',
                 id="volumes-not-a-map"),
])
def test_what_virtctl_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(RecordError):
        read_record(text)
