"""The `virtctl` command: parse arguments, call virtctl.api, render. Nothing else.

Exit status: 0 success (diff: in sync), 1 error, 2 changes pending (diff, apply --dry-run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

# Only what building the parser needs is imported with this module (`--help` stays
# fast); each verb imports what it uses (tests/unit/test_layout.py checks it).
from .. import api
from ..converters import FORMATS
from ..errors import ErrorCode, SpecError, SpecErrors, VirtctlError
from ..fileio import tighten_umask
from ..render import report as render
from ..printable import printable
from .options import (
    apply_sets,
    coordination,
    coordination_options,
    live_options,
    lock_options,
    positive_count,
    seconds,
    set_options,
)
from .guests import (
    add_guest_parsers,
    load_desired,
    select_live,
    select_live_objects,
    select_storage,
    selector_option,
)
from .common import connection_options, file_options
from . import noop
from .watch import add_watch_parser

if TYPE_CHECKING:
    from ..coord.backend import EtcdLocks
    from ..drivers.base import Driver
    from ..reconciler.plan.actions import Action

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shutdown-timeout", type=seconds, default=60.0, metavar="SECONDS",
                        help="how long a graceful shutdown may take (default 60)")
    parser.add_argument("--force-stop", action="store_true",
                        help="destroy guests that ignore shutdown when their state is shutoff")


def _restarts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-restart", action="store_true",
                        help="stop and start running objects whose changes need it (objects "
                        "whose spec sets updatePolicy follow that instead)")
    live_options(parser)


def _parallel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parallel", type=positive_count, default=4, metavar="N",
                        help="hosts reconciled at once when specs target several (default 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtctl", description="Declarative reconciler for libvirt domains and networks."
    )
    connection_options(parser)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    p = sub.add_parser("apply", help="make the host match the specs")
    connection_options(p)
    file_options(p)
    _policy(p)
    _restarts(p)
    p.add_argument("--prune", action="store_true",
                   help="delete managed objects of this run's set absent from the specs")
    set_options(p)
    p.add_argument("--adopt", action="store_true", help="take over existing unmanaged objects")
    p.add_argument("--allow-recreate", action="store_true",
                   help="replace volumes whose format, backing store or content changed "
                   "(their data is lost)")
    p.add_argument("--dry-run", action="store_true", help="plan only; exit 2 if changes pending")
    _parallel(p)
    lock_options(p)
    coordination_options(p)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    selector_option(p)
    from .checkpoints import add_apply_options, add_checkpoint_parsers

    add_apply_options(p, applying=True)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("diff", help="show what apply would change (exit 2 if anything)")
    connection_options(p)
    file_options(p)
    _restarts(p)
    p.add_argument("--prune", action="store_true",
                   help="show what apply --prune would delete of this run's set")
    set_options(p)
    p.add_argument("--adopt", action="store_true")
    p.add_argument("--allow-recreate", action="store_true")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _parallel(p)
    coordination_options(p)
    selector_option(p)
    add_apply_options(p, applying=False)
    p.set_defaults(func=cmd_diff)
    add_checkpoint_parsers(sub)

    p = sub.add_parser("delete", help="stop and undefine the managed objects the specs name")
    connection_options(p)
    file_options(p)
    _policy(p)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _parallel(p)
    lock_options(p)
    coordination_options(p)
    selector_option(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("get", help="list domains, networks, storage pools or volumes on "
                       "the host")
    connection_options(p)
    p.add_argument("what", choices=("domains", "networks", "pools", "volumes"))
    p.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    selector_option(p)
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("validate", help="check specs without changing anything")
    connection_options(p)
    file_options(p)
    p.add_argument("--offline", action="store_true",
                   help="check the files only, without the host's state and capabilities")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("capabilities", help="print the host's capabilities XML")
    connection_options(p)
    p.set_defaults(func=cmd_capabilities)

    p = sub.add_parser("convert", help="convert a spec between xm, xl, XML and YAML")
    p.add_argument("--from", dest="src", choices=FORMATS, required=True)
    p.add_argument("--to", dest="dst", choices=FORMATS, required=True)
    p.add_argument("file", metavar="FILE", help="the file to convert, or - for stdin")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="write specs for the objects on the host")
    connection_options(p)
    p.add_argument("--to", dest="folder", metavar="DIR",
                   help="write one file per object here (default: stdout)")
    p.add_argument("-o", "--output", choices=("yaml", "xml", "ansible-inventory"),
                   default="yaml", help="ansible-inventory: JSON as `ansible-inventory "
                   "--list` prints it, grouped by host, apply set and label")
    p.add_argument("--managed-only", action="store_true",
                   help="only objects virtctl manages (default: every object)")
    selector_option(p)
    p.set_defaults(func=cmd_export)

    add_watch_parser(sub)
    add_guest_parsers(sub)
    from .status import add_status_parser

    add_status_parser(sub)
    return parser


# -- progress ---------------------------------------------------------------------------


def _progress(stream: TextIO, host: str = "") -> Callable[[int, int, Action], None]:
    """A one-line done/total counter on a terminal; when piped (a log, a CI job), one
    line per action as it starts, so long work is never silent."""
    if not stream.isatty():
        where = f" on {host}" if host else ""

        def line(done: int, total: int, action: Action) -> None:
            if done < total:
                stream.write(printable(f"virtctl: [{done + 1}/{total}] {action.verb} "
                                       f"{action.key}{where}") + "\n")
                stream.flush()

        return line

    def show(done: int, total: int, action: Action) -> None:
        end = "\n" if done == total else ""
        # The counter's own \r and ESC[K are the only control characters it writes.
        shown = printable(f"[{done}/{total}] {action.verb} {action.key}")
        stream.write(f"\r\033[K{shown}{end}")
        stream.flush()

    return show


def _policy_from(args: argparse.Namespace) -> api.Policy:
    apply_set, prune_sets = _apply_sets(args)
    return api.Policy(
        prune=getattr(args, "prune", False),
        adopt=getattr(args, "adopt", False),
        shutdown_timeout=getattr(args, "shutdown_timeout", 60.0),
        force_stop=getattr(args, "force_stop", False),
        allow_restart=getattr(args, "allow_restart", False),
        live=getattr(args, "live", True),
        allow_recreate=getattr(args, "allow_recreate", False),
        detach_timeout=getattr(args, "detach_timeout", 30.0),
        force_detach=getattr(args, "force_detach", False),
        apply_set=apply_set,
        prune_all=getattr(args, "prune_all", False),
        prune_sets=prune_sets,
        selector=getattr(args, "selector", None) or "",
        protected=getattr(args, "protected", ()),
        checkpoint=getattr(args, "checkpoint", None),
        rollback=getattr(args, "rollback", True),
        retry_failed=getattr(args, "retry_failed", False),
    )


def _apply_sets(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    try:
        from ..reconciler.load import gitinfo

        return apply_sets(args, lambda: gitinfo.default_set(getattr(args, "paths", []) or []))
    except ValueError as exc:
        raise VirtctlError(str(exc), code=ErrorCode.OPERATION_INVALID) from None


def _emit_json(out: TextIO, doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, indent=2) + "\n")


# -- verbs ------------------------------------------------------------------------------


def _apply_steps(
    policy: api.Policy, args: argparse.Namespace, err: TextIO, stream: TextIO | None
) -> tuple[api.Prepare, api.Execute | None]:
    """One host's apply: plan (printed at once to `stream`, if given), then apply and
    verify, unless it is a dry run."""
    from ..reconciler.load.loadset import set_members

    def prepare(desired: api.Desired, driver: Driver) -> api.Plan:
        from ..reconciler.checkpoint import recover
        from ..reconciler.apply.clock import Clock

        # A change a killed run left between checkpoint and verdict: finished or rolled
        # back first, under this run's lock (docs/checkpoints.md); a dry run only says so.
        settled = recover.pending(driver.uri) if args.dry_run else \
            recover.recover(driver, Clock())
        planned = api.plan(desired, driver, policy=policy, seen=_seen())
        if settled:
            planned = dataclasses.replace(planned, notes=(*settled, *planned.notes))
        refusal = _prune_refusal(planned, desired, policy)
        if refusal is not None:
            raise VirtctlError(refusal, code=ErrorCode.OPERATION_INVALID)
        if not args.dry_run:  # URL content downloaded and verified before the first action
            api.fetch_content(planned, desired)
        return planned

    def execute(desired: api.Desired, driver: Driver, planned: api.Plan) -> api.Result:
        if stream is not None:
            stream.write(render.plan_text(planned, set_members(desired)))
            stream.flush()
        # Several hosts act at once: their lines name the host; a terminal's counter
        # line is for one host only.
        host = "" if stream is not None else driver.uri
        progress = _progress(err, host) if stream is not None or not err.isatty() else None
        report = api.apply(planned, driver, progress=progress)
        # A host that stopped answering is not asked again: the plan stays what remains.
        remaining = planned if planned.empty or report.lost_host or report.lost_lock else \
            api.replan(desired, driver, policy=policy)
        return api.Result(planned, report, remaining)

    return prepare, None if args.dry_run else execute


def _prune_refusal(planned: api.Plan, desired: api.Desired, policy: api.Policy) -> str | None:
    if not planned.deletes:  # nothing pruned: a no-op run never imports the planner
        return None
    from ..reconciler.plan.plan import prune_refusal

    return prune_refusal(planned, desired, policy)


def _apply_doc(result: api.Result, *, dry_run: bool) -> dict[str, Any]:
    if dry_run:
        return render.plan_json(result.plan)
    doc = render.plan_json(result.plan) | {"kind": "ApplyResult"}
    doc["report"] = render.report_json(result.report)
    doc["remaining"] = render.plan_json(result.remaining)["objects"]
    return doc


def _apply_text(result: api.Result, out: TextIO, err: TextIO, *, plan_shown: bool,
                members: dict[Any, str] | None = None) -> None:
    if not plan_shown:
        out.write(render.plan_text(result.plan, members))
    _held_errors(result.plan, err)
    if result.plan.empty or not result.report.results:
        return
    out.write(render.report_text(result.report))
    if result.report.lost_host:
        err.write(printable(f"error: {result.report.lost_host}: the action in flight is "
                            "uncertain, the rest was not run\n"))
    if result.report.lost_lock:
        err.write(printable(f"error: {result.report.lost_lock}; the rest was not run\n"))
    if not result.remaining.empty and not result.report.return_code:
        err.write("error: the host still differs from the specs after applying:\n")
        err.write(render.plan_text(result.remaining))


def _held_errors(planned: api.Plan, err: TextIO) -> None:
    for key, _ in planned.held:
        err.write(printable(f"error: {key}: its change failed its health gate and was "
                            "rolled back; held back until the spec changes (apply "
                            "--retry-failed tries it again)") + "\n")


def _exit_code(runs: list[api.HostRun], *, dry_run: bool) -> int:
    if any(run.error is not None for run in runs):
        return EXIT_ERROR
    results = [run.result for run in runs if run.result is not None]
    if any(r.plan.held for r in results):  # a change that failed its gate, held back
        return EXIT_ERROR
    if dry_run:
        return EXIT_OK if all(r.plan.empty for r in results) else EXIT_CHANGES
    return EXIT_ERROR if any(r.return_code for r in results) else EXIT_OK


def _run(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    groups: dict[str, api.Desired],
    steps: tuple[api.Prepare, api.Execute | None],
    *,
    readonly: bool,
    render_doc: Callable[[api.Result], dict[str, Any]],
    render_text: Callable[[api.Result], None],
    kind: str,
) -> list[api.HostRun]:
    """Plan, then act (`steps`), on each host the specs target. One host: as if there
    were no others (its errors propagate, output unchanged). Several: concurrently, each
    host's outcome under its own heading, an unreachable host failing only itself."""
    def waiting(line: str) -> None:
        args.waited = True  # this run's output is no no-op's to replay (cli/noop.py)
        err.write(f"virtctl: {printable(line)}\n")
        err.flush()

    # The verb as parsed (whatever the order of the options): "virtctl apply".
    locking = {"lock_timeout": getattr(args, "lock_timeout", None), "on_wait": waiting,
               "command": f"virtctl {args.verb}", "call_timeout": args.call_timeout,
               "coordination": _host_locks(args, readonly=readonly)}
    if len(groups) == 1:
        runs = api.run_hosts(groups, *steps, readonly=readonly, parallel=1, **locking)
        if runs[0].error is not None:
            raise runs[0].error
        assert runs[0].result is not None
        if args.output == "json":
            _emit_json(out, render_doc(runs[0].result))
        else:
            render_text(runs[0].result)
        return runs
    runs = api.run_hosts(groups, *steps, readonly=readonly, parallel=args.parallel,
                         **locking)
    if args.output == "json":
        hosts = [
            {"uri": run.uri} | (render_doc(run.result) if run.result is not None
                                else render.error_json(run.error or VirtctlError("failed")))
            for run in runs
        ]
        _emit_json(out, {"apiVersion": render.API_VERSION, "kind": kind, "hosts": hosts})
        return runs
    for run in runs:
        out.write(printable(f"=== {run.uri}") + "\n")
        if run.result is not None:
            render_text(run.result)
        else:
            err.writelines(f"error: {printable(f'{run.uri}: {line}')}\n"
                           for line in str(run.error).splitlines())
    return runs


