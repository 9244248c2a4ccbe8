"""`Plan`: what the planner decided (actions, classified changes, restarts, pending
restarts, objects found in sync) and `Pending`. Its own module so virtctl.api returns the
empty plan of a run found in sync (reconciler/memo.py) without importing the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...model import Kind, ObjectKey
from .actions import Action, Shutdown, Start
from .diff import FieldChange


@dataclass(frozen=True, slots=True)
class Pending:
    """An object whose running instance lags its definition and that virtctl may not
    restart: the restart-class changes it waits for."""

    key: ObjectKey
    changes: tuple[FieldChange, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()
    creates: frozenset[ObjectKey] = field(default_factory=frozenset)
    deletes: frozenset[ObjectKey] = field(default_factory=frozenset)
    restarts: frozenset[ObjectKey] = field(default_factory=frozenset)  # running, restarted
    recreates: frozenset[ObjectKey] = field(default_factory=frozenset)
    # Every classified field change (definition and runtime) of each object, plan order.
    changes: tuple[tuple[ObjectKey, tuple[FieldChange, ...]], ...] = ()
    pending: tuple[Pending, ...] = ()
    # sync_key of every object found in sync (see memo.py), for the next run to skip.
    in_sync: frozenset[str] = field(default_factory=frozenset)
    # (key, DomainSet) of the objects touched that are a set's instances (members.py),
    # removals included: output names the set for every one.
    members: tuple[tuple[ObjectKey, str], ...] = ()
    # (key, why) of each guest whose change failed its health gate and was rolled back:
    # not made again until its spec changes (checkpoint/planning.py hold); a failure.
    held: tuple[tuple[ObjectKey, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.actions

    def held_of(self, key: ObjectKey) -> str | None:
        return next((why for k, why in self.held if k == key), None)

    def keys(self) -> list[ObjectKey]:
        """Objects the plan touches, in plan order."""
        seen: dict[ObjectKey, None] = {}
        for action in self.actions:
            seen.setdefault(action.key, None)
        return list(seen)

    def changes_of(self, key: ObjectKey) -> tuple[FieldChange, ...]:
        return next((c for k, c in self.changes if k == key), ())

    def pending_of(self, key: ObjectKey) -> Pending | None:
        return next((p for p in self.pending if p.key == key), None)

    def member_map(self) -> dict[ObjectKey, str]:
        return dict(self.members)

    @property
    def stops(self) -> frozenset[ObjectKey]:
        """Running guests the plan stops and does not start again (delete, prune,
        `state: shutoff`, a recreate that leaves it off); `restarts` are the others."""
        stopped = {a.key for a in self.actions if isinstance(a, Shutdown)}
        started = {a.key for a in self.actions if isinstance(a, Start)}
        return frozenset(k for k in stopped - started if k.kind is Kind.DOMAIN)
