"""Every numeric option of the CLI refuses what it cannot mean, as a usage error (exit 2,
the option named) before anything runs: nan (which compares false with everything, so a
wait for it never ends), infinities, negative durations, a zero where zero means
nothing, durations too long for Python's locks, non-ASCII digits."""

from __future__ import annotations

import pytest

from virtctl.cli.commands import build_parser

APPLY = ["apply", "-f", "specs"]
WATCH = ["watch", "-f", "specs"]

# (command line before the option, option, values refused)
SECONDS = ["nan", "NaN", "inf", "-inf", "-5", "-0.001", "1e400", "1e300", "", "ten"]
CASES = [
    (APPLY, "--lock-timeout", SECONDS),
    (["delete", "-f", "specs"], "--lock-timeout", SECONDS),
    (APPLY, "--shutdown-timeout", SECONDS),
    (["delete", "-f", "specs"], "--shutdown-timeout", SECONDS),
    (WATCH, "--shutdown-timeout", SECONDS),
    (APPLY, "--detach-timeout", SECONDS),
    (["diff", "-f", "specs"], "--detach-timeout", SECONDS),
    (WATCH, "--detach-timeout", SECONDS),
    (APPLY, "--call-timeout", [*SECONDS, "0"]),
    (["get", "domains"], "--call-timeout", [*SECONDS, "0"]),
    (WATCH, "--call-timeout", [*SECONDS, "0"]),
    ([], "--call-timeout", [*SECONDS, "0"]),  # before the verb, like -c
    (APPLY, "--parallel", ["0", "-1", "nan", "inf", "1.5", "", "9" * 5000]),
    (["diff", "-f", "specs"], "--parallel", ["0", "-3"]),
    (WATCH, "--interval", ["nan", "inf", "-5", "0", "0s", "1e400", "99999999999999d"]),
    (WATCH, "--metrics-port", ["-1", "65536", "nan", "\u0663\u0663", "80a", ""]),
]


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("before", "option", "value"), [
    pytest.param(before, option, value, id=f"{(before or ['-'])[0]}{option}={value[:12]!r}")
    for before, option, values in CASES for value in values])
def test_a_value_an_option_cannot_mean_is_a_usage_error(
        before: list[str], option: str, value: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = [option, value, *APPLY] if not before else [*before, f"{option}={value}"]
    err = refusal(argv, capsys)
    assert f"argument {option}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "attribute", "expected"), [
    ([*APPLY, "--lock-timeout", "0"], "lock_timeout", 0.0),
    ([*APPLY, "--lock-timeout", "2.5"], "lock_timeout", 2.5),
    ([*APPLY, "--shutdown-timeout", "0"], "shutdown_timeout", 0.0),
    ([*APPLY, "--detach-timeout", "0"], "detach_timeout", 0.0),
    ([*APPLY, "--parallel", "16"], "parallel", 16),
    ([*APPLY, "--call-timeout", "0.5"], "call_timeout", 0.5),
    (["--call-timeout", "7", *APPLY], "call_timeout", 7.0),
    ([*WATCH, "--interval", "1h30m"], "interval", 5400.0),
    ([*WATCH, "--metrics-port", "0"], "metrics_port", 0),
    ([*WATCH, "--call-timeout", "3"], "call_timeout", 3.0),
])
def test_meaningful_values_are_taken(argv: list[str], attribute: str, expected: float) -> None:
    assert getattr(build_parser().parse_args(argv), attribute) == expected