def _host_locks(args: argparse.Namespace, *, readonly: bool) -> EtcdLocks | None:
    """The etcd host locks --coordination names (checked even for a read-only verb,
    which takes no lock), or None: the lock directory alone (docs/fleet.md)."""
    found = coordination(args, os.environ)
    if found is None or readonly:
        return None
    from ..coord.backend import EtcdLocks

    return EtcdLocks(found.client(), ttl=found.lease_ttl)


def _seen() -> api.Seen | None:
    """The no-op fast path's recorder of this process's run, if any (cli/noop.py)."""
    rec = noop.recorder()
    return None if rec is None else rec.observe


def _record_noop(args: argparse.Namespace, desired: api.Desired, policy: api.Policy,
                 groups: dict[str, api.Desired], runs: list[api.HostRun], *,
                 readonly: bool) -> None:
    """Tell the fast path's recorder whether this run may be replayed: one host, text
    output, nothing planned, applied or noted, no storage, no etcd, no wait for the lock
    (the list in cli/noop.py's docstring)."""
    rec = noop.recorder()
    if rec is None or len(runs) != 1:
        return
    result = runs[0].result
    eligible = (
        len(groups) == 1 and args.output == "text" and not getattr(args, "dry_run", False)
        and "-" not in args.paths and not desired.pools and not desired.volumes
        and not desired.hosts and not policy.prune and policy.checkpoint is None
        and coordination(args, os.environ) is None and not getattr(args, "waited", False)
        and result is not None and result.plan.empty and not result.plan.notes
        and result.remaining.empty and not result.report.results)
    rec.finish(uri=runs[0].uri, paths=args.paths, readonly=readonly, eligible=eligible,
               apply_set=None)


