"""Prometheus text exposition of the watcher's metrics, and the /metrics server."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from virtctl.watch.metrics import (
    CONTENT_TYPE,
    Counter,
    Gauge,
    Histogram,
    MetricsServer,
    WatchMetrics,
    render,
)


def test_counter_renders_help_type_and_sorted_labelled_samples() -> None:
    actions = Counter("virtctl_watch_actions_total", "Actions.", ("action", "result"))
    actions.inc(action="start", result="done")
    actions.inc(action="start", result="done")
    actions.inc(action="define", result="failed")
    assert render([actions]) == (
        "# HELP virtctl_watch_actions_total Actions.\n"
        "# TYPE virtctl_watch_actions_total counter\n"
        'virtctl_watch_actions_total{action="define",result="failed"} 1\n'
        'virtctl_watch_actions_total{action="start",result="done"} 2\n'
    )


def test_label_values_are_escaped() -> None:
    gauge = Gauge("g", "G.", ("file",))
    gauge.set(1.5, file='a"b\\c\nd')
    assert render([gauge]).splitlines()[-1] == 'g{file="a\\"b\\\\c\\nd"} 1.5'


def test_wrong_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        Counter("c", "C.", ("kind",)).inc(other="x")


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    hist = Histogram("d_seconds", "D.", buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    assert render([hist]).splitlines()[2:] == [
        'd_seconds_bucket{le="0.1"} 2',
        'd_seconds_bucket{le="1"} 3',
        'd_seconds_bucket{le="+Inf"} 4',
        "d_seconds_sum 3.65",
        "d_seconds_count 4",
    ]


def test_every_watch_metric_has_help_and_type() -> None:
    text = render(WatchMetrics().all())
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert "virtctl_watch_reconcile_runs_total" in names
    assert "virtctl_watch_reconcile_duration_seconds" in names
    assert "virtctl_watch_objects_drifted" in names
    assert len(names) == len(set(names)) == len(list(WatchMetrics().all()))


def test_server_serves_metrics_on_loopback_and_nothing_else() -> None:
    metrics = WatchMetrics()
    metrics.runs.inc(trigger="start")
    server = MetricsServer(metrics, port=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"] == CONTENT_TYPE
        assert 'virtctl_watch_reconcile_runs_total{trigger="start"} 1' in body
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + "/", timeout=5)
        assert caught.value.code == 404
    finally:
        server.close()


def test_host_label_is_left_out_while_there_is_one_host() -> None:
    metrics = WatchMetrics()
    metrics.runs.inc(host="sim:///a", trigger="start")
    metrics.errors.inc(host="sim:///a", type="spec")
    metrics.errors.inc(type="spec")  # a file broken for every host: no host
    text = render(metrics.all(), hide=metrics.hidden())
    assert 'virtctl_watch_reconcile_runs_total{trigger="start"} 1' in text
    assert 'virtctl_watch_errors_total{type="spec"} 2' in text  # merged, summed


def test_host_label_is_shown_once_there_are_several() -> None:
    metrics = WatchMetrics()
    metrics.show_hosts = True
    for host in ("sim:///a", "sim:///b"):
        metrics.runs.inc(host=host, trigger="start")
    metrics.errors.inc(type="spec")
    text = render(metrics.all(), hide=metrics.hidden())
    assert 'virtctl_watch_reconcile_runs_total{host="sim:///a",trigger="start"} 1' in text
    assert 'virtctl_watch_reconcile_runs_total{host="sim:///b",trigger="start"} 1' in text
    assert 'virtctl_watch_errors_total{type="spec"} 1' in text  # empty label = absent


def test_only_optional_labels_may_be_left_out() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        WatchMetrics().runs.inc(host="sim:///a")
