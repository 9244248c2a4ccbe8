"""`virtctl watch`: its arguments, and the verb function the CLI calls.

`add_watch_parser(subparsers)` registers the subcommand on virtctl's argparse parser;
`cmd_watch(args, out, err)` has the signature of every other verb in virtctl/cli/commands.py.
`parse_interval` reads "30s", "5m", "1h", "1h30m" (or plain seconds); it is pure.
Does not import virtctl.cli.commands (which imports this module).
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, TextIO

from .options import (
    LONGEST,
    apply_sets,
    call_timeout_option,
    coordination,
    coordination_options,
    live_options,
    set_options,
)
from .options import seconds as seconds_arg
from ..reconciler.plan.policy import Policy

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_interval(text: str) -> float:
    """Seconds in a duration like "30s", "5m", "1h30m" or "90"; must be positive."""
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        seconds = float(raw)
    elif raw and re.fullmatch(f"(?:{_PART.pattern})+", raw):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw))
    else:
        raise ValueError(f"invalid duration {text!r} (examples: 30s, 5m, 1h, 1h30m)")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    if seconds > LONGEST:  # a wait this long overflows Python's locks
        raise ValueError(f"duration {text!r} is too long (at most {LONGEST:.0f} s)")
    return seconds


def _interval_arg(text: str) -> float:
    try:
        return parse_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port_arg(text: str) -> int:
    # ASCII digits only: str.isdigit() and int() also take other scripts' digits.
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (0-65535; 0 picks a free one)")
    return int(text)


def add_watch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `watch` on the CLI's subparsers (argparse's _SubParsersAction)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "watch", help="keep the host as the specs declare, reconciling on every change",
        description="Reconcile at start, on every spec change, on host events (a guest "
        "stopped, undefined or changed outside virtctl) and every --interval.",
    )
    p.add_argument("-c", "--connect", metavar="URI", default=argparse.SUPPRESS,
                   help="hypervisor connection (default: $VIRTCTL_CONNECT, "
                   "$LIBVIRT_DEFAULT_URI, sim:///default)")
    p.add_argument("-f", "--filename", dest="paths", action="append", required=True,
                   metavar="PATH", help="spec file or directory (recursive); repeatable")
    call_timeout_option(p)
    p.add_argument("--interval", type=_interval_arg, default=300.0, metavar="DURATION",
                   help="full resync period, e.g. 30s, 5m, 1h (default 5m)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="human lines (default) or JSON lines")
    p.add_argument("--metrics-port", type=_port_arg, default=None, metavar="PORT",
                   help="serve Prometheus metrics at http://ADDRESS:PORT/metrics")
    p.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDRESS",
                   help="address the metrics server binds (default 127.0.0.1)")
    p.add_argument("--prune", action="store_true",
                   help="delete managed objects of the watcher's apply set absent from "
                   "the specs")
    p.add_argument("--adopt", action="store_true", help="take over existing unmanaged objects")
    p.add_argument("--shutdown-timeout", type=seconds_arg, default=60.0, metavar="SECONDS",
                   help="how long a graceful shutdown may take (default 60)")
    p.add_argument("--force-stop", action="store_true",
                   help="destroy guests that ignore shutdown when their state is shutoff")
    live_options(p)
    set_options(p)
    coordination_options(p)
    p.add_argument("--fleet", default=None, metavar="NAME",
                   help="share the specs' hosts with the other members of fleet NAME "
                   "(needs --coordination); with -c URI, be that host's agent and "
                   "reconcile it alone (docs/fleet.md)")
    p.add_argument("--member", default=None, metavar="NAME",
                   help="this member's name in the fleet, stable across restarts so a "
                   "restarted member takes back its share (default: the host name)")
    p.set_defaults(func=cmd_watch)
    return p


def cmd_watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if "-" in args.paths:
        err.write("error: watch needs files or directories, not '-' (stdin)\n")
        return 1
    from ..watch.fleet import run_watch  # watchdog and http.server load only when watching

    from ..reconciler.load.gitinfo import default_set

    try:
        apply_set, prune_sets = apply_sets(args, lambda: default_set(args.paths))
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return 1
    from ..coord.backend import EtcdLocks
    from ..errors import VirtctlError
    from ..printable import printable

    try:
        coordinated = coordination(args, os.environ)
    except VirtctlError as exc:
        err.write(printable(f"error: {exc}") + "\n")
        return 1
    host_locks = None if coordinated is None else EtcdLocks(coordinated.client(),
                                                            ttl=coordinated.lease_ttl)
    fleet_options = None
    if args.fleet is not None or args.member is not None:
        from ..watch.membership import check_name, default_member
        from ..watch.fleetmember import FleetOptions

        try:
            if args.fleet is None:
                raise ValueError("--member needs --fleet NAME")
            if coordinated is None:
                raise ValueError("--fleet needs --coordination URL (or "
                                 "$VIRTCTL_COORDINATION)")
            fleet_options = FleetOptions(
                name=check_name("fleet", args.fleet),
                member=check_name("member", args.member or default_member()),
                agent=getattr(args, "connect", None) is not None)
        except (ValueError, VirtctlError) as exc:
            err.write(printable(f"error: {exc}") + "\n")
            return 1
    policy = Policy(prune=args.prune, adopt=args.adopt,
                    shutdown_timeout=args.shutdown_timeout, force_stop=args.force_stop,
                    live=args.live, detach_timeout=args.detach_timeout,
                    apply_set=apply_set, prune_all=args.prune_all, prune_sets=prune_sets)
    return run_watch(
        args.paths, uri=getattr(args, "connect", None), policy=policy, interval=args.interval,
        log_format=args.log_format, metrics_port=args.metrics_port,
        metrics_address=args.metrics_address, stop=None, stream=err,
        call_timeout=getattr(args, "call_timeout", None), host_locks=host_locks,
        fleet_options=fleet_options,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m virtctl.watch ARGS`: the watch verb on its own (same arguments)."""
    import sys

    from ..fileio import tighten_umask

    tighten_umask()
    parser = argparse.ArgumentParser(prog="virtctl")
    add_watch_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["watch", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args, sys.stdout, sys.stderr)
    return code