def _loading(args: argparse.Namespace) -> None:
    rec = noop.recorder()
    if rec is not None:
        rec.loading(args.paths)


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _loading(args)
    desired = load_desired(args, err)
    from ..reconciler.load import gitinfo
    from ..reconciler.load.loadset import set_members

    policy = dataclasses.replace(_policy_from(args), commit=gitinfo.spec_commit(args.paths))
    groups = api.split_hosts(desired, args.connect)
    # One host: print the plan before acting, as it happens; several: each when done.
    live_output = len(groups) == 1 and args.output == "text" and not args.dry_run
    stream = out if live_output else None
    runs = _run(
        args, out, err, groups, _apply_steps(policy, args, err, stream),
        readonly=args.dry_run and not _reads_storage(desired, policy),
        render_doc=lambda r: _apply_doc(r, dry_run=args.dry_run),
        render_text=lambda r: _apply_text(r, out, err, plan_shown=live_output,
                                          members=set_members(desired)),
        kind="MultiHostPlan" if args.dry_run else "MultiHostApplyResult",
    )
    _record_noop(args, desired, policy, groups, runs, readonly=False)
    return _exit_code(runs, dry_run=args.dry_run)


def _reads_storage(desired: api.Desired, policy: api.Policy | None) -> bool:
    """Whether checking and planning make calls libvirt refuses on a read-only
    connection: volume downloads (virtctl's storage records) and domain capabilities
    (asked for guests with a TPM). Then even diff, validate and a dry run open a
    read-write one (and still write nothing)."""
    return bool(desired.pools or desired.volumes or (policy is not None and policy.prune)
                or any("<tpm" in d.xml for d in desired.domains.values()))


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..reconciler.load.loadset import set_members

    _loading(args)
    desired = load_desired(args, err)
    policy = _policy_from(args)

    def prepare(d: api.Desired, reader: Driver) -> api.Plan:
        planned = api.plan(d, reader, policy=policy, seen=_seen())
        refusal = _prune_refusal(planned, d, policy)
        if refusal is not None:
            err.write(printable(f"warning: apply would refuse this: {refusal}") + "\n")
        return planned

    def text(result: api.Result) -> None:
        out.write(render.plan_text(result.plan, set_members(desired)))
        _held_errors(result.plan, err)

    groups = api.split_hosts(desired, args.connect)
    readonly = not _reads_storage(desired, policy)
    runs = _run(args, out, err, groups, (prepare, None), readonly=readonly,
                render_doc=lambda r: render.plan_json(r.plan), render_text=text,
                kind="MultiHostPlan")
    _record_noop(args, desired, policy, groups, runs, readonly=readonly)
    return _exit_code(runs, dry_run=True)


