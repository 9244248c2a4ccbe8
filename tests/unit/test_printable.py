"""Text a host supplies never reaches the terminal raw (issue 20 D): object names (libvirt
takes an ESC or a right-to-left override in a domain name), libvirt's messages, lock
holder records and watch log values have their control and invisible format characters
escaped, in plans, reports, tables, error lines and both log formats."""

from __future__ import annotations

import io
import json

import pytest

from virtctl.cli import commands as cli
from virtctl.errors import DriverError
from virtctl.model import DomainState, Kind, Live, LiveDomain, ObjectKey
from virtctl.printable import printable, printable_json
from virtctl.reconciler.plan.actions import Define, Shutdown, Undefine
from virtctl.reconciler.apply.apply import ActionResult, Outcome, Report
from virtctl.reconciler.plan.plan import Plan
from virtctl.render.report import plan_text, report_text, rows, table
from virtctl.watch.logs import Level, LogRecord, format_json, format_text

EVIL = "web\x1b]0;owned\x07\x1b[2J\u202egnp.exe\u200b\x9b31m\x7f"
SHOWN = "web\\x1b]0;owned\\x07\\x1b[2J\\u202egnp.exe\\u200b\\x9b31m\\x7f"


def clean(text: str) -> bool:
    """Nothing but printable characters and newlines."""
    return text.replace("\n", "").isprintable()


@pytest.mark.parametrize(("raw", "shown"), [
    (EVIL, SHOWN),
    ("plain ascii, é, 日本語, emoji 🙂", "plain ascii, é, 日本語, emoji 🙂"),
    ("two\nlines", "two\nlines"),
    ("tab\there", "tab\\x09here"),
    ("\u2028\u2029\ufeff\U000e0041", "\\u2028\\u2029\\ufeff\\U000e0041"),
    ("\ud800", "\\ud800"),
])
def test_printable_escapes_control_and_format_characters_only(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert clean(printable(raw))


def test_printable_without_newlines_escapes_them_too() -> None:
    assert printable("a\nb", keep_newlines=False) == "a\\x0ab"


def test_printable_json_is_the_same_value_with_nothing_raw() -> None:
    text = json.dumps({"name": EVIL, "ok": "é"}, ensure_ascii=False)
    safe = printable_json(text)
    assert json.loads(safe) == json.loads(text)
    assert safe.isprintable() and "é" in safe


def test_a_plan_names_host_objects_escaped() -> None:
    plan = Plan(actions=(Shutdown(kind=Kind.DOMAIN, name=EVIL, reason="pruned"),
                         Undefine(kind=Kind.DOMAIN, name=EVIL, reason="pruned")),
                deletes=frozenset({ObjectKey(Kind.DOMAIN, EVIL)}),
                notes=(f"domain/{EVIL} is not managed by virtctl; left alone",))
    text = plan_text(plan)
    assert clean(text)
    assert f"- domain/{SHOWN}  (shutdown, undefine)" in text
    assert f"! domain/{SHOWN} is not managed" in text


def test_a_report_shows_libvirt_messages_escaped() -> None:
    action = Define(kind=Kind.DOMAIN, name="web", xml="<domain/>", new=True)
    report = Report(results=(ActionResult(action, Outcome.FAILED, error=DriverError(
        f"internal error: {EVIL}")),))
    text = report_text(report)
    assert clean(text) and SHOWN in text


def test_get_tables_escape_host_names() -> None:
    live = Live(domains={EVIL: LiveDomain(name=EVIL, uuid="u", xml="",
                                          state=DomainState.RUNNING)})
    text = table(rows(live, "domains"), ["name", "state"])
    assert clean(text) and SHOWN in text


@pytest.mark.parametrize("formatter", [format_text, format_json])
def test_watch_log_lines_escape_host_text(formatter: object) -> None:
    record = LogRecord(time=0.0, level=Level.ERROR, event="action",
                       message=f"start domain/{EVIL}: failed", fields={"object": EVIL})
    line = formatter(record)  # type: ignore[operator]
    assert line.isprintable()
    if formatter is format_json:
        assert json.loads(line)["object"] == EVIL  # the value itself is kept
    else:
        assert SHOWN in line


def test_cli_error_lines_escape_what_the_host_said(tmp_path: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(_args: object, _out: object, _err: object) -> int:
        raise DriverError(f"cannot start domain '{EVIL}': internal error\nsecond {EVIL}")

    monkeypatch.setattr(cli, "cmd_capabilities", failing)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["capabilities"], out=out, err=err) == 1
    assert err.getvalue() == (f"error: cannot start domain '{SHOWN}': internal error\n"
                              f"error: second {SHOWN}\n")


def test_an_upload_or_download_bar_shows_its_label_escaped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from virtctl.reconciler.apply import applystorage

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    bar = applystorage._bar(f"download {EVIL}.img", 4 << 20)
    assert bar is not None
    bar(4 << 20)
    assert f"download {SHOWN}.img [" in screen.getvalue()
    assert screen.getvalue().replace("\r", "").replace("\n", "").isprintable()

