"""The `virtctl` command: parse arguments, call virtctl.api, render. Nothing else.

Exit status: 0 success (diff: in sync), 1 error, 2 changes pending (diff, apply --dry-run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from . import api, export, gitinfo, render
from .converters.convert import FORMATS, convert
from .errors import Source, SpecError, VirtctlError
from .reconciler.actions import Action
from .watch import add_watch_parser

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--connect", metavar="URI", default=argparse.SUPPRESS,
        help="hypervisor connection (default: $VIRTCTL_CONNECT, $LIBVIRT_DEFAULT_URI, "
        "sim:///default)",
    )


def _files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", dest="paths", action="append", required=True, metavar="PATH",
        help="spec file or directory (recursive); '-' reads stdin; repeatable",
    )


def _policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shutdown-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long a graceful shutdown may take (default 60)")
    parser.add_argument("--force-stop", action="store_true",
                        help="destroy guests that ignore shutdown when their state is shutoff")


def _restarts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-restart", action="store_true",
                        help="stop and start running objects whose changes need it (objects "
                        "whose spec sets updatePolicy follow that instead)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtctl", description="Declarative reconciler for libvirt domains and networks."
    )
    _common(parser)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    p = sub.add_parser("apply", help="make the host match the specs")
    _common(p)
    _files(p)
    _policy(p)
    _restarts(p)
    p.add_argument("--prune", action="store_true", help="delete managed objects absent from the specs")
    p.add_argument("--adopt", action="store_true", help="take over existing unmanaged objects")
    p.add_argument("--dry-run", action="store_true", help="plan only; exit 2 if changes pending")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("diff", help="show what apply would change (exit 2 if anything)")
    _common(p)
    _files(p)
    _restarts(p)
    p.add_argument("--prune", action="store_true")
    p.add_argument("--adopt", action="store_true")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("delete", help="stop and undefine the managed objects the specs name")
    _common(p)
    _files(p)
    _policy(p)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("get", help="list domains or networks on the host")
    _common(p)
    p.add_argument("what", choices=("domains", "networks"))
    p.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("validate", help="check specs without changing anything")
    _common(p)
    _files(p)
    p.add_argument("--offline", action="store_true",
                   help="check the files only, without the host's state and capabilities")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("capabilities", help="print the host's capabilities XML")
    _common(p)
    p.set_defaults(func=cmd_capabilities)

    p = sub.add_parser("convert", help="convert a spec between xm, xl, XML and YAML")
    p.add_argument("--from", dest="src", choices=FORMATS, required=True)
    p.add_argument("--to", dest="dst", choices=FORMATS, required=True)
    p.add_argument("file", metavar="FILE", help="the file to convert, or - for stdin")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="write specs for the objects on the host")
    _common(p)
    p.add_argument("--to", dest="folder", metavar="DIR",
                   help="write one file per object here (default: stdout)")
    p.add_argument("-o", "--output", choices=("yaml", "xml"), default="yaml")
    p.add_argument("--managed-only", action="store_true",
                   help="only objects virtctl manages (default: every object)")
    p.set_defaults(func=cmd_export)

    add_watch_parser(sub)
    return parser


# -- progress ---------------------------------------------------------------------------


def _progress(stream: TextIO) -> Callable[[int, int, Action], None] | None:
    """A one-line done/total counter on a terminal; nothing when piped."""
    if not stream.isatty():
        return None

    def show(done: int, total: int, action: Action) -> None:
        end = "\n" if done == total else ""
        stream.write(f"\r\033[K[{done}/{total}] {action.verb} {action.key}{end}")
        stream.flush()

    return show


def _load(args: argparse.Namespace, err: TextIO) -> api.Desired:
    desired = api.load(args.paths)
    err.writelines(f"warning: {warning}\n" for warning in desired.warnings)
    return desired


def _policy_from(args: argparse.Namespace) -> api.Policy:
    return api.Policy(
        prune=getattr(args, "prune", False),
        adopt=getattr(args, "adopt", False),
        shutdown_timeout=getattr(args, "shutdown_timeout", 60.0),
        force_stop=getattr(args, "force_stop", False),
        allow_restart=getattr(args, "allow_restart", False),
    )


def _emit_json(out: TextIO, doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, indent=2) + "\n")


# -- verbs ------------------------------------------------------------------------------


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    desired = _load(args, err)
    policy = dataclasses.replace(_policy_from(args), commit=gitinfo.spec_commit(args.paths))
    if args.dry_run:
        with api.connect(args.connect, readonly=True) as reader:
            planned = api.plan(desired, reader, policy=policy)
        _show_plan(planned, args.output, out)
        return EXIT_OK if planned.empty else EXIT_CHANGES
    with api.connect(args.connect) as driver:
        planned = api.plan(desired, driver, policy=policy)
        if args.output == "text":
            out.write(render.plan_text(planned))
            out.flush()
        report = api.apply(planned, driver, progress=_progress(err))
        remaining = planned if planned.empty else api.replan(desired, driver, policy=policy)
    result = api.Result(planned, report, remaining)
    if args.output == "json":
        doc = render.plan_json(planned) | {"kind": "ApplyResult"}
        doc["report"] = render.report_json(report)
        doc["remaining"] = render.plan_json(remaining)["objects"]
        _emit_json(out, doc)
    elif not planned.empty:
        out.write(render.report_text(report))
        if not remaining.empty and not report.return_code:
            err.write("error: the host still differs from the specs after applying:\n")
            err.write(render.plan_text(remaining))
    return EXIT_ERROR if result.return_code else EXIT_OK


def _show_plan(planned: api.Plan, output: str, out: TextIO) -> None:
    if output == "json":
        _emit_json(out, render.plan_json(planned))
    else:
        out.write(render.plan_text(planned))


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    desired = _load(args, err)
    with api.connect(args.connect, readonly=True) as reader:
        planned = api.plan(desired, reader, policy=_policy_from(args))
    _show_plan(planned, args.output, out)
    return EXIT_OK if planned.empty else EXIT_CHANGES


def cmd_delete(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    desired = _load(args, err)
    with api.connect(args.connect, readonly=args.dry_run) as driver:
        result = api.delete(desired, driver, policy=_policy_from(args), dry_run=args.dry_run,
                            progress=None if args.dry_run else _progress(err))
    if args.output == "json":
        doc = render.plan_json(result.plan) | {"kind": "DeleteResult"}
        doc["report"] = render.report_json(result.report)
        _emit_json(out, doc)
    else:
        out.write(render.plan_text(result.plan))
        if not args.dry_run and not result.plan.empty:
            out.write(render.report_text(result.report))
    if args.dry_run:
        return EXIT_OK if result.plan.empty else EXIT_CHANGES
    return EXIT_ERROR if result.return_code else EXIT_OK


def cmd_get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with api.connect(args.connect, readonly=True) as reader:
        live = reader.snapshot()
    records = render.rows(live, args.what)
    if args.output == "json":
        out.write(json.dumps(records, indent=2) + "\n")
    elif args.output == "yaml":
        out.write(yaml.safe_dump(records, sort_keys=False))
    else:
        columns = ["name", "state", "autostart", "managed"]
        if args.what == "domains":
            columns.insert(1, "id")
            columns.append("pending")
        if args.output == "wide":
            columns += ["uuid", "persistent", "source", "commit"]
        out.write(render.table(records, columns))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    desired = _load(args, err)
    if not args.offline:
        with api.connect(args.connect, readonly=True) as reader:
            api.check(desired, reader, policy=api.Policy(adopt=True))
    out.write(
        f"{len(desired.domains)} domain(s) and {len(desired.networks)} network(s) are valid.\n"
    )
    return EXIT_OK


def cmd_capabilities(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with api.connect(args.connect, readonly=True) as reader:
        out.write(reader.capabilities().rstrip("\n") + "\n")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.file == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(args.file).read_text(encoding="utf-8"), args.file
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read: {exc}", source=Source(args.file)) from None
    result = convert(text, src=args.src, dst=args.dst, source=source)
    err.writelines(f"warning: {warning}\n" for warning in result.warnings)
    out.write(result.text)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with api.connect(args.connect, readonly=True) as reader:
        live = reader.snapshot()
    fmt = export.ExportFormat(args.output)
    specs = export.export_specs(live, fmt=fmt, managed_only=args.managed_only)
    if args.folder is None:
        out.write(export.stdout_text(specs, fmt=fmt))
        return EXIT_OK
    for path in export.write_specs(Path(args.folder), specs):
        err.write(f"wrote {path}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    args.connect = getattr(args, "connect", None)
    try:
        code: int = args.func(args, out, err)
        return code
    except VirtctlError as exc:
        if getattr(args, "output", "text") == "json":
            _emit_json(out, render.error_json(exc))
        for line in str(exc).splitlines():
            err.write(f"error: {line}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
