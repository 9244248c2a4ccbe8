"""The no-op fast path: `virtctl apply` and `diff` answer a repeated no-op from a
record, before the model, yaml, lxml, the loader or the planner are imported.

A full run that planned nothing and applied nothing records what it printed (stdout,
stderr, exit status) under two keys (`<cache>/noop/RUNKEY.json`):
- the run key, of the process's inputs: the argv as given, the working directory, the
  environment variables that reach virtctl (VIRTCTL_*, LIBVIRT_*, XDG_*, GIT_*, HOME,
  PATH...), the Python version and virtctl's code (every source file and the schema);
- the inputs key, of what the run read: the host (URI), every spec file the loader
  read (selected by the loader's own walk, fileio.walk_specs: path, bytes, size,
  inode, mtime and ctime), the default apply set from git, the capabilities XML and the
  snapshot's fingerprint (`Live.fingerprint`, over every domain and network on the
  host, managed or not).
A later run with the same run key reads the same inputs model-free (the libvirt
driver's own reads, drivers/libvirt/reads.py; the sim's store, drivers/sim/rawread.py)
and replays the record when the inputs key matches. Any byte of a spec, any change on
the host, an option, an environment variable or a different virtctl gives another key:
the full path runs. A spec file's ctime is in the key, so a file changed and changed
back while the recording run loaded it is never recorded (the key is taken before and
after that run and must not differ); the snapshot fingerprint is the one the run's
planner used (api.plan's `seen`), not one read again.

Not covered, always the full path (each a condition of `Recorder.eligible` or
`replay`): storage declared or --prune (storage is read, and pruning looks at it),
cloud-init seeds (they are volumes), several hosts or `kind: Hosts`, stdin specs,
--dry-run, -o json, --coordination/etcd, a plan with notes (checkpoints, health
gates, recovered runs), an interrupted checkpointed change in the journal, a host lock
held by another run (the full path waits for it and says so), a run that waited for
the lock, `watch`, VIRTCTL_CACHE=0 (no cache to keep records in) and
VIRTCTL_FASTPATH=0 (off).

May import the foundation modules, the model-free readers named above, gitinfo,
the checkpoint journal and the host lock; never virtctl.model, virtctl.api or
virtctl.cli.commands (tests/unit/test_noop_fastpath.py checks the imports).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

VERBS = ("apply", "diff")
_FORMAT = b"virtctl-noop-1"
_ENV_PREFIXES = ("VIRTCTL_", "LIBVIRT_", "XDG_", "GIT_", "LC_", "PYTHON")
_ENV_NAMES = frozenset({"HOME", "PATH", "USER", "LOGNAME", "LANG", "TZ"})
_PACKAGE = Path(__file__).resolve().parent.parent


def enabled(env: Mapping[str, str]) -> bool:
    return env.get("VIRTCTL_FASTPATH", "1") != "0" and env.get("VIRTCTL_CACHE", "1") != "0"


def _folder(env: Mapping[str, str]) -> Path | None:
    """`<cache>/noop`, as speccache.cache_dir finds the cache; None when it is missing
    or not this user's own (fileio.private_dir: records decide what is printed)."""
    from ..fileio import cache_path, private_dir

    base = cache_path(env)
    try:
        private_dir(base, make=False)
    except OSError:
        return None
    return Path(base) / "noop"