def cmd_delete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    desired = load_desired(args, err)
    policy = _policy_from(args)

    def prepare(d: api.Desired, driver: Driver) -> api.Plan:
        return api.plan_deletion(d, driver, policy=policy)

    def execute(d: api.Desired, driver: Driver, planned: api.Plan) -> api.Result:
        return api.delete(d, driver, policy=policy, planned=planned, progress=_progress(err))

    def doc(result: api.Result) -> dict[str, Any]:
        out_doc = render.plan_json(result.plan) | {"kind": "DeleteResult"}
        out_doc["report"] = render.report_json(result.report)
        return out_doc

    def text(result: api.Result) -> None:
        out.write(render.plan_text(result.plan))
        if not args.dry_run and not result.plan.empty:
            out.write(render.report_text(result.report))
        if result.report.lost_host:
            err.write(printable(f"error: {result.report.lost_host}: the action in flight "
                                "is uncertain, the rest was not run\n"))
        if result.report.lost_lock:
            err.write(printable(f"error: {result.report.lost_lock}; the rest was not run\n"))

    runs = _run(args, out, err, api.split_hosts(desired, args.connect),
                (prepare, None if args.dry_run else execute),
                # Deleting storage reads virtctl's records (volume downloads, which
                # libvirt refuses read-only): a dry run then opens read-write, as diff.
                readonly=args.dry_run and not (desired.pools or desired.volumes),
                render_doc=doc, render_text=text,
                kind="MultiHostDeleteResult")
    return _exit_code(runs, dry_run=args.dry_run)


