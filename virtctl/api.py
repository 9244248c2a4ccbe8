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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO

from . import drivers
from .capabilities import HostCapabilities, parse_capabilities
from .drivers.base import Driver, Reader
from .drivers.sim import state_root
from .errors import SpecErrors, VirtctlError
from .hosts import group_by_host, host_lock, run_per_host
from .model import Desired, Live
from .reconciler.apply import Clock, Progress, Report
from .reconciler.apply import apply as apply_plan
from .reconciler.load import load_specs
from .reconciler.plan import Plan, Policy, plan_delete
from .reconciler.plan import plan as make_plan
from .reconciler.speccache import SpecCache, cache_dir
from .reconciler.validate import check_host
from .uri import default_uri

__all__ = [
    "Desired", "HostRun", "Live", "Plan", "Policy", "Report", "Result", "apply", "check",
    "connect", "delete", "load", "make_plan", "plan", "reconcile", "replan", "run_hosts",
    "split_hosts",
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


# -- many hosts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostRun:
    """One host's part of a run over several hosts: its result, or why it failed."""

    uri: str
    result: Result | None = None
    error: VirtctlError | None = None

    @property
    def return_code(self) -> int:
        if self.error is not None or self.result is None:
            return 1
        return self.result.return_code


def split_hosts(desired: Desired, uri: str | None = None) -> dict[str, Desired]:
    """The specs grouped by the host they target (`connect:`), keyed by URI.

    Specs without `connect:` go to `uri` (else the default connection). Every host named
    in a `kind: Hosts` document is included even when no spec targets it, so `--prune`
    still empties it."""
    default = default_uri(uri, os.environ)
    groups = group_by_host(desired, default_uri=default, aliases=desired.hosts)
    for alias in desired.hosts.values():
        groups.setdefault(alias.uri, replace(desired, domains={}, networks={}))
    return groups


def run_hosts(
    groups: Mapping[str, Desired],
    work: Callable[[Desired, Driver], Result],
    *,
    readonly: bool = False,
    parallel: int = 4,
) -> list[HostRun]:
    """`work(desired, driver)` for every host, concurrently (at most `parallel`), each
    writing run holding that host's lock; an unreachable host fails only itself."""
    root = state_root(os.environ)

    def one(uri: str, desired: Desired) -> Result:
        with contextlib.ExitStack() as stack:
            if not readonly:
                stack.enter_context(host_lock(uri, root))
            driver = stack.enter_context(connect(uri, readonly=readonly))
            return work(desired, driver)

    outcomes = run_per_host(groups, one, parallel=parallel)
    return [HostRun(o.uri, result=o.value, error=o.error) for o in outcomes]
