"""The git commit a set of spec paths comes from, for GitOps records, and the default
name of the apply set those paths make (`default_set`: the repository's root commit and
the path within it, so unrelated repositories never share a set).

Called by `virtctl apply` and the watch loop before planning; the planner writes the
answer into each defined object's ownership mark (`commit=`), and `virtctl get -o wide`
shows it. Runs `git` as a subprocess with a timeout and never raises: no git, no work
tree, no commit yet, paths in different work trees, stdin, a timeout or any other
failure all mean "no commit" (""), because a missing record must never stop a deploy.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DIRTY = "-dirty"
TIMEOUT = 5.0  # seconds for each git call; a hung NFS mount must not hang a deploy


def spec_commit(paths: Sequence[str], *, timeout: float = TIMEOUT) -> str:
    """HEAD of the one git work tree holding every spec path, with `-dirty` appended
    when any spec file under `paths` has uncommitted changes (modified, staged, deleted
    or untracked); "" when there is no single commit to name."""
    if not paths or "-" in paths:
        return ""  # stdin is not from any commit
    resolved = [Path(p).resolve() for p in paths]
    tops = {_toplevel(p, timeout) for p in resolved}
    if len(tops) != 1:
        return ""  # spread over several work trees: no one commit describes them
    top = tops.pop()
    if top is None:
        return ""
    head = _git(top, ["rev-parse", "--verify", "--quiet", "HEAD"], timeout)
    if not head:
        return ""  # a repository without commits yet
    status = _git(top, ["status", "--porcelain", "--untracked-files=normal", "-z", "--",
                        *map(str, resolved)], timeout)
    if status is None:
        return ""
    return head.strip() + (DIRTY if status else "")


def _toplevel(path: Path, timeout: float) -> Path | None:
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return None
    out = _git(folder, ["rev-parse", "--show-toplevel"], timeout)
    return Path(out.strip()).resolve() if out else None


def _git(folder: Path, args: list[str], timeout: float) -> str | None:
    """git's stdout, or None when git is missing, fails or takes too long."""
    env = dict(os.environ, LC_ALL="C", GIT_TERMINAL_PROMPT="0",
               # `git status` would otherwise refresh the index and take index.lock,
               # racing a CI job or a person committing at the same moment.
               GIT_OPTIONAL_LOCKS="0")
    # Run from a git hook, these point at the hook's repository (GIT_DIR may even be
    # relative): git must find the spec folder's own repository, or the set is wrong.
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR",
                 "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"):
        env.pop(name, None)
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, env=env,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True, slots=True)
class DefaultSet:
    """The apply set a run's paths name, and the paths that give no stable name."""

    name: str
    # One line per path that cannot name a set the same way every time (stdin, a
    # shallow clone, a work tree whose history git cannot read): --prune needs --set.
    unstable: tuple[str, ...] = ()


def default_set(paths: Sequence[str], *, timeout: float = TIMEOUT) -> DefaultSet:
    """The default apply set of a run: its spec paths, each named the same from every
    clone of a repository and by nothing else, sorted, joined by commas.

    Inside a git work tree a path is `git:ROOT:PATH`: ROOT the repository's root commit
    (the first commit on HEAD's first-parent line: every clone of the repository has
    it, an unrelated repository does not, whatever the folders are called), PATH the
    path within the work tree (`.` for its top). Outside git, and in a repository
    without commits yet, the absolute path names it. stdin is `stdin`, a shallow clone
    (its root commit is not there) and a work tree git cannot read are named by their
    absolute path; none of these three is stable, so they are listed in `unstable`."""
    names: set[str] = set()
    unstable: list[str] = []
    for given in paths:
        if given == "-":
            names.add("stdin")
            unstable.append("-f - (stdin) has no path to name a set after")
            continue
        path = Path(given).resolve()
        name, why = _path_set(path, timeout)
        names.add(name)
        if why:
            unstable.append(f"{given}: {why}")
    return DefaultSet(",".join(sorted(names)), tuple(unstable))


def spec_set(paths: Sequence[str], *, timeout: float = TIMEOUT) -> str:
    """The name of `default_set(paths)`."""
    return default_set(paths, timeout=timeout).name


def _path_set(path: Path, timeout: float) -> tuple[str, str]:
    """A path's set name, and why it is not stable ("" when it is)."""
    top = _toplevel(path, timeout)
    if top is None or not path.is_relative_to(top):
        if _inside_git(path):
            return str(path), "git cannot read the repository it is in"
        return str(path), ""  # outside git: the absolute path is the set
    if (_git(top, ["rev-parse", "--is-shallow-repository"], timeout) or "").strip() == "true":
        return str(path), ("a shallow clone: its root commit, which names the set, is not "
                           "there (fetch the whole history)")
    head = _git(top, ["rev-parse", "--verify", "--quiet", "HEAD"], timeout)
    if not head:
        if _git(top, ["rev-parse", "--git-dir"], timeout) is None:
            return str(path), "git cannot read the repository it is in"
        return str(path), ""  # no commit yet: no clone of it exists either
    roots = (_git(top, ["rev-list", "--first-parent", "--max-parents=0", "HEAD"], timeout)
             or "").split()
    if len(roots) != 1:
        return str(path), "git cannot read the repository's history"
    rel = path.relative_to(top).as_posix()
    return f"git:{roots[0]}:{rel}", ""


def _inside_git(path: Path) -> bool:
    """Whether `path` lies in a git work tree by its `.git` entry, when git itself could
    not say (not installed, timed out)."""
    return any((folder / ".git").exists() for folder in (path, *path.parents))
