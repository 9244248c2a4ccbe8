"""The plan actions of checkpoints and the health gate. Pure data, like every action
(reconciler/actions.py): one driver operation each, keyed by the guest they act on.

They are placed by the post-pass in planning.py, not by the phase table: a checkpoint
goes right after the stop phase (the guest is off, so its disks are consistent) or,
with memory state asked for, first of all; a health gate goes last.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..plan.actions import BaseAction, Phase
from ...checkpoints import Health


@dataclass(frozen=True, slots=True, kw_only=True)
class TakeCheckpoint(BaseAction):
    """Snapshot the guest (definition + qcow2 disks, internal; memory when `memory`)
    and open its crash journal; then delete virtctl's oldest checkpoints beyond `keep`.
    `target` is the spec-hash the change defines (the journal says what was wanted);
    `running`: the guest is to run afterwards (a gate follows); `health`: its gate;
    `digest`: the spec's digest, which a failed change is remembered by (`Failure`)."""

    commit: str = ""
    memory: bool = False
    keep: int = 5
    target: str = ""
    digest: str = ""
    running: bool = True
    health: Health | None = None
    rollback: bool = True

    @property
    def verb(self) -> str:
        return "checkpoint"

    @property
    def phase(self) -> Phase:
        return Phase.DOMAIN_STOP


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthGate(BaseAction):
    """Wait until the guest runs and is healthy; on timeout roll back to the checkpoint
    this run took (unless `rollback` is off) and fail. Not `checkpointed`: the guest
    declares `health:` but no checkpoint was asked for; a failure is only reported."""

    health: Health
    rollback: bool = True
    checkpointed: bool = True
    after_failure: bool = True  # run even when the change before it failed (applier)

    @property
    def verb(self) -> str:
        return "health-gate"

    @property
    def phase(self) -> Phase:
        return Phase.DOMAIN_PAUSE


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseJournal(BaseAction):
    """The change needs no gate (the guest stays off): close the journal the
    checkpoint opened."""

    @property
    def verb(self) -> str:
        return "close-journal"

    @property
    def phase(self) -> Phase:
        return Phase.DOMAIN_PAUSE


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback(BaseAction):
    """Restore checkpoint `checkpoint` (definition and disks; memory state if it has
    it), then start the guest when `start`. `virtctl rollback` and recovery plan it."""

    checkpoint: str
    start: bool = True

    @property
    def verb(self) -> str:
        return "rollback"

    @property
    def phase(self) -> Phase:
        return Phase.DOMAIN_STOP


@dataclass(frozen=True, slots=True, kw_only=True)
class DropCheckpoints(BaseAction):
    """Before a guest is undefined: delete virtctl's checkpoints (`keep_data` False: its
    volumes' deletePolicy is delete) or forget libvirt's records of them and leave their
    data in the retained qcow2 volumes (`keep_data`)."""

    keep_data: bool = True

    @property
    def verb(self) -> str:
        return "drop-checkpoints" if not self.keep_data else "forget-checkpoints"

    @property
    def phase(self) -> Phase:
        return Phase.DOMAIN_STOP


CheckpointAction = TakeCheckpoint | HealthGate | CloseJournal | Rollback | DropCheckpoints