def cmd_get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .reach import guest_addresses

    storage = args.what in ("pools", "volumes")
    if storage:
        from ..render import storage as render_storage
    # virtctl's storage records are volume downloads, which libvirt refuses on a
    # read-only connection; nothing is written.
    with api.connect(args.connect, readonly=not storage,
                     call_timeout=args.call_timeout) as reader:
        live = reader.snapshot()
        found = reader.storage() if storage else None
        addresses = guest_addresses(reader, live) if (
            args.what == "domains" and args.output != "table") else {}
    records = (render.rows(live, args.what) if found is None
               else render_storage.rows(found, live, args.what))
    records = select_live(records, live, args.what, args.selector, addresses)
    if args.output == "json":
        out.write(json.dumps(records, indent=2) + "\n")
    elif args.output == "yaml":
        import yaml

        out.write(yaml.safe_dump(records, sort_keys=False))
    elif found is not None:
        out.write(render.table(render_storage.for_table(records),
                               render_storage.columns(args.what,
                                                      wide=args.output == "wide")))
    else:
        columns = ["name", "state", "autostart", "managed", "pending"]
        if args.what == "domains":
            columns.insert(1, "id")
        if args.output == "wide":
            columns += ["uuid", "persistent", "set", "source", "commit", "labels"]
            if args.what == "domains":
                columns.append("addresses")
        out.write(render.table(records, columns))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    desired = load_desired(args, err)
    groups = {} if args.offline else api.split_hosts(desired, args.connect)
    problems: list[SpecError] = []
    for uri, share in groups.items():  # each host the specs target, read-only
        try:
            with api.connect(uri, readonly=not _reads_storage(share, None),
                             call_timeout=args.call_timeout) as reader:
                api.check(share, reader, policy=api.Policy(adopt=True))
        except SpecErrors as many:
            problems.extend(many.errors)
    problems.extend(api.check_files(desired))  # local content files: read and hashed
    if problems:
        raise SpecErrors(problems)
    storage = (f", {len(desired.pools)} storage pool(s) and {len(desired.volumes)} volume(s)"
               if desired.pools or desired.volumes else "")
    out.write(f"{len(desired.domains)} domain(s) and {len(desired.networks)} network(s)"
              f"{storage} are valid.\n")
    return EXIT_OK