def code_version() -> str:
    """virtctl's version and every source file of the package (and the schema), by
    path and a strict stat key (inode, size, mtime and ctime: a file rewritten, even
    with its old mtime, has a new ctime; a reinstall, new inodes): any other virtctl
    records and replays under other keys. Stat, not bytes: reading ~170 files would
    cost a no-op more than its reads of a small host."""
    from .. import __version__

    parts = [__version__]
    stack = [str(_PACKAGE)]
    while stack:
        folder = stack.pop()
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    stack.append(entry.path)
            elif entry.name.endswith((".py", ".json")):
                info = entry.stat()
                parts.append(f"{entry.path}\0{info.st_ino}\0{info.st_size}"
                             f"\0{info.st_mtime_ns}\0{info.st_ctime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_key(argv: Sequence[str], env: Mapping[str, str], ttys: Sequence[bool] = ()) -> str:
    """The key of a run's own inputs: argv, working directory, the environment that
    reaches virtctl, whether stdout and stderr are terminals (`ttys`: what is printed
    may differ), Python and virtctl's code."""
    reaching = sorted((k, v) for k, v in env.items()
                      if k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES)
    doc = json.dumps([list(argv), os.getcwd(), reaching, list(ttys), sys.version,
                      sys.executable, code_version()])
    return hashlib.sha256(_FORMAT + b"\0" + doc.encode()).hexdigest()


def _files_digest(paths: Sequence[str]) -> str | None:
    """Every spec file the loader reads for `paths` (its own walk), each by name, stat
    (inode, size, mtime, ctime) and bytes; None where the loader would refuse or read
    stdin (the full path says why)."""
    from ..fileio import open_regular, walk_specs

    digest = hashlib.sha256()
    try:
        for given in paths:
            if given == "-":
                return None
            path = Path(given)
            if path.is_dir():
                found = [(str(p), p) for p in walk_specs(path, path.resolve(), set())]
            elif path.exists():
                found = [(given, path)]
            else:
                return None
            for name, file in found:
                with open_regular(file) as handle:
                    info = os.fstat(handle.fileno())
                    data = handle.read()
                if not stat.S_ISREG(info.st_mode):
                    return None
                digest.update(f"\0{name}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}"
                              f"\0{info.st_ctime_ns}\0".encode())
                digest.update(data)
    except Exception:  # noqa: BLE001 - any fault: the full path reports it
        return None
    return digest.hexdigest()


def _apply_set(paths: Sequence[str]) -> str:
    """The default apply set of `paths` (gitinfo.default_set). Outside every git work
    tree (no `.git` in any folder above a path: git finds work trees by it, and
    gitinfo drops GIT_DIR and the like) it is their absolute paths, which gitinfo would
    find by running git once per path; inside one, gitinfo is asked."""
    resolved = [Path(p).resolve() for p in paths]
    if any(os.path.lexists(folder / ".git") for path in resolved
           for folder in (path, *path.parents)):
        from ..reconciler.load.gitinfo import default_set

        found = default_set(paths)
        return json.dumps([found.name, list(found.unstable)])
    return json.dumps([",".join(sorted({str(p) for p in resolved})), []])


def inputs_key(run: str, uri: str, files: str, apply_set: str, caps: str, live: str) -> str:
    doc = json.dumps([run, uri, files, apply_set, hashlib.sha256(caps.encode()).hexdigest(),
                      live])
    return hashlib.sha256(doc.encode()).hexdigest()


def pending(uri: str, env: Mapping[str, str]) -> bool:
    """Whether the checkpoint journal may hold an interrupted change for `uri` (the full
    path finishes or rolls it back first): any entry file in its folder
    (reconciler/checkpoint/journal.py: `journal_root(env)/quote(uri)/NAME.json`)."""
    from urllib.parse import quote

    from ..fileio import state_root

    folder = state_root(env) / "checkpoints" / quote(uri, safe="")
    try:
        return any(n.endswith(".json") and not n.startswith(".") for n in os.listdir(folder))
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable: the full path says why


def read_host(uri: str, env: Mapping[str, str], *, readonly: bool) -> tuple[str, str] | None:
    """The host's capabilities XML and snapshot fingerprint, read as its driver reads
    them, without the model; None when it cannot be read so (the full path reports)."""
    from ..uri import parse_uri

    try:
        parsed = parse_uri(uri)
    except Exception:  # noqa: BLE001
        return None
    if parsed.driver == "sim":
        from ..drivers.sim.caps import CAPABILITIES_XML
        from ..drivers.sim.rawread import store_fingerprint
        from ..fileio import state_root

        name = parsed.path.strip("/") or "default"
        if parsed.host or parsed.transport or "/" in name or name in (".", ".."):
            return None
        found = store_fingerprint(state_root(env) / "sim" / name)
        return None if found is None else (CAPABILITIES_XML, found)
    return _read_libvirt(uri, env, readonly=readonly)


def _read_libvirt(uri: str, env: Mapping[str, str], *,
                  readonly: bool) -> tuple[str, str] | None:
    from ..drivers.libvirt.deadline import Deadline, call_timeout, remote
    from ..drivers.libvirt.reads import READERS, RawReader
    from ..drivers.snapshot import fingerprint

    if remote(uri):
        return None  # keepalive and the event loop: the driver's business
    try:
        import libvirt
    except ImportError:
        return None
    libvirt.registerErrorHandler(lambda _c, _e: None, None)  # no messages on stderr

    def read() -> tuple[str, str]:
        conn = libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
        try:
            in_process = uri.startswith("test:")
            caps = str(conn.getCapabilities())
            domains, networks = RawReader(libvirt, conn, 1 if in_process else READERS) \
                .read_records()
            return caps, fingerprint(domains, networks)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    try:
        return Deadline(uri, call_timeout(None, env)).run(f"read {uri}", read)
    except Exception:  # noqa: BLE001 - any fault: the full path meets it and says so
        return None


def _load(path: Path) -> dict[str, Any] | None:
    from ..fileio import read_private

    try:
        data = json.loads(read_private(path))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def replay(argv: Sequence[str], out: IO[str], err: IO[str],
           env: Mapping[str, str]) -> int | None:
    """Print what the recorded full run printed and return its exit status, when every
    input is as it was; None (nothing printed) otherwise, and on any fault of its own
    (the full path then runs, and meets and reports whatever it was)."""
    try:
        found = _recorded_answer(argv, out, err, env)
    except Exception:  # noqa: BLE001 - never worse than the full path
        return None
    if found is None:
        return None
    text, errors, code = found
    out.write(text)
    out.flush()
    err.write(errors)
    err.flush()
    return code


def _recorded_answer(argv: Sequence[str], out: IO[str], err: IO[str],
                     env: Mapping[str, str]) -> tuple[str, str, int] | None:
    folder = _folder(env)
    if folder is None:
        return None
    run = run_key(argv, env, _ttys(out, err))
    record = _load(folder / f"{run}.json")
    if record is None:
        return None
    try:
        uri, paths, readonly = str(record["uri"]), list(record["paths"]), bool(record["readonly"])
        recorded, text, errors, code = (str(record["inputs"]), str(record["out"]),
                                        str(record["err"]), int(record["code"]))
    except (KeyError, TypeError, ValueError):
        return None
    with _lock(uri, env, readonly=readonly) as held:
        if not held or pending(uri, env):  # under the lock, as the full path looks
            return None
        # The host is read on a thread of its own (its calls wait on libvirtd, the GIL
        # released) while the spec files are hashed here.
        host = _Background(read_host, uri, env, readonly=readonly)
        files = _files_digest(paths)
        apply_set = _apply_set(paths) if files is not None else None
        found = host.result()
    if files is None or apply_set is None or found is None:
        return None
    if inputs_key(run, uri, files, apply_set, *found) != recorded:
        return None
    return text, errors, code


def _ttys(*streams: IO[str]) -> list[bool]:
    out = []
    for stream in streams:
        try:
            out.append(bool(stream.isatty()))
        except (AttributeError, ValueError):
            out.append(False)
    return out


class _Background:
    """`call(*args, **kwargs)` on a daemon thread; `result()` waits for it (None when
    it raised: the full path meets the fault and reports it)."""

    def __init__(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        import threading

        self._value: Any = None
        self._thread = threading.Thread(target=self._run, args=(call, args, kwargs),
                                        name="virtctl-noop-read", daemon=True)
        self._thread.start()

    def _run(self, call: Callable[..., Any], args: Any, kwargs: Any) -> None:
        with contextlib.suppress(Exception):
            self._value = call(*args, **kwargs)

    def result(self) -> Any:
        self._thread.join()
        return self._value


@contextlib.contextmanager
def _lock(uri: str, env: Mapping[str, str], *, readonly: bool) -> Iterator[bool]:
    """The host lock the full path would hold (none for a read-only verb), without
    waiting: held by another run, False (the full path waits for it and says so)."""
    if readonly:
        yield True
        return
    from ..coord.hostlock import host_lock
    from ..errors import VirtctlError
    from ..fileio import state_root

    held = contextlib.ExitStack()
    try:
        held.enter_context(host_lock(uri, state_root(env), timeout=0,
                                     command="virtctl apply"))
    except (VirtctlError, OSError):
        yield False
        return
    with held:
        yield True


class _Tee:
    """A text stream that keeps a copy of what is written through it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class Recorder:
    """One full run of `apply` or `diff`, watched: commands.py reports what it planned
    from (`seen`) and whether it qualifies (`finish`), then `save` keeps the record."""

    def __init__(self, argv: Sequence[str], out: IO[str], err: IO[str],
                 env: Mapping[str, str]) -> None:
        self.argv, self.env = list(argv), env
        self.out, self.err = _Tee(out), _Tee(err)
        self.seen: list[tuple[str, str, bool]] = []
        self.outcome: dict[str, Any] | None = None
        self.files_before: dict[tuple[str, ...], str | None] = {}

    def observe(self, fingerprint: str, caps: str, storage: bool) -> None:
        self.seen.append((fingerprint, caps, storage))

    def loading(self, paths: Sequence[str]) -> None:
        """Called before the loader reads `paths`: their key then, compared after."""
        self.files_before[tuple(paths)] = _files_digest(paths)

    def finish(self, *, uri: str, paths: Sequence[str], readonly: bool, eligible: bool,
               apply_set: str | None) -> None:
        self.outcome = {"uri": uri, "paths": list(paths), "readonly": readonly,
                        "eligible": eligible, "apply_set": apply_set}

    def save(self, code: int) -> None:
        outcome = self.outcome
        if code != 0 or outcome is None or not outcome["eligible"] or len(self.seen) != 1:
            return
        live, caps, storage = self.seen[0]
        paths = outcome["paths"]
        if storage or not live:
            return
        files = _files_digest(paths)
        if files is None or self.files_before.get(tuple(paths)) != files:
            return  # a spec changed while the run read it: nothing to vouch for
        apply_set = _apply_set(paths)
        if outcome["apply_set"] is not None and outcome["apply_set"] != apply_set:
            return
        folder = _folder(self.env)
        if folder is None:
            return
        run = run_key(self.argv, self.env, _ttys(self.out.stream, self.err.stream))
        record = {"uri": outcome["uri"], "paths": paths, "readonly": outcome["readonly"],
                  "inputs": inputs_key(run, outcome["uri"], files, apply_set, caps, live),
                  "out": "".join(self.out.parts), "err": "".join(self.err.parts),
                  "code": code}
        from ..fileio import private_dir, write_atomic

        with contextlib.suppress(OSError):
            private_dir(folder)
            write_atomic(folder / f"{run}.json", json.dumps(record).encode())
            _trim(folder, KEEP)


# Records kept per cache folder: one per distinct command line and environment, so a
# handful in practice; a CI runner varying its argv or env must not fill the disk.
KEEP = 200


def _trim(folder: Path, keep: int) -> None:
    """Delete the oldest records (by mtime) beyond `keep`: a record lost only costs one
    full run."""
    entries = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".json"):
            with contextlib.suppress(OSError):
                entries.append((entry.stat().st_mtime_ns, entry.path))
    if len(entries) <= keep:
        return
    entries.sort()
    for _, path in entries[:len(entries) - keep]:
        with contextlib.suppress(OSError):
            os.unlink(path)


# The recorder of this process's run, when entry.py started one (None: tests calling
# commands.main directly, watch, every other verb).
CURRENT: list[Recorder] = []


def recorder() -> Recorder | None:
    return CURRENT[0] if CURRENT else None


def run(argv: Sequence[str], full: Callable[..., int]) -> int:
    """`virtctl apply|diff ...` as a process: the record's answer if it holds, else the
    full path (`full(argv, out=..., err=...)`), recorded when it qualifies."""
    env = os.environ
    code = replay(argv, sys.stdout, sys.stderr, env)
    if code is not None:
        if env.get("VIRTCTL_FASTPATH_DEBUG"):  # tests: which path ran, and its imports
            sys.stderr.write("virtctl-debug: no-op fast path, virtctl.model imported: "
                             f"{'virtctl.model' in sys.modules}\n")
        return code
    rec = Recorder(argv, sys.stdout, sys.stderr, env)
    CURRENT.append(rec)
    try:
        code = full(argv, out=rec.out, err=rec.err)
    finally:
        CURRENT.clear()
    with contextlib.suppress(Exception):  # a record not kept: the next run is full again
        rec.save(code)
    return code
