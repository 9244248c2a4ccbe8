"""GitOps records: the commit a definition was applied from, in each object's ownership
mark, shown by `virtctl get -o wide`; and `virtctl.reconciler.load.gitinfo.spec_commit` on its own.

Real git in temporary work trees; the sim host through the CLI in-process.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virtctl.reconciler.load.gitinfo import spec_commit

SHA = re.compile(r"[0-9a-f]{40}")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
         "-c", "commit.gpgsign=false", *args],
        capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    return root


def commit_all(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def commits_on_host(cli: Callable[..., Any]) -> dict[str, str | None]:
    result = cli("get", "domains", "-o", "json")
    assert result.code == 0, result.err
    return {d["name"]: d["commit"] for d in json.loads(result.out)}


def test_apply_records_head_and_get_wide_shows_it(
    cli: Callable[..., Any], repo: Path, kit: Any
) -> None:
    kit.write(repo / "specs", "web.xml", kit.domain_xml("web"))
    head = commit_all(repo)
    assert cli("apply", "-f", str(repo / "specs")).code == 0
    assert commits_on_host(cli) == {"web": head}
    wide = cli("get", "domains", "-o", "wide")
    header, row = wide.out.splitlines()
    column = header.index("COMMIT")
    assert row[column:].split()[0] == head


def test_uncommitted_spec_edit_is_recorded_dirty(
    cli: Callable[..., Any], repo: Path, kit: Any
) -> None:
    kit.write(repo / "specs", "web.xml", kit.domain_xml("web"))
    head = commit_all(repo)
    assert cli("apply", "-f", str(repo / "specs")).code == 0
    kit.write(repo / "specs", "web.xml", kit.domain_xml("web", memory_mib=512))
    assert cli("apply", "-f", str(repo / "specs")).code == 0
    assert commits_on_host(cli) == {"web": f"{head}-dirty"}


def test_a_new_commit_alone_redefines_nothing(
    cli: Callable[..., Any], repo: Path, kit: Any, driver_calls: list[str]
) -> None:
    """The mark names the commit of the last applied *definition change*."""
    kit.write(repo / "specs", "web.xml", kit.domain_xml("web"))
    first = commit_all(repo)
    assert cli("apply", "-f", str(repo / "specs")).code == 0
    (repo / "README").write_text("docs only\n")
    second = commit_all(repo, "docs")
    driver_calls.clear()
    result = cli("apply", "-f", str(repo / "specs"))
    assert result.code == 0 and "No changes" in result.out
    assert driver_calls == []
    assert second != first and commits_on_host(cli) == {"web": first}


def test_specs_outside_git_record_no_commit(
    cli: Callable[..., Any], specs: Path, kit: Any
) -> None:
    kit.write(specs, "web.xml", kit.domain_xml("web"))
    assert cli("apply", "-f", str(specs)).code == 0
    assert not commits_on_host(cli)["web"]  # None or "" (see render.domain_row)
    row = cli("get", "domains", "-o", "wide").out.splitlines()[1]
    assert not SHA.search(row)


# -- spec_commit on its own ------------------------------------------------------------------


def test_clean_tree_names_head(repo: Path) -> None:
    (repo / "specs" / "a.yaml").write_text("x\n")
    head = commit_all(repo)
    assert SHA.fullmatch(head)
    assert spec_commit([str(repo / "specs")]) == head
    assert spec_commit([str(repo / "specs" / "a.yaml")]) == head


@pytest.mark.parametrize("change", ["modified", "staged", "untracked", "deleted"])
def test_uncommitted_spec_changes_make_it_dirty(repo: Path, change: str) -> None:
    (repo / "specs" / "a.yaml").write_text("x\n")
    (repo / "specs" / "b.yaml").write_text("y\n")
    head = commit_all(repo)
    if change == "modified":
        (repo / "specs" / "a.yaml").write_text("changed\n")
    elif change == "staged":
        (repo / "specs" / "a.yaml").write_text("changed\n")
        git(repo, "add", "specs/a.yaml")
    elif change == "untracked":
        (repo / "specs" / "new.yaml").write_text("z\n")
    else:
        (repo / "specs" / "b.yaml").unlink()
    assert spec_commit([str(repo / "specs")]) == f"{head}-dirty"


def test_changes_outside_the_spec_paths_do_not_count(repo: Path) -> None:
    (repo / "specs" / "a.yaml").write_text("x\n")
    (repo / "notes.txt").write_text("n\n")
    head = commit_all(repo)
    (repo / "notes.txt").write_text("edited\n")
    (repo / "scratch").write_text("untracked\n")
    assert spec_commit([str(repo / "specs")]) == head


def test_ignored_files_do_not_count(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.swp\n")
    (repo / "specs" / "a.yaml").write_text("x\n")
    head = commit_all(repo)
    (repo / "specs" / ".a.yaml.swp").write_text("editor\n")
    assert spec_commit([str(repo / "specs")]) == head


@pytest.mark.parametrize("case", ["no-git-tree", "no-commits-yet", "stdin", "two-trees",
                                  "missing-path", "nothing"])
def test_no_single_commit_means_none(repo: Path, tmp_path: Path, case: str) -> None:
    (repo / "specs" / "a.yaml").write_text("x\n")
    outside = tmp_path / "plain"
    outside.mkdir()
    paths = {
        "no-git-tree": [str(outside)],
        "no-commits-yet": [str(repo / "specs")],
        "stdin": [str(repo / "specs"), "-"],
        "two-trees": [str(repo / "specs"), str(outside)],
        "missing-path": [str(tmp_path / "gone" / "x.yaml")],
        "nothing": [],
    }[case]
    if case in ("stdin", "two-trees"):
        commit_all(repo)
    assert spec_commit(paths) == ""


def fake_git(folder: Path, body: str) -> None:
    folder.mkdir()
    script = folder / "git"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(("case", "body"), [
    pytest.param("hangs", "sleep 5", id="git-hangs"),
    pytest.param("fails", "echo fatal >&2; exit 128", id="git-fails"),
])
def test_a_broken_git_means_no_commit_not_an_error(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, body: str
) -> None:
    (repo / "specs" / "a.yaml").write_text("x\n")
    commit_all(repo)
    fake_git(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert spec_commit([str(repo / "specs")], timeout=0.3) == ""


def test_no_git_installed_means_no_commit(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "specs" / "a.yaml").write_text("x\n")
    commit_all(repo)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert os.environ["PATH"] == str(tmp_path / "empty")
    assert spec_commit([str(repo / "specs")]) == ""
