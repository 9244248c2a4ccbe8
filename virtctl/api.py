"""virtctl's Python API: everything the CLI does, as functions.

The phases compose here and nowhere else:
`load -> connect -> snapshot -> check -> plan -> apply -> verify`.

    from virtctl import api
    desired = api.load(["specs/"])
    with api.connect("sim:///lab") as driver:
        result = api.reconcile(desired, driver, policy=api.Policy(prune=True, apply_set="lab"))
    print(result.report.return_code)

`Policy.apply_set` is the set this run marks and prunes (the CLI's `--set`, else
`gitinfo.default_set(paths).name`); left empty, it is the set of objects applied without
one, and of marks and storage records older than sets. --prune never reaches beyond it
and `Policy.prune_sets`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

# Imported when this module is: only what every run needs before it knows whether there
# is anything to do. The loader, the planner, the applier, storage, a driver and yaml
# are imported by the function that needs them (a no-op re-apply whose memo matches
# imports no planner; `get` no loader; tests/unit/test_layout.py checks it).
from . import drivers
from .drivers.base import Driver, Reader
from .errors import DriverError, ErrorCode, SpecError, SpecErrors, VirtctlError
from .coord.hosts import HostOutcome, group_by_host, run_per_host
from .model import Desired, Live, VolumeSpec
from .reconciler.apply.clock import Clock
from .reconciler.apply.report import Report
from .reconciler.memo import context_of, host_key, memo_for
from .reconciler.plan.planned import Plan
from .reconciler.plan.policy import Policy
from .reconciler.speccache import SpecCache, SyncMemo, cache_dir, code_fingerprint
from .uri import default_uri
from virtctl.reconciler.trees import running_tree

if TYPE_CHECKING:
    from .capabilities import GuestRequest, HostCapabilities
    from .coord.backend import HostLocks
    from .reconciler.apply.apply import Guard, Progress
    from .reconciler.load.placement import HostFacts
    from .reconciler.plan.plan_storage import StorageView

__all__ = [
    "Desired", "HostRun", "Live", "Plan", "Policy", "Report", "Result", "apply",
    "check", "check_files", "fetch_content",
    "connect", "delete", "load", "plan_deletion", "plan", "reconcile", "replan",
    "make_plan",  # noqa: F822 (module __getattr__ below)
    "read_placement_facts", "run_hosts",
    "split_hosts",
]


def __getattr__(name: str) -> Any:
    """`make_plan` (the planner itself, `plan(desired, live, policy=...)`), imported on
    first use like the rest of the planner."""
    if name == "make_plan":
        from .reconciler.plan.plan import plan as make_plan

        globals()["make_plan"] = make_plan
        return make_plan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(
    paths: Sequence[str], *, stdin: IO[str] | None = None, use_cache: bool = True,
    place: bool = True, call_timeout: float | None = None,
) -> Desired:
    """Load and validate spec files and directories ('-' is stdin).

    Unchanged files are read back from the spec cache (see reconciler/speccache.py).
    DomainSets are placed with their hosts' facts (read-only reads: where their
    instances live, node memory; `read_placement_facts`), so existing instances stay
    where they are, as `apply` and `watch` place them. `place=False` reads no host
    (an offline validate or render): sets are placed as on empty hosts, which can
    differ from where their instances live, so such a Desired is for showing, not for
    applying."""
    from .reconciler.load.load import load_specs

    folder = cache_dir(os.environ) if use_cache else None

    def facts(asked: Mapping[str, bool]) -> Mapping[str, HostFacts | str]:
        return read_placement_facts(asked, call_timeout=call_timeout)

    return load_specs(paths, stdin=stdin, cache=SpecCache(folder),
                      placement=facts if place else None)


def read_placement_facts(asked: Mapping[str, bool], *, call_timeout: float | None = None,
                         parallel: int = 4) -> dict[str, HostFacts | str]:
    """Facts per host URI of `asked` (URI -> whether its node facts are needed), or why
    the host could not be read: reconciler/placefacts.py, which the watcher uses too.

    Side effects: one read-only connection per host, concurrently (bounded). For each
    host: the managed guests that carry a `domainset` label (where each set's instances
    live, from the owner mark), and, where `placement: memory` asks for it, the node's
    memory, free memory and cpus (`Reader.node_info`). The loader refuses the sets that
    place on a host that cannot be read (loadset.place_sets)."""
    from .reconciler.placefacts import read_placement_facts as read

    return read(asked, call_timeout=call_timeout, parallel=parallel)


@contextlib.contextmanager
def connect(uri: str | None = None, *, readonly: bool = False,
            call_timeout: float | None = None) -> Iterator[Driver]:
    """A connection for the block (`call_timeout`: see drivers.connect)."""
    driver = drivers.connect(uri, readonly=readonly, call_timeout=call_timeout)
    try:
        yield driver
    finally:
        driver.close()


def check(
    desired: Desired, reader: Reader, *, policy: Policy = Policy()
) -> tuple[Live, HostCapabilities]:
    """Check specs against the host; raise SpecErrors. Returns the snapshot and
    capabilities it used."""
    from .capabilities import parse_capabilities
    from .reconciler.load.validate import check_devices, check_host
    from .reconciler.plan.plan_storage import check_storage

    live = reader.snapshot()
    caps = parse_capabilities(reader.capabilities())
    errors = check_host(desired, live, caps, adopt=policy.adopt, prune=policy.prune,
                        prune_sets=policy.pruned_sets, selector=policy.selector,
                        protected=policy.protected)
    errors += check_devices(desired.domains.values(), _domcaps(reader))
    storage = _storage(desired, reader, policy, live)
    if storage is not None:
        errors += check_storage(desired, storage, adopt=policy.adopt)
    if errors:
        raise SpecErrors(errors)
    return live, caps


def check_files(desired: Desired) -> list[SpecError]:
    """Every local content file the specs name, read and hashed against its checksum
    (`validate`; a plan hashes the ones it will upload)."""
    from .reconciler.apply.contentcheck import check_content

    return check_content(desired.volumes.values())


Seen = Callable[[str, str, bool], None]


def plan(desired: Desired, reader: Reader, *, policy: Policy = Policy(),
         seen: Seen | None = None) -> Plan:
    """Check, then plan against the host's current state. Changes the host in no way.

    Objects found in sync by an earlier run with exactly the same inputs (spec, live
    state, policy, capabilities, virtctl's code) are not compared again (see
    reconciler/memo.py); the memo lives in the cache directory, per host. `seen` hears
    what the plan was made from: the snapshot's fingerprint, the capabilities XML and
    whether storage was read (the CLI's no-op fast path records them, cli/noop.py)."""
    return _memoized_plan(desired, reader, policy, check=True, seen=seen)


def replan(desired: Desired, reader: Reader, *, policy: Policy = Policy()) -> Plan:
    """Plan again after applying (verification): what still differs. No checks."""
    return _memoized_plan(desired, reader, policy, check=False)


def _memoized_plan(desired: Desired, reader: Reader, policy: Policy, *, check: bool,
                   seen: Seen | None = None) -> Plan:
    live = reader.snapshot()
    caps_xml = reader.capabilities()
    store = SyncMemo(cache_dir(os.environ), reader.uri)
    live_ops = reader.live_ops()
    # Storage is read only where specs declare some or pruning may remove some; its
    # digest joins the context, so the whole-host memo below never hides a change.
    storage = _storage(desired, reader, policy, live)
    if seen is not None:
        seen(live.fingerprint, caps_xml, storage is not None)
    if storage is not None:
        from .reconciler.plan.plan_storage import storage_digest
    context = context_of(repr((replace(policy, commit=""), sorted(live_ops),
                               storage_digest(storage.storage) if storage else "",
                               sorted((k, storage_digest(v.storage))
                                      for k, v in storage.dormant.items()) if storage else (),
                               sorted(storage.backing_files.items()) if storage else ())),
                         caps_xml, code_fingerprint())
    whole = host_key(desired, live, context=context)
    if whole is not None and store.host_in_sync(whole):
        return Plan()  # checked and found in sync before, with exactly these inputs
    # Something to compare: only now the planner and the checks are imported.
    from .capabilities import parse_capabilities
    from .reconciler.apply.contentcheck import check_content
    from .reconciler.load.validate import check_devices, check_host
    from .reconciler.plan.plan_storage import check_storage

    # Through the module attribute, so a caller (or test) that replaced api.make_plan
    # is the one asked.
    make_plan = globals().get("make_plan") or __getattr__("make_plan")
    caps = parse_capabilities(caps_xml)
    memo = memo_for(desired, live, context=context, known=store.load())
    if check:
        verified = memo.verified()
        errors = check_host(desired, live, caps, adopt=policy.adopt, prune=policy.prune,
                            verified=verified, prune_sets=policy.pruned_sets,
                            selector=policy.selector, protected=policy.protected)
        errors += check_devices((d for d in desired.domains.values() if d.key not in verified),
                                _domcaps(reader))
        if storage is not None:
            errors += check_storage(desired, storage, adopt=policy.adopt)
        if errors:
            raise SpecErrors(errors)
    planned = make_plan(desired, live, policy=policy, caps=caps, memo=memo, live_ops=live_ops,
                        storage=storage)
    planned = _guard_detaches(planned, reader, live, policy)
    # Checkpoints and health gates (docs/checkpoints.md).
    from .reconciler.checkpoint.hooks import guarded

    planned = guarded(planned, desired, reader, live, policy)
    if check:  # the local files this run will upload, hashed before the first action
        content_errors = check_content(_uploads(planned, desired))
        if content_errors:
            raise SpecErrors(content_errors)
    store.save(planned.in_sync, memo.known)
    if check and whole is not None and replace(planned, in_sync=frozenset()) == Plan():
        store.save_host(whole)
    return planned


def _guard_detaches(planned: Plan, reader: Reader, live: Live, policy: Policy) -> Plan:
    """Disks the plan detaches from running guests, checked with each guest's agent
    for mounted filesystems (reconciler/guestagent.py): one agent call per such guest."""
    from .reconciler.apply import guestagent

    detaches = guestagent.disk_detaches(planned)
    if not detaches:
        return planned
    ask = getattr(reader, "guest_filesystems", None)
    mounts: dict[str, dict[str, tuple[str, ...]] | None] = {}
    running: dict[str, Any] = {}
    for name in detaches:
        dom = live.domains.get(name)
        running[name] = running_tree(dom) if dom is not None and dom.running_xml else None
        mounts[name] = None
        if ask is not None and guestagent.has_agent(running[name]):
            with contextlib.suppress(DriverError):
                mounts[name] = ask(name)
    return guestagent.guard_detaches(planned, mounts, force=policy.force_detach,
                                     running=running)


def fetch_content(planned: Plan, desired: Desired) -> None:
    """Download into virtctl's cache (resuming) and verify the URL content `planned`
    will upload, before its first action: a wrong checksum raises SpecErrors naming the
    spec, an unreachable URL a DriverError, and nothing is made (not even the pool).
    Applying only: diff and dry runs download nothing. The upload reads the cached file
    without hashing it again."""
    if planned.empty:
        return
    from .reconciler.apply.applystorage import prefetch
    from .reconciler.apply.contentcheck import content_source
    from .reconciler.plan.actions import CreateVolume

    errors: list[SpecError] = []
    for action in planned.actions:
        content = action.content if isinstance(action, CreateVolume) else None
        if content is None or content.url is None:
            continue
        try:
            prefetch(content)
        except DriverError as exc:
            spec = desired.volumes.get(action.name)
            if exc.code is not ErrorCode.VERIFICATION or spec is None:
                raise
            errors.append(SpecError(f"volume '{action.name}': {exc.message}",
                                    code=ErrorCode.VERIFICATION,
                                    source=content_source(spec, "checksum")))
    if errors:
        raise SpecErrors(errors)


def _uploads(planned: Plan, desired: Desired) -> list[VolumeSpec]:
    from .reconciler.plan.actions import CreateVolume

    return [desired.volumes[a.name] for a in planned.actions
            if isinstance(a, CreateVolume) and a.content is not None
            and a.content.file is not None and a.name in desired.volumes]


def _domcaps(reader: Reader) -> Callable[[GuestRequest], str | None]:
    return lambda want: reader.domain_capabilities(want.dom_type, want.arch, want.machine)


def _storage(desired: Desired, reader: Reader, policy: Policy,
             live: Live | None = None) -> StorageView | None:
    if desired.pools or desired.volumes or policy.prune:
        from .reconciler.apply.storageprobe import probed
        from .reconciler.plan.plan_storage import view

        return probed(desired, reader, view(reader.storage(), live))
    return None


def apply(
    plan: Plan, driver: Driver, *, progress: Progress | None = None, clock: Clock = Clock(),
    guard: Guard | None = None,
) -> Report:
    """Apply `plan`. `guard` is checked before every action (default: the host lock
    `run_hosts` holds for this host, if it is an etcd lock): raising, nothing more runs."""
    if plan.empty:  # nothing to do: the applier is not even imported
        return Report()
    from .reconciler.apply.apply import apply as apply_plan

    return apply_plan(plan, driver, progress=progress, clock=clock,
                      guard=guard or _HELD.get())


# The etcd lock `run_hosts` holds on the host whose actions run in this thread, checked
# by apply/reconcile/delete before each action (a context variable, so that `Execute`
# callbacks need not pass it along).
_HELD: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("held", default=None)


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    report: Report
    remaining: Plan  # a fresh plan after applying: empty when the host matches the specs

    @property
    def return_code(self) -> int:
        if self.report.return_code:
            return self.report.return_code
        # A change held back after a failed health gate is a failure until fixed.
        return 1 if not self.remaining.empty or self.remaining.held or self.plan.held else 0


def reconcile(
    desired: Desired,
    driver: Driver,
    *,
    policy: Policy = Policy(),
    progress: Progress | None = None,
    clock: Clock = Clock(),
) -> Result:
    """Plan, apply, then verify by planning again. A change a killed run left between
    its checkpoint and its health verdict is finished or rolled back first."""
    from .reconciler.checkpoint.recover import recover

    recovered = recover(driver, clock)
    planned = plan(desired, driver, policy=policy)
    if recovered:
        planned = replace(planned, notes=(*recovered, *planned.notes))
    if planned.empty:  # nothing to do: no download, no applier (a no-op run stays light)
        return Result(planned, Report(), planned)
    fetch_content(planned, desired)
    from .reconciler.apply.apply import apply as apply_plan

    report = apply_plan(planned, driver, progress=progress, clock=clock, guard=_HELD.get())
    if report.lost_host or report.lost_lock:  # not asked again (or not ours any more)
        return Result(planned, report, planned)
    return Result(planned, report, replan(desired, driver, policy=policy))


def plan_deletion(desired: Desired, reader: Reader, *, policy: Policy = Policy()) -> Plan:
    """What `delete` would do: stop and undefine the managed objects the specs name."""
    from .reconciler.plan.plan import plan_delete
    from .reconciler.plan.plan_storage import view

    live = reader.snapshot()
    # With the guests: a volume a running guest keeps using is not deleted under it.
    storage = view(reader.storage(), live) if desired.pools or desired.volumes else None
    from .reconciler.checkpoint.hooks import dropped  # a guest's checkpoints go (or stay) first

    return dropped(plan_delete(desired, live, policy=policy, storage=storage), desired,
                   reader, live)


def delete(
    desired: Desired,
    driver: Driver,
    *,
    policy: Policy = Policy(),
    dry_run: bool = False,
    planned: Plan | None = None,
    progress: Progress | None = None,
    clock: Clock = Clock(),
) -> Result:
    """Stop and undefine the managed objects the specs name (per `planned`, if given)."""
    if planned is None:
        planned = plan_deletion(desired, driver, policy=policy)
    if dry_run:
        return Result(planned, Report(), planned)
    from .reconciler.apply.apply import apply as apply_plan
    from .reconciler.plan.plan import plan_delete

    report = apply_plan(planned, driver, progress=progress, clock=clock, guard=_HELD.get())
    if report.lost_host or report.lost_lock:  # not asked again (or not ours any more)
        return Result(planned, report, planned)
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
        groups.setdefault(alias.uri, replace(desired, domains={}, networks={}, pools={},
                                             volumes={}))
    return groups


Prepare = Callable[[Desired, Driver], Plan]
Execute = Callable[[Desired, Driver, Plan], "Result"]


def run_hosts(
    groups: Mapping[str, Desired],
    prepare: Prepare,
    execute: Execute | None = None,
    *,
    readonly: bool = False,
    parallel: int = 4,
    lock_timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    command: str = "virtctl",
    call_timeout: float | None = None,
    coordination: HostLocks | None = None,
) -> list[HostRun]:
    """Plan on every host, then act on every host, concurrently (at most `parallel`).

    Each writing run holds that host's lock from planning to the end (waiting, `on_wait`
    hears who holds it; after `lock_timeout` seconds the host fails; `command` is how
    the lock names this run to others, e.g. "virtctl apply"; a libvirt host that does
    not answer a call within `call_timeout` seconds fails, see drivers.connect). Nothing is applied
    anywhere until every host has been planned: a spec error found on any host (an object
    virtctl does not own, a guest the host cannot run...) stops the whole run first. An
    unreachable host fails only itself. Without `execute`, the plan is the result.

    With `coordination` (etcd locks, virtctl.coord.backend), a writing run also holds
    the host's etcd lock, keyed by the host's identity once connected, and every action
    is preceded by a check that it still holds it (see `apply`)."""
    from .coord.hostlock import host_lock
    from .fileio import state_root

    root = state_root(os.environ)
    held: dict[str, contextlib.ExitStack] = {}  # per host: its lock and connection
    guards: dict[str, Guard] = {}  # per host: its etcd lock's check

    def plan_one(uri: str, desired: Desired) -> tuple[Driver, Plan]:
        stack = held[uri] = contextlib.ExitStack()
        if not readonly:
            stack.enter_context(host_lock(uri, root, timeout=lock_timeout, on_wait=on_wait,
                                          command=command))
        driver = stack.enter_context(connect(uri, readonly=readonly,
                                             call_timeout=call_timeout))
        if coordination is not None and not readonly:
            guards[uri] = stack.enter_context(coordination.hold(
                driver, command=command, timeout=lock_timeout, on_wait=on_wait)).check
        return driver, prepare(desired, driver)

    def act(uri: str, item: tuple[Driver, Plan]) -> Result:
        assert execute is not None
        token = _HELD.set(guards.get(uri))
        try:
            return execute(groups[uri], item[0], item[1])
        finally:
            _HELD.reset(token)

    try:
        planned = run_per_host(groups, plan_one, parallel=parallel)
        spec_errors = [o.error for o in planned if isinstance(o.error, SpecError)]
        if spec_errors or execute is None:
            return [_planned_only(o, stopped=bool(spec_errors)) for o in planned]
        ready = {o.uri: o.value for o in planned if o.value is not None}
        done = {o.uri: o for o in run_per_host(ready, act, parallel=parallel)}
    finally:
        for stack in held.values():
            stack.close()
    return [
        HostRun(o.uri, result=done[o.uri].value, error=done[o.uri].error) if o.uri in done
        else HostRun(o.uri, error=o.error)
        for o in planned
    ]


def _planned_only(outcome: HostOutcome[tuple[Driver, Plan]], *, stopped: bool) -> HostRun:
    if outcome.error is not None:
        return HostRun(outcome.uri, error=outcome.error)
    assert outcome.value is not None
    plan = outcome.value[1]
    if stopped:
        return HostRun(outcome.uri, error=SpecError(
            "not applied: spec errors on other hosts stop the whole run",
            code=ErrorCode.INVALID_SPEC))
    return HostRun(outcome.uri, result=Result(plan, Report(), plan))
