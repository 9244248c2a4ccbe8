"""The xm/xl config parser: what real files contain is accepted, code is refused unrun."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtctl.converters.xen.xmparse import format_config, looks_like_xen_config, parse_config
from virtctl.errors import ErrorCode, ErrorDomain, SpecError


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param('a = "x"', "x", id="double-quotes"),
    pytest.param("a = 'x'", "x", id="single-quotes"),
    pytest.param('a = """x\ny"""', "x\ny", id="triple-double-quotes"),
    pytest.param("a = '''x'''", "x", id="triple-single-quotes"),
    pytest.param('a = "x\\\\:y"', "x\\:y", id="backslash-escape"),
    pytest.param('a = "ab" "cd"', "abcd", id="adjacent-strings-concatenate"),
    pytest.param("a = 512", 512, id="integer"),
    pytest.param("a = -5", -5, id="negative-integer"),
    pytest.param("a = 0x10", 16, id="hex-integer"),
    pytest.param("a = True", 1, id="python-bool-as-integer"),
    pytest.param("a = [ 'x',\n  'y',\n]", ("x", "y"), id="list-over-lines-trailing-comma"),
    pytest.param("a = ('x', 1)", ("x", 1), id="tuple"),
    pytest.param("a = [ [ 'p=0' ], [ 'p=1' ] ]", (("p=0",), ("p=1",)), id="nested-lists"),
    pytest.param("# comment\na = 1  # trailing comment\n\n", 1, id="comments-and-blanks"),
    pytest.param("a = [\n  # inner comment\n  'x',\n]", ("x",), id="comment-inside-list"),
])
def test_accepts_the_syntax_real_files_use(text: str, expected: object) -> None:
    entry = parse_config(text).get("a")
    assert entry is not None
    assert entry.value == expected


@pytest.mark.parametrize(("text", "line"), [
    pytest.param("name = 'x'\nimport os", 2, id="import"),
    pytest.param("from os import system", 1, id="from-import"),
    pytest.param("a = open('/etc/passwd').read()", 1, id="call"),
    pytest.param("a = 1\nb = a", 2, id="name-reference"),
    pytest.param("a = os.uname()[4]", 1, id="attribute-subscript"),
    pytest.param("a = f'{1+1}'", 1, id="f-string"),
    pytest.param("a = 1\na += 1", 2, id="augmented-assign"),
    pytest.param("a = b = 1", 1, id="chained-assign"),
    pytest.param("a, b = 1, 2", 1, id="tuple-target"),
    pytest.param("x.y = 1", 1, id="attribute-target"),
    pytest.param("a = 1 + 2", 1, id="binary-operation"),
    pytest.param("a = -'x'", 1, id="negated-string"),
    pytest.param("a = 1.5", 1, id="float"),
    pytest.param("a = None", 1, id="none"),
    pytest.param("a = b'x'", 1, id="bytes"),
    pytest.param("a = {'k': 1}", 1, id="dict"),
    pytest.param("a = [x for x in 'ab']", 1, id="comprehension"),
    pytest.param("a = lambda: 1", 1, id="lambda"),
    pytest.param("if True:\n    a = 1", 1, id="if-statement"),
    pytest.param("def f():\n    pass", 1, id="function"),
    pytest.param("a = 1\n\n__import__('os')", 3, id="dunder-import-expression"),
    pytest.param("a = [[[[[[[[1]]]]]]]]", 1, id="absurd-nesting"),
])
def test_refuses_code_with_file_and_line(text: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        parse_config(text, source="guest.cfg")
    assert info.value.code is ErrorCode.PARSE_ERROR
    assert info.value.domain is ErrorDomain.CONVERTER
    assert info.value.source is not None
    assert (info.value.source.file, info.value.source.line) == ("guest.cfg", line)


@pytest.mark.parametrize("text", [
    pytest.param("a = 'unterminated", id="unterminated-string"),
    pytest.param("a = [1, 2", id="unclosed-list"),
    pytest.param("name: foo", id="yaml"),
    pytest.param("a = 1\x00", id="nul-byte"),
    pytest.param("a = 010", id="leading-zero"),
])
def test_syntax_errors_are_parse_errors(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_config(text, source="bad.cfg")
    assert info.value.code is ErrorCode.PARSE_ERROR


def test_a_refused_file_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        f"name = 'x'\nopen({str(marker)!r}, 'w').write('ran')",
        f"import pathlib; pathlib.Path({str(marker)!r}).touch()",
        f"name = __import__('pathlib').Path({str(marker)!r}).touch()",
        f"name = [open({str(marker)!r}, 'w') for _ in 'a']",
    ]
    for payload in payloads:
        with pytest.raises(SpecError):
            parse_config(payload)
    assert not marker.exists()


def test_last_assignment_wins_and_duplicates_are_kept_for_warnings() -> None:
    config = parse_config("a = 1\nb = 2\na = 3")
    entry = config.get("a")
    assert entry is not None and (entry.value, entry.line) == (3, 3)
    assert [(d.key, d.line) for d in config.duplicates] == [("a", 1)]


@pytest.mark.parametrize("value", [
    pytest.param('quote " and backslash \\ here', id="quote-backslash"),
    pytest.param("line\nbreak", id="newline"),
    pytest.param(("a", 1, ("b",)), id="nested-list"),
    pytest.param(-3, id="negative"),
])
def test_written_values_read_back_equal(value: object) -> None:
    text = format_config([("k", value)])  # type: ignore[list-item]
    entry = parse_config(text).get("k")
    assert entry is not None and entry.value == value


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("# guest\nname = 'a'\nmemory = 512\n", True, id="xm-file"),
    pytest.param("memory = 512\n", False, id="no-name"),
    pytest.param("name: a\nmemory: 512\n", False, id="yaml"),
    pytest.param("<domain><name>a</name></domain>", False, id="xml"),
    pytest.param("name = 'a'\nimport os\n", False, id="code"),
    pytest.param("", False, id="empty"),
])
def test_looks_like_xen_config(text: str, expected: bool) -> None:
    assert looks_like_xen_config(text) is expected
