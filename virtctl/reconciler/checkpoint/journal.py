"""The crash journal: what a run is in the middle of, for the next run to finish.

One JSON file per guest under <state dir>/checkpoints/<host URI>/, written (atomically,
fsync'd) before the checkpoint is taken and updated at each stage, removed once the
health gate has given its verdict (or the rollback is done). A run killed anywhere in
between leaves it, and the next `apply` on that host reads it first (recover.py).

Decision: the journal lives in the state directory of the machine running virtctl, not
in the guest's metadata, because every redefinition of the change replaces the guest's
metadata and a revert restores the old one; the checkpoint's own record (commit, time,
definition) is in the snapshot, which survives both.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, unquote

from ...errors import ErrorCode, ErrorDomain, VirtctlError
from ...fileio import private_dir, read_private, write_atomic
from ...checkpoints import Failure, Health


class Stage(StrEnum):
    CHECKPOINT = "checkpoint"  # about to take the checkpoint (it may not exist)
    CHANGING = "changing"  # checkpoint taken; the change is being made
    GATE = "gate"  # the change is made; waiting for the guest to be healthy
    ROLLBACK = "rollback"  # the gate failed; restoring the checkpoint


@dataclass(frozen=True, slots=True)
class Entry:
    guest: str
    uuid: str
    checkpoint: str
    stage: Stage
    target: str  # the spec-hash the change defines
    running: bool  # the guest is to run after the change (a gate follows)
    health: Health | None
    rollback: bool  # roll back on a failed gate (not with --no-rollback)
    started: str  # ISO time the checkpoint was begun
    digest: str = ""  # the guest's spec digest (model.spec_digest): what a Failure keys

    def at(self, stage: Stage) -> Entry:
        return replace(self, stage=stage)


def journal_root(env: Mapping[str, str]) -> Path:
    from ...fileio import state_root

    return state_root(env) / "checkpoints"


class Journal:
    """The journal entries of one host."""

    def __init__(self, uri: str, env: Mapping[str, str] | None = None) -> None:
        self.folder = journal_root(os.environ if env is None else env) / quote(uri, safe="")

    def _path(self, guest: str) -> Path:
        return self.folder / (quote(guest, safe="") + ".json")

    def _failed(self, guest: str) -> Path:
        return self.folder / "failed" / (quote(guest, safe="") + ".json")

    def _save(self, path: Path, data: dict[str, object]) -> None:
        try:
            state = self.folder.parent.parent
            if not os.path.exists(state):  # a libvirt-only user has none yet
                state.mkdir(parents=True, exist_ok=True)
            private_dir(state, follow=True)  # the user may have named a symlink
            private_dir(self.folder.parent)
            private_dir(self.folder)
            if path.parent != self.folder:
                private_dir(path.parent)
            write_atomic(path, json.dumps(data, sort_keys=True).encode(), fsync=True)
        except OSError as exc:  # nothing is changed without its journal
            raise VirtctlError(f"cannot write the checkpoint journal {path}: "
                               f"{exc.strerror or exc}", code=ErrorCode.OPERATION_FAILED,
                               domain=ErrorDomain.APPLIER) from None

    def write(self, entry: Entry) -> None:
        data = asdict(entry)
        data["stage"] = str(entry.stage)
        self._save(self._path(entry.guest), data)

    # -- changes held back after a failed gate ----------------------------------------

    def fail(self, failure: Failure) -> None:
        self._save(self._failed(failure.guest), asdict(failure))

    def forget_failure(self, guest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._failed(guest))

    def failures(self) -> dict[str, Failure]:
        """Every guest's recorded failure on this host (damaged records are skipped)."""
        folder = self.folder / "failed"
        if not folder.is_dir():
            return {}
        out = {}
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                data = json.loads(read_private(folder / name))
                failure = Failure(**{k: str(data[k]) for k in Failure.__dataclass_fields__})
            except (OSError, ValueError, KeyError, TypeError):
                continue
            out[failure.guest] = failure
        return out

    def clear(self, guest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(guest))

    def get(self, guest: str) -> Entry | None:
        try:
            data = json.loads(read_private(self._path(guest)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged entry: the write is atomic, so not one of ours
        health = data.get("health")
        return Entry(guest=data["guest"], uuid=data["uuid"], checkpoint=data["checkpoint"],
                     stage=Stage(data["stage"]), target=data["target"],
                     running=bool(data["running"]),
                     health=Health(**health) if isinstance(health, dict) else None,
                     rollback=bool(data.get("rollback", True)), started=data["started"],
                     digest=str(data.get("digest", "")))

    def entries(self) -> Iterator[Entry]:
        if not self.folder.is_dir():
            return
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".json") and not name.startswith("."):
                entry = self.get(unquote(name[: -len(".json")]))
                if entry is not None:
                    yield entry
