"""Bad input: every case under tests/data/bad/ fails with exit 1, names the file and the
line or field path, and applies nothing, not even the valid specs beside it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "bad"
CASES = sorted(p for p in DATA.iterdir() if p.is_dir())
VERBS = {
    "apply": ("apply",),
    "dry-run": ("apply", "--dry-run"),
    "diff": ("diff",),
    "validate": ("validate",),
    "validate-offline": ("validate", "--offline"),
    "delete": ("delete",),
}
# Cases the loader alone cannot see: they need the host's state and capabilities, which
# `validate --offline` and `delete` do not consult by design.
HOST_CHECKS = {"unknown-network", "unsupported-guest"}
LOADER_ONLY_VERBS = {"validate-offline", "delete"}
CASE_VERBS = [
    pytest.param(case, argv, id=f"{case.name}-{verb}")
    for case in CASES
    for verb, argv in VERBS.items()
    if not (case.name in HOST_CHECKS and verb in LOADER_ONLY_VERBS)
]


def expected(case: Path) -> list[str]:
    return [line for line in (case / "expect.txt").read_text().splitlines() if line]


def test_every_case_has_expectations() -> None:
    assert len(CASES) >= 15
    for case in CASES:
        assert expected(case), case.name


@pytest.mark.parametrize(("case", "verb"), CASE_VERBS)
def test_bad_input_fails_names_where_and_applies_nothing(
        cli, case: Path, verb: tuple[str, ...], state_dir: Path, kit: SimpleNamespace) -> None:
    result = cli(*verb, "-f", str(case))
    assert result.code == 1, result.out + result.err
    for line in expected(case):
        assert line in result.err, f"{line!r} not in:\n{result.err}"
    assert all(ln.startswith("error: ") for ln in result.err.splitlines())
    assert kit.records(state_dir) == {"domains": [], "networks": [], "pools": [], "volumes": []}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_bad_input_as_json_is_one_error_document(cli, case: Path, state_dir: Path,
                                                 kit: SimpleNamespace) -> None:
    result = cli("apply", "-o", "json", "-f", str(case))
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["kind"] == "Error" and doc["errors"]
    for error in doc["errors"]:
        assert {"code", "domain", "message"} <= set(error)
        assert error["source"]["file"].startswith(str(case))
    assert kit.records(state_dir) == {"domains": [], "networks": [], "pools": [], "volumes": []}


@pytest.mark.parametrize("case", ["xml-doctype-entity", "xml-external-entity"])
def test_entities_are_never_expanded(cli, case: str, state_dir: Path) -> None:
    for argv in (("apply",), ("apply", "-o", "json"), ("validate", "--offline")):
        result = cli(*argv, "-f", str(DATA / case))
        assert result.code == 1
        text = result.out + result.err
        assert "SECRET-ENTITY-VALUE" not in text and "lollol" not in text
        assert "root:" not in text  # /etc/passwd


def test_entity_on_stdin_is_refused(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(
        (DATA / "xml-doctype-entity" / "entity.xml").read_text()))
    result = cli("apply", "-f", "-")
    assert result.code == 1 and "<stdin>:1: DOCTYPE" in result.err


def test_duplicate_across_files_given_separately(
        cli, state_dir: Path, kit: SimpleNamespace) -> None:
    case = DATA / "duplicate-name"
    result = cli("apply", "-f", str(case / "b.yaml"), "-f", str(case / "a.xml"))
    assert result.code == 1
    assert "a.xml" in result.err and "b.yaml" in result.err
    assert kit.records(state_dir) == {"domains": [], "networks": [], "pools": [], "volumes": []}


def test_missing_path_is_an_error(cli, tmp_path: Path, state_dir: Path,
                                  kit: SimpleNamespace) -> None:
    result = cli("apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.code == 1 and "nope.yaml: no such file or directory" in result.err
    assert not (state_dir / "sim").exists()


def test_reference_to_a_network_on_the_host_is_fine(cli, sim, kit: SimpleNamespace) -> None:
    from virtctl.model import Kind

    sim().define(Kind.NETWORK, kit.network_xml("nowhere"))
    sim().start(Kind.NETWORK, "nowhere")
    result = cli("apply", "-f", str(DATA / "unknown-network"))
    assert result.code == 0, result.err


@pytest.mark.parametrize("size", [100 * 1024 * 1024, 16 * 1024 * 1024 + 1])
def test_a_huge_file_is_refused_unread(cli, tmp_path: Path, state_dir: Path,
                                       kit: SimpleNamespace, size: int) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "good.xml").write_text((DATA / "yaml-malformed" / "good.xml").read_text())
    with open(folder / "huge.yaml", "wb") as handle:
        handle.truncate(size)  # sparse: the refusal must come from its size, not a read
    result = cli("apply", "-f", str(folder))
    assert result.code == 1
    assert f"huge.yaml: {size} bytes is too large for a spec file (at most 16 MiB)" \
        in result.err
    assert kit.records(state_dir) == {"domains": [], "networks": [], "pools": [], "volumes": []}


def test_a_huge_stdin_is_refused(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("#" * (16 * 1024 * 1024 + 1)))
    result = cli("apply", "-f", "-")
    assert result.code == 1 and "<stdin>: too large for a spec (at most 16 MiB)" in result.err