def cmd_capabilities(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with api.connect(args.connect, readonly=True,
                     call_timeout=args.call_timeout) as reader:
        out.write(reader.capabilities().rstrip("\n") + "\n")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..converters.convert import convert

    if args.file == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        from ..reconciler.load.load import read_spec_file

        text, source = read_spec_file(args.file), args.file  # a regular file only
    result = convert(text, src=args.src, dst=args.dst, source=source)
    err.writelines(f"warning: {printable(warning)}\n" for warning in result.warnings)
    out.write(result.text)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..render import export
    from .reach import guest_addresses

    # Read-write: virtctl's storage records are volume downloads (see cmd_get).
    with api.connect(args.connect, readonly=False,
                     call_timeout=args.call_timeout) as reader:
        live = reader.snapshot()
        storage = reader.storage()
        addresses = guest_addresses(reader, live) if (
            args.output == "ansible-inventory") else {}
    if args.output == "ansible-inventory":
        from .inventory import inventory_json

        out.write(inventory_json({reader.uri: live}, args.selector,
                                 {reader.uri: addresses}) + "\n")
        return EXIT_OK
    if args.selector is not None:
        live = select_live_objects(live, args.selector)
    fmt = export.ExportFormat(args.output)
    specs = export.export_specs(live, fmt=fmt, managed_only=args.managed_only,
                                storage=storage, storage_keys=None if args.selector is None
                                else select_storage(storage, args.selector))
    if args.folder is None:
        out.write(export.stdout_text(specs, fmt=fmt))
        return EXIT_OK
    for path in export.write_specs(Path(args.folder), specs):
        err.write(printable(f"wrote {path}") + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    tighten_umask()
    args = build_parser().parse_args(argv)
    args.connect = getattr(args, "connect", None)
    args.call_timeout = getattr(args, "call_timeout", None)
    try:
        try:
            code: int = args.func(args, out, err)
        except OSError as fault:  # a file fault no layer named: still one line, no traceback
            where = f"{fault.filename}: " if fault.filename is not None else ""
            raise VirtctlError(f"{where}{fault.strerror or fault}",
                               code=ErrorCode.OPERATION_FAILED) from None
        return code
    except VirtctlError as exc:
        if getattr(args, "output", "text") == "json":
            _emit_json(out, render.error_json(exc))
        for line in str(exc).splitlines():  # libvirt's messages carry host text: escaped
            err.write(f"error: {printable(line)}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
