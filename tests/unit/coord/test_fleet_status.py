"""Fleet status records (virtctl/coord/status.py): classification, table, JSON, exit."""

from __future__ import annotations

import json

from virtctl.coord.status import (
    StatusRecord,
    classify,
    exit_status,
    rows_from,
    to_json,
    to_table,
)

NOW = 1_000_000.0


def record(**kw: object) -> StatusRecord:
    base = dict(host="h1", uri="sim:///a", outcome="in-sync", member="m1", time=NOW - 1,
                interval=2.0, commit="0123456789abcdef", apply_set="site")
    base.update(kw)
    return StatusRecord(**base)  # type: ignore[arg-type]


def test_record_round_trips_and_rejects_garbage():
    r = record(restart_pending=2, error="x")
    assert StatusRecord.from_json(r.to_json()) == r
    assert len(r.to_json()) < 400  # small: one per host, never one per domain
    for bad in (b"", b"[]", b"{}", b'{"host": "h", "outcome": "in-sync", "time": "x", '
                b'"interval": 1}', b"\xff"):
        assert StatusRecord.from_json(bad) is None


def test_classify():
    live = {"m1"}
    assert classify(record(), now=NOW, live=live) == ("in-sync", "")
    assert classify(record(outcome="pending"), now=NOW, live=live)[0] == "pending"
    assert classify(record(outcome="failed"), now=NOW, live=live)[0] == "failed"
    # older than 3 intervals: stale, even if its member lives
    assert classify(record(time=NOW - 6.5), now=NOW, live=live)[0] == "stale"
    assert classify(record(time=NOW - 5.9), now=NOW, live=live)[0] == "in-sync"
    # its member's lease is gone: stale at once
    state, why = classify(record(), now=NOW, live={"m2"})
    assert state == "stale" and "m1" in why
    assert classify(record(outcome="weird"), now=NOW, live=live)[0] == "stale"


def rows(*records: StatusRecord, live=("m1",)):
    return rows_from([("f", r.host, r.to_json().encode()) for r in records],
                     {"f": set(live)}, now=NOW)


def test_exit_status_like_diff():
    assert exit_status(rows(record())) == 0
    assert exit_status(rows(record(), record(host="h2", outcome="pending"))) == 2
    assert exit_status(rows(record(host="h2", outcome="pending"),
                            record(host="h3", outcome="failed"))) == 1
    assert exit_status(rows(record(member="gone"))) == 1  # stale
    assert exit_status([]) == 1  # nothing known is not "in sync"


def test_json_shape():
    doc = json.loads(to_json(rows(record(), record(host="h2", uri="sim:///b",
                                                   outcome="pending", restart_pending=1),
                                  live=("m1",))))
    assert [h["host"] for h in doc["hosts"]] == ["h1", "h2"]
    first = doc["hosts"][0]
    assert first["state"] == "in-sync" and first["member"] == "m1"
    assert first["commit"] == "0123456789abcdef" and first["age"] == 1.0
    assert doc["totals"] == {"hosts": 2, "in-sync": 1, "pending": 1, "failed": 0,
                             "stale": 0}


def test_table_lists_every_host_escaped_with_totals():
    text = to_table(rows(record(), record(host="h2", uri="sim:///b\x1b[31m",
                                          member="m9", time=NOW - 300)))
    lines = text.splitlines()
    assert lines[0].split() == ["HOST", "STATE", "COMMIT", "AGE", "MEMBER"]
    assert "sim:///a" in lines[1] and "in-sync" in lines[1] and "0123456789ab" in lines[1]
    assert "\x1b" not in text and "stale" in lines[2] and "5m" in lines[2]
    assert lines[-1] == "2 host(s): 1 in-sync, 0 pending, 0 failed, 1 stale"


def test_unreadable_record_is_a_stale_host_not_a_crash():
    got = rows_from([("f", "hx", b"not json")], {"f": {"m1"}}, now=NOW)
    assert got[0].state == "stale" and got[0].host == "hx"
