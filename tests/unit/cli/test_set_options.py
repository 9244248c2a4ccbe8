"""The apply set a run gets from its options (options.apply_sets, issue 20 A.2-3): --set,
--prune-set, and the default from the paths (gitinfo.default_set), refused for --prune
where the paths name no stable set."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from virtctl.reconciler.load.gitinfo import DefaultSet, default_set
from virtctl.cli.options import apply_sets


def args(**given: object) -> argparse.Namespace:
    return argparse.Namespace(**{"apply_set": None, "prune": False, "prune_sets": [],
                                 **given})


STABLE = DefaultSet("git:abc:specs")
STDIN = DefaultSet("stdin", ("-f - (stdin) has no path to name a set after",))


def test_the_default_set_and_named_sets() -> None:
    assert apply_sets(args(), lambda: STABLE) == ("git:abc:specs", ())
    assert apply_sets(args(apply_set=" team "), lambda: STABLE) == ("team", ())
    assert apply_sets(args(prune=True, prune_sets=["b", "a", "b"]), lambda: STABLE) == (
        "git:abc:specs", ("a", "b"))


@pytest.mark.parametrize(("given", "default", "said"), [
    pytest.param({"prune_sets": ["b"]}, STABLE, "--prune-set needs --prune", id="no-prune"),
    pytest.param({"apply_set": "  "}, STABLE, "--set needs a name", id="blank-set"),
    pytest.param({"prune": True}, STDIN, "--prune needs --set NAME here", id="stdin"),
])
def test_refused(given: dict[str, object], default: DefaultSet, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        apply_sets(args(**given), lambda: default)


def test_stdin_without_prune_or_with_a_set_is_fine() -> None:
    assert apply_sets(args(), lambda: STDIN) == ("stdin", ())
    assert apply_sets(args(prune=True, apply_set="pipe"), lambda: STDIN) == ("pipe", ())


def test_a_work_tree_git_cannot_read_names_no_stable_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No git to ask (not installed, or it timed out) inside a work tree: the absolute
    path would be shared by whatever repository is checked out there, so --prune needs
    --set."""
    repo = tmp_path / "infra"
    (repo / ".git").mkdir(parents=True)
    (repo / "specs").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    found = default_set([str(repo / "specs")])
    assert found.name == str((repo / "specs").resolve())
    assert found.unstable and "git cannot read" in found.unstable[0]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert default_set([str(plain)]).unstable == ()


def test_a_git_hooks_environment_does_not_name_another_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a hook, GIT_DIR names the hook's repository: the spec folder's own
    repository (here: none) still decides the set."""
    import subprocess

    hook_repo = tmp_path / "hooked"
    subprocess.run(["git", "init", "-q", str(hook_repo)], check=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_DIR", str(hook_repo / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(hook_repo))
    assert default_set([str(plain)]) == DefaultSet(str(plain.resolve()))
