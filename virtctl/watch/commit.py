"""The git commit of the watched spec paths, recomputed only when it can have changed.

Called by the fleet's Catalog (fleet.py) once per host pass. `spec_commit` runs `git`
(about 28 ms); with a thousand hosts per process that was most of a round. The commit
can only change when the spec files change (the Catalog re-reads them: `generation`) or
when git's own state moves (a commit, a checkout, a pull, a reset without touching the
files): that is HEAD, the branch it points to, packed-refs and the index, whose stats
(mtime, size, inode) cost a few microseconds. Not thread-safe: the Catalog's lock guards it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from ..reconciler.load.gitinfo import TIMEOUT, spec_commit

Stat = tuple[int, int, int] | None


class CommitCache:
    def __init__(self, paths: Sequence[str],
                 compute: Callable[[Sequence[str]], str] = spec_commit) -> None:
        self.paths = tuple(paths)
        self._compute = compute
        self._dirs: tuple[Path, Path] | None | bool = False  # False: not looked up yet
        self._key: object = None
        self._value = ""
        self.computed = 0  # how many times git ran, for tests and the bench

    def get(self, generation: int) -> str:
        key = (generation, self._git_state())
        if key != self._key:
            self._value = self._compute(self.paths)
            self._key = key
            self.computed += 1
        return self._value

    def git_state(self) -> tuple[Stat, ...]:
        """What git's HEAD, branch, packed-refs and index look like now (stats only)."""
        return self._git_state()

    def _git_state(self) -> tuple[Stat, ...]:
        if self._dirs is False:
            self._dirs = _git_dirs(self.paths)
        if not self._dirs:
            return ()
        git_dir, common = self._dirs
        head = git_dir / "HEAD"
        files = [head, git_dir / "index", common / "packed-refs"]
        try:
            ref = head.read_text(errors="replace").strip()
        except OSError:
            ref = ""
        if ref.startswith("ref: "):
            files.append(common / ref[5:])
        return tuple(_stat(f) for f in files)


def _stat(path: Path) -> Stat:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _git_dirs(paths: Sequence[str]) -> tuple[Path, Path] | None:
    """The git directory and common directory of the first path's work tree, if any.
    (Paths spread over several work trees have no commit: spec_commit says "".)"""
    if not paths or "-" in paths:
        return None
    first = Path(paths[0]).resolve()
    folder = first if first.is_dir() else first.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir", "--git-common-dir"], cwd=folder,
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
            env=dict(os.environ, LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0"))
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    if out.returncode != 0 or len(lines) < 2:
        return None
    git_dir = Path(lines[0])
    common = Path(lines[1])
    return git_dir, common if common.is_absolute() else (folder / common).resolve()
