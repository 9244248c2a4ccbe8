"""The planner's hook (api.py calls it after planning): read what the pure post-pass
needs (the changes that failed their gate before, from this host's journal; which
guests the plan undefines have virtctl checkpoints: one listing per such guest), then
guard the plan (planning.py)."""

from __future__ import annotations

from typing import Any

from ...errors import DriverError
from ...model import Desired, Live
from ..plan.planned import Plan
from ..plan.policy import Policy
from .journal import Journal
from .planning import drop_before_undefine, guard, undefined_guests


def guarded(planned: Plan, desired: Desired, reader: Any, live: Live, policy: Policy) -> Plan:
    failures = Journal(reader.uri).failures() if planned.actions else {}
    return dropped(guard(planned, desired, live, policy, failures), desired, reader, live)


def dropped(planned: Plan, desired: Desired, reader: Any, live: Live) -> Plan:
    """`planned` with virtctl's checkpoints of each guest it undefines dropped first."""
    names = undefined_guests(planned)
    if not names:
        return planned
    has: dict[str, bool] = {}
    for name in names:
        try:
            has[name] = any(s.ours for s in reader.snapshots(name))
        except DriverError:
            has[name] = False  # a driver without snapshots, or the guest just went
    return drop_before_undefine(planned, live, desired, has)
