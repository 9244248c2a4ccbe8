"""The watcher's metrics, and a tiny HTTP server exposing them in Prometheus text format.

Called by the watch loop. Counters, gauges and histograms hold floats keyed by label
values; `render` writes the text exposition format (version 0.0.4) and is pure given
the recorded values. Metrics about one host carry a `host` label, left out of the output
while the watch has only ever covered one host (`WatchMetrics.show_hosts`), so a
single-host watcher's series are as they always were. `MetricsServer` serves
`GET /metrics` from a daemon thread with stdlib `http.server`, bound to 127.0.0.1 unless
told otherwise; it serves nothing else.
"""

from __future__ import annotations

import bisect
import http.server
import math
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


@dataclass(slots=True)
class _Metric:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # labels a caller may leave out (recorded empty)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        given, required = set(labels), set(self.labelnames) - set(self.optional)
        if not required <= given <= set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(labels.get(n, "") for n in self.labelnames)

    def _samples(self, values: dict[LabelValues, float], hide: Collection[str],
                 *, add: bool) -> list[str]:
        """Sorted samples; labels in `hide` or with empty values (which Prometheus reads as
        absent) are left out, and samples left with the same labels merged (summed if
        `add`, else the last one wins)."""
        merged: dict[tuple[tuple[str, str], ...], float] = {}
        for key, value in sorted(values.items()):
            pairs = tuple((n, v) for n, v in zip(self.labelnames, key, strict=True)
                          if v and n not in hide)
            merged[pairs] = merged.get(pairs, 0.0) + value if add else value
        return [f"{self.name}{_labels([n for n, _ in p], [v for _, v in p])} {_number(v)}"
                for p, v in sorted(merged.items())]

    def _header(self, kind: str) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {kind}"]


@dataclass(slots=True)
class Counter(_Metric):
    values: dict[LabelValues, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def render(self, hide: Collection[str] = ()) -> list[str]:
        with self._lock:
            values = dict(self.values)
        return self._header("counter") + self._samples(values, hide, add=True)


@dataclass(slots=True)
class Gauge(_Metric):
    values: dict[LabelValues, float] = field(default_factory=dict)

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self.values[key] = value

    def render(self, hide: Collection[str] = ()) -> list[str]:
        with self._lock:
            values = dict(self.values)
        return self._header("gauge") + self._samples(values, hide, add=False)


@dataclass(slots=True)
class Histogram(_Metric):
    buckets: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observed: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        with self._lock:
            index = bisect.bisect_left(self.buckets, value)
            if index < len(self.counts):
                self.counts[index] += 1
            self.total += value
            self.observed += 1

    def render(self, hide: Collection[str] = ()) -> list[str]:
        with self._lock:
            counts, total, observed = list(self.counts), self.total, self.observed
        lines = self._header("histogram")
        running = 0
        for bound, count in zip(self.buckets, counts, strict=True):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {observed}')
        lines.append(f"{self.name}_sum {_number(total)}")
        lines.append(f"{self.name}_count {observed}")
        return lines


class WatchMetrics:
    """Everything the watcher records. Per-host metrics take an optional `host` label."""

    def __init__(self) -> None:
        host = ("host",)
        self.show_hosts = False  # set once the watch covers a second host
        self.runs = Counter(
            "virtctl_watch_reconcile_runs_total",
            "Reconcile runs, by host and by what triggered them "
            "(start, spec, event, resync, retry).",
            ("host", "trigger"), host,
        )
        self.actions = Counter(
            "virtctl_watch_actions_total",
            "Actions applied, by host, action kind, object kind and result "
            "(done, failed, skipped).",
            ("host", "action", "object", "result"), host,
        )
        self.errors = Counter(
            "virtctl_watch_errors_total",
            "Errors, by host and type (spec, driver, internal); spec files that are "
            "invalid for every host have no host.",
            ("host", "type"), host,
        )
        self.duration = Histogram(
            "virtctl_watch_reconcile_duration_seconds",
            "Time to load specs, snapshot the host, plan and apply, per reconcile run.",
        )
        self.drifted = Gauge(
            "virtctl_watch_objects_drifted",
            "Objects that differed from their specs at the start of the last reconcile run.",
            host, host,
        )
        self.drifted_total = Counter(
            "virtctl_watch_objects_drifted_total",
            "Objects found differing from their specs, summed over reconcile runs.",
            host, host,
        )
        self.spec_files = Gauge(
            "virtctl_watch_spec_files",
            "Spec files watched, by host and state (valid, invalid).",
            ("host", "state"), host,
        )
        self.last_success = Gauge(
            "virtctl_watch_last_success_timestamp_seconds",
            "When the host last matched the specs (Unix time).",
            host, host,
        )
        # More series served beside these (a fleet member's: coord/membership.py).
        self.extra: list[Counter | Gauge | Histogram] = []

    def all(self) -> Iterable[Counter | Gauge | Histogram]:
        return (self.runs, self.actions, self.errors, self.duration, self.drifted,
                self.drifted_total, self.spec_files, self.last_success, *self.extra)

    def hidden(self) -> tuple[str, ...]:
        """Labels left out of the output: `host` while there has only been one."""
        return () if self.show_hosts else ("host",)


def render(metrics: Iterable[Counter | Gauge | Histogram], *, hide: Collection[str] = ()) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines.extend(metric.render(hide))
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves `render(metrics)` at /metrics; `port` is the bound port (useful with 0)."""

    def __init__(self, metrics: WatchMetrics, *, address: str = "127.0.0.1", port: int = 0):
        handler = _handler_for(metrics)
        self._server = http.server.ThreadingHTTPServer((address, port), handler)
        self._server.daemon_threads = True
        self.address = address
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
            name="virtctl-metrics", daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(metrics: WatchMetrics) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls do_<METHOD>
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = render(metrics.all(), hide=metrics.hidden()).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None  # scrapes are not worth a log line

    return Handler
