"""`virtctl watch` arguments: `--interval` durations and the subcommand's parser."""

from __future__ import annotations

import argparse
import io

import pytest

from virtctl.cli.watch import add_watch_parser, cmd_watch, parse_interval


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1d", 86400.0, id="days"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("250ms", 0.25, id="milliseconds"),
        pytest.param("1.5m", 90.0, id="fraction"),
        pytest.param("90", 90.0, id="bare-seconds"),
        pytest.param(" 5M ", 300.0, id="case-and-space"),
    ],
)
def test_parse_interval_accepts(text: str, seconds: float) -> None:
    assert parse_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("5x", id="unknown-unit"),
        pytest.param("m5", id="unit-first"),
        pytest.param("-5m", id="negative"),
        pytest.param("0s", id="zero"),
        pytest.param("5 m", id="space-inside"),
        pytest.param("five minutes", id="words"),
    ],
)
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_interval(text)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="virtctl")
    add_watch_parser(parser.add_subparsers(dest="verb", required=True))
    return parser.parse_args(["watch", *argv])


def test_watch_parser_defaults() -> None:
    args = _parse("-f", "specs")
    assert args.func is cmd_watch
    assert (args.paths, args.interval, args.log_format) == (["specs"], 300.0, "text")
    assert (args.metrics_port, args.metrics_address) == (None, "127.0.0.1")
    assert not args.prune and not args.adopt


def test_watch_parser_reads_every_option() -> None:
    args = _parse("-f", "a", "-f", "b", "--interval", "30s", "--log-format", "json",
                  "--metrics-port", "9477", "--metrics-address", "0.0.0.0", "--prune",
                  "--adopt", "-c", "sim:///lab")
    assert args.paths == ["a", "b"]
    assert args.interval == 30.0
    assert (args.log_format, args.metrics_port, args.metrics_address) == ("json", 9477, "0.0.0.0")
    assert args.prune and args.adopt and args.connect == "sim:///lab"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--interval", "soon"], id="bad-interval"),
        pytest.param(["--metrics-port", "70000"], id="port-out-of-range"),
        pytest.param(["--log-format", "xml"], id="unknown-log-format"),
    ],
)
def test_watch_parser_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("-f", "specs", *argv)
    assert "error" in capsys.readouterr().err


def test_watch_refuses_stdin() -> None:
    err = io.StringIO()
    assert cmd_watch(_parse("-f", "-"), io.StringIO(), err) == 1
    assert "stdin" in err.getvalue()
