"""The `checkpoints` and `rollback` verbs, and apply's checkpoint options. Thin: parse,
call the API and the pure planning, render."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TextIO

from ..errors import ErrorCode, VirtctlError
from ..printable import printable
from ..checkpoints import ours_oldest_first, record_of

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def add_apply_options(parser: argparse.ArgumentParser, *, applying: bool) -> None:
    """--checkpoint / --no-checkpoint (and, for apply, --no-rollback)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", dest="checkpoint", action="store_const", const=True,
                       default=None, help="take a checkpoint before every disruptive change "
                       "to a guest (restart, disk change) and roll back when the guest then "
                       "fails its health gate (docs/checkpoints.md)")
    group.add_argument("--no-checkpoint", dest="checkpoint", action="store_const",
                       const=False, help="no checkpoints, even where a spec asks for them "
                       "(raw disks are then no reason to refuse a change)")
    if applying:
        parser.add_argument("--no-rollback", dest="rollback", action="store_false",
                            help="a guest failing its health gate is left as it is for "
                            "inspection (virtctl rollback NAME restores it)")
    parser.add_argument("--retry-failed", dest="retry_failed", action="store_true",
                        help="make again a change that failed its health gate and was "
                        "rolled back (else it is held back until its spec changes)")


def add_checkpoint_parsers(sub: Any) -> None:
    from .common import connection_options as _common

    p = sub.add_parser("checkpoints", help="list the checkpoints virtctl took of guests")
    _common(p)
    p.add_argument("name", nargs="?", metavar="NAME", help="one guest (default: all)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_checkpoints)

    p = sub.add_parser("rollback", help="restore a guest's checkpoint (definition and "
                       "disks), with a plan first")
    _common(p)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", metavar="CHECKPOINT", help="which one (default: the newest)")
    p.add_argument("--dry-run", action="store_true", help="plan only; exit 2")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_rollback)


def _rows(reader: Any, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        for snap in ours_oldest_first(reader.snapshots(name)):
            rec = record_of(snap.description)
            assert rec is not None  # ours: it has a record
            rows.append({"domain": name, "name": snap.name, "time": rec.time,
                         "commit": rec.commit, "memory": snap.memory, "reason": rec.reason})
    return rows


def cmd_checkpoints(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import api
    from ..render.report import table

    with api.connect(args.connect, readonly=True, call_timeout=args.call_timeout) as reader:
        live = reader.snapshot()
        if args.name is not None and args.name not in live.domains:
            raise VirtctlError(f"no domain {args.name!r} on {reader.uri}",
                               code=ErrorCode.NO_SUCH_DOMAIN)
        names = [args.name] if args.name else sorted(
            n for n, d in live.domains.items() if d.managed)
        rows = _rows(reader, names)
    if args.output == "json":
        out.write(json.dumps({"checkpoints": rows}, indent=2) + "\n")
        return EXIT_OK
    shown = [r | {"commit": (r["commit"] or "-")[:12], "memory": "yes" if r["memory"] else "no"}
             for r in rows]
    out.write(table(shown, ["domain", "name", "time", "commit", "memory", "reason"]))
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import api
    from ..render import report as render
    from ..model import Desired
    from ..uri import default_uri
    from ..reconciler.checkpoint.planning import choose, plan_rollback

    def prepare(_: Desired, driver: Any) -> api.Plan:
        live = driver.snapshot()
        dom = live.domains.get(args.name)
        if dom is None:
            raise VirtctlError(f"no domain {args.name!r} on {driver.uri}",
                               code=ErrorCode.NO_SUCH_DOMAIN)
        if not dom.managed:
            raise VirtctlError(f"domain {args.name!r} is not managed by virtctl",
                               code=ErrorCode.NOT_MANAGED)
        return plan_rollback(dom, choose(driver.snapshots(args.name), args.name, args.to))

    def execute(_: Desired, driver: Any, planned: api.Plan) -> api.Result:
        return api.Result(planned, api.apply(planned, driver), api.Plan())

    uri = default_uri(args.connect, os.environ)
    runs = api.run_hosts({uri: Desired()}, prepare, None if args.dry_run else execute,
                         readonly=args.dry_run, parallel=1, command="virtctl rollback",
                         call_timeout=args.call_timeout)
    run = runs[0]
    if run.error is not None:
        raise run.error
    assert run.result is not None
    result = run.result
    if args.output == "json":
        doc = render.plan_json(result.plan)
        if not args.dry_run:
            doc |= {"kind": "RollbackResult", "report": render.report_json(result.report)}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render.plan_text(result.plan))
        if not args.dry_run:
            out.write(render.report_text(result.report))
    if args.dry_run:
        return EXIT_CHANGES
    if result.report.return_code:
        err.write(printable(f"error: rollback of {args.name} failed") + "\n")
    return EXIT_ERROR if result.report.return_code else EXIT_OK
