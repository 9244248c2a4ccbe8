"""virtctl's Python API: everything the CLI does, as functions.

The phases compose here and nowhere else:
`load -> connect -> snapshot -> check -> plan -> apply -> verify`.

    from virtctl import api
    desired = api.load(["specs/"])
    with api.connect("sim:///lab") as driver:
        result = api.reconcile(desired, driver, policy=api.Policy(prune=True))
    print(result.report.return_code)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from . import drivers
from .capabilities import HostCapabilities, parse_capabilities
from .drivers.base import Driver, Reader
from .errors import SpecErrors
from .model import Desired, Live
from .reconciler.apply import Clock, Progress, Report
from .reconciler.apply import apply as apply_plan
from .reconciler.load import load_specs
from .reconciler.plan import Plan, Policy, plan_delete
from .reconciler.plan import plan as make_plan
from .reconciler.speccache import SpecCache, cache_dir
from .reconciler.validate import check_host

__all__ = [
    "Desired", "Live", "Plan", "Policy", "Report", "Result", "apply", "check", "connect",
    "delete", "load", "make_plan", "plan", "reconcile", "replan",
]


def load(
    paths: Sequence[str], *, stdin: IO[str] | None = None, use_cache: bool = True
) -> Desired:
    """Load and validate spec files and directories ('-' is stdin).

    Unchanged files are read back from the spec cache (see reconciler/speccache.py)."""
    folder = cache_dir(os.environ) if use_cache else None
    return load_specs(paths, stdin=stdin, cache=SpecCache(folder))


@contextlib.contextmanager
def connect(uri: str | None = None, *, readonly: bool = False) -> Iterator[Driver]:
    driver = drivers.connect(uri, readonly=readonly)
    try:
        yield driver
    finally:
        driver.close()


def check(
    desired: Desired, reader: Reader, *, policy: Policy = Policy()
) -> tuple[Live, HostCapabilities]:
    """Check specs against the host; raise SpecErrors. Returns the snapshot and
    capabilities it used."""
    live = reader.snapshot()
    caps = parse_capabilities(reader.capabilities())
    errors = check_host(desired, live, caps, adopt=policy.adopt, prune=policy.prune)
    if errors:
        raise SpecErrors(errors)
    return live, caps


def plan(desired: Desired, reader: Reader, *, policy: Policy = Policy()) -> Plan:
    """Check, then plan against the host's current state. Changes nothing."""
    live, caps = check(desired, reader, policy=policy)
    return make_plan(desired, live, policy=policy, caps=caps)


def replan(desired: Desired, reader: Reader, *, policy: Policy = Policy()) -> Plan:
    """Plan again after applying (verification): what still differs. No checks."""
    caps = parse_capabilities(reader.capabilities())
    return make_plan(desired, reader.snapshot(), policy=policy, caps=caps)


def apply(
    plan: Plan, driver: Driver, *, progress: Progress | None = None, clock: Clock = Clock()
) -> Report:
    return apply_plan(plan, driver, progress=progress, clock=clock)


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    report: Report
    remaining: Plan  # a fresh plan after applying: empty when the host matches the specs

    @property
    def return_code(self) -> int:
        if self.report.return_code:
            return self.report.return_code
        return 1 if not self.remaining.empty else 0


def reconcile(
    desired: Desired,
    driver: Driver,
    *,
    policy: Policy = Policy(),
    progress: Progress | None = None,
    clock: Clock = Clock(),
) -> Result:
    """Plan, apply, then verify by planning again."""
    planned = plan(desired, driver, policy=policy)
    report = apply_plan(planned, driver, progress=progress, clock=clock)
    if planned.empty:
        return Result(planned, report, planned)
    return Result(planned, report, replan(desired, driver, policy=policy))


def delete(
    desired: Desired,
    driver: Driver,
    *,
    policy: Policy = Policy(),
    dry_run: bool = False,
    progress: Progress | None = None,
    clock: Clock = Clock(),
) -> Result:
    """Stop and undefine the managed objects the specs name."""
    planned = plan_delete(desired, driver.snapshot(), policy=policy)
    if dry_run:
        return Result(planned, Report(), planned)
    report = apply_plan(planned, driver, progress=progress, clock=clock)
    remaining = plan_delete(desired, driver.snapshot(), policy=policy)
    return Result(planned, report, remaining)
