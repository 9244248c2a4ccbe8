"""`Policy`: the options of one run that the planner and the applier obey (prune,
adopt, restarts, live changes, apply sets, ...). Its own module, with no imports, so
virtctl.api and the CLI name it without importing the planner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    prune: bool = False
    adopt: bool = False
    shutdown_timeout: float = 60.0  # unless a spec sets shutdownTimeout
    force_stop: bool = False  # destroy a guest that ignores shutdown (state: shutoff, restarts)
    commit: str = ""  # git commit the specs come from, recorded in the ownership mark
    allow_restart: bool = False  # restart objects whose spec sets no updatePolicy
    live: bool = True  # apply live what the host can (--no-live: only at the next boot)
    detach_timeout: float = 30.0  # seconds a guest may take to release a detached device
    force_detach: bool = False  # detach a disk the guest agent says is mounted (guestagent.py)
    allow_recreate: bool = False  # replace volumes (their data is lost) when format,
    # backing store or content change
    apply_set: str = ""  # the set this run applies: marked on what it defines; --prune
    # deletes only this set's objects (and those of `prune_sets`)
    prune_all: bool = False  # --prune-all: lift the PRUNE_LIMIT count limit (and the
    # refusal of empty specs); never widens the scope beyond the sets above
    prune_sets: tuple[str, ...] = ()  # --prune-set NAME: other sets this run's --prune
    # may reach, each named explicitly ("" names marks older than sets); sorted, so the
    # policy's repr (part of the memo's context) is the same in every process
    selector: str = ""  # -l: --prune reaches only managed objects whose recorded labels
    # (owner mark, storage record) match it (selectors.py)
    protected: tuple[str, ...] = ()  # "kind/name" declared by specs the selector left
    # out (on any host): never pruned, whatever their recorded labels; sorted
    checkpoint: bool | None = None  # --checkpoint / --no-checkpoint; None: each spec's
    # updatePolicy.checkpoint (virtctl/reconciler/checkpoint/, docs/checkpoints.md)
    rollback: bool = True  # --no-rollback: a guest failing its health gate is left as is
    retry_failed: bool = False  # --retry-failed: make again a change that failed its
    # health gate and was rolled back (else held back until its spec changes)

    @property
    def pruned_sets(self) -> frozenset[str]:
        """Every apply set --prune reaches: this run's and those it names."""
        return frozenset((*self.prune_sets, self.apply_set))
