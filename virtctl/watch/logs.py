"""The watcher's log: one line per event, human text or JSON lines.

Called by the watch loop only. `format_text` and `format_json` are pure (a record in, a
line out) so they can be tested without a clock or a stream; `Log` stamps the time and
writes whole lines under a lock, since the spec watcher and the driver's event thread
log too. `Log.bound` gives a host's watcher a log whose records carry that host's fields
(`host=URI` once the watch covers several hosts). Stdlib only; no handlers, no
configuration.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TextIO

from ..printable import printable, printable_json

Context = Callable[[], Mapping[str, object]]


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class LogRecord:
    time: float  # seconds since the epoch
    level: Level
    event: str  # a stable, machine-readable name: "reconciled", "spec-invalid", ...
    message: str
    fields: Mapping[str, object] = field(default_factory=dict)


def _timestamp(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _text_value(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        text = ",".join(value)
    else:
        text = json.dumps(value, default=str)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


def format_text(record: LogRecord) -> str:
    """`2024-01-02T03:04:05.678Z INFO  message key=value ...`, one line."""
    parts = [_timestamp(record.time), f"{record.level.upper():<5}", record.message]
    parts += [f"{key}={_text_value(value)}" for key, value in record.fields.items()]
    # Names and messages from the host may hold ESC sequences: escaped, never raw.
    return printable(" ".join(parts).replace("\n", "\\n"), keep_newlines=False)


def format_json(record: LogRecord) -> str:
    """One JSON object; `ts`, `level`, `event`, `msg` first, then the record's fields."""
    doc: dict[str, object] = {
        "ts": _timestamp(record.time),
        "level": str(record.level),
        "event": record.event,
        "msg": record.message,
    }
    for key, value in record.fields.items():
        doc.setdefault(key, value)
    return printable_json(json.dumps(doc, default=str, ensure_ascii=False))


_FORMATTERS: dict[LogFormat, Callable[[LogRecord], str]] = {
    LogFormat.TEXT: format_text,
    LogFormat.JSON: format_json,
}


class Log:
    """Writes formatted records to a stream, one whole line at a time."""

    def __init__(
        self, stream: TextIO, *, fmt: LogFormat = LogFormat.TEXT, debug: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._format = _FORMATTERS[fmt]
        self._debug = debug
        self._clock = clock
        self._lock = threading.Lock()
        self._context: Context | None = None

    def bound(self, context: Context) -> Log:
        """This log, with `context()`'s fields first in every record (same stream and lock)."""
        child = copy.copy(self)
        child._context = context
        return child

    def emit(self, level: Level, event: str, message: str, /, **fields: object) -> None:
        if level is Level.DEBUG and not self._debug:
            return
        if self._context is not None:
            fields = {**self._context(), **fields}
        line = self._format(LogRecord(self._clock(), level, event, message, fields))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def debug(self, event: str, message: str, /, **fields: object) -> None:
        self.emit(Level.DEBUG, event, message, **fields)

    def info(self, event: str, message: str, /, **fields: object) -> None:
        self.emit(Level.INFO, event, message, **fields)

    def warning(self, event: str, message: str, /, **fields: object) -> None:
        self.emit(Level.WARNING, event, message, **fields)

    def error(self, event: str, message: str, /, **fields: object) -> None:
        self.emit(Level.ERROR, event, message, **fields)
