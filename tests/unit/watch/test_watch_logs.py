"""The watcher's log lines: human text and JSON lines."""

from __future__ import annotations

import io
import json

import pytest

from virtctl.watch.logs import Level, Log, LogFormat, LogRecord, format_json, format_text

T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z


@pytest.mark.parametrize(
    ("record", "line"),
    [
        pytest.param(
            LogRecord(T0, Level.INFO, "applied", "2 done"),
            "2023-11-14T22:13:20.250Z INFO  2 done", id="plain"),
        pytest.param(
            LogRecord(T0, Level.ERROR, "action", "start domain/web: failed",
                      {"object": "domain/web", "done": 0, "ok": False}),
            "2023-11-14T22:13:20.250Z ERROR start domain/web: failed object=domain/web done=0 "
            "ok=false", id="fields"),
        pytest.param(
            LogRecord(T0, Level.INFO, "plan", "x", {"reason": "state: shutoff -> running"}),
            '2023-11-14T22:13:20.250Z INFO  x reason="state: shutoff -> running"',
            id="quoted-when-spaces"),
        pytest.param(
            LogRecord(T0, Level.INFO, "plan", "x", {"objects": ["domain/a", "network/b"]}),
            "2023-11-14T22:13:20.250Z INFO  x objects=domain/a,network/b", id="string-list"),
        pytest.param(
            LogRecord(T0, Level.WARNING, "spec-invalid", "bad\nspec"),
            "2023-11-14T22:13:20.250Z WARNING bad\\nspec", id="one-line-always"),
    ],
)
def test_format_text(record: LogRecord, line: str) -> None:
    assert format_text(record) == line


def test_format_json_is_one_object_with_fixed_keys_first() -> None:
    record = LogRecord(T0, Level.ERROR, "spec-invalid", "bad file",
                       {"file": "s/a.xml", "errors": ["s/a.xml:1: malformed"], "msg": "clash"})
    line = format_json(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert list(doc)[:4] == ["ts", "level", "event", "msg"]
    assert doc == {"ts": "2023-11-14T22:13:20.250Z", "level": "error", "event": "spec-invalid",
                   "msg": "bad file", "file": "s/a.xml", "errors": ["s/a.xml:1: malformed"]}


@pytest.mark.parametrize("fmt", list(LogFormat), ids=str)
def test_log_writes_whole_lines_and_hides_debug(fmt: LogFormat) -> None:
    stream = io.StringIO()
    journal = Log(stream, fmt=fmt, clock=lambda: T0)
    journal.debug("noise", "hidden")
    journal.info("started", "watching", uri="sim:///x")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "sim:///x" in lines[0]
    if fmt is LogFormat.JSON:
        assert json.loads(lines[0])["event"] == "started"


def test_a_bound_log_puts_its_fields_first_and_follows_its_context() -> None:
    stream, many = io.StringIO(), [False]
    journal = Log(stream, fmt=LogFormat.JSON, clock=lambda: T0)
    host_log = journal.bound(lambda: {"host": "sim:///a"} if many[0] else {})
    host_log.info("reconciled", "in sync", trigger="start")
    many[0] = True
    host_log.info("reconciled", "in sync", trigger="spec")
    journal.info("stopped", "stopped cleanly")
    first, second, last = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "host" not in first
    assert list(second)[4:] == ["host", "trigger"] and second["host"] == "sim:///a"
    assert "host" not in last


def test_a_field_may_be_called_message() -> None:
    stream = io.StringIO()
    Log(stream, fmt=LogFormat.JSON, clock=lambda: T0).error(
        "driver-error", "cannot connect", message="cannot connect", code="connection")
    assert json.loads(stream.getvalue())["message"] == "cannot connect"
