"""The git commit a set of spec paths comes from, for GitOps records, and the default
name of the apply set those paths make (`spec_set`).

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
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, env=env,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def spec_set(paths: Sequence[str], *, timeout: float = TIMEOUT) -> str:
    """The default apply set of a run: its spec paths, each named the same from every
    clone of a repository (`REPO:PATH`, PATH relative to the work tree's top, REPO the
    top's folder name) or else by its absolute path; sorted, joined by commas. stdin is
    `stdin`. A CI job and a person applying the same directory of the same repository
    get the same set; two directories get two sets."""
    names = set()
    for given in paths:
        if given == "-":
            names.add("stdin")
            continue
        path = Path(given).resolve()
        top = _toplevel(path, timeout)
        if top is None or not path.is_relative_to(top):
            names.add(str(path))
        else:
            rel = path.relative_to(top).as_posix()
            names.add(f"{top.name}:{rel}" if rel != "." else f"{top.name}:")
    return ",".join(sorted(names))
