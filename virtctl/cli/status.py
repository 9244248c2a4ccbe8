"""`virtctl status [--fleet NAME] [-o table|json] [--coordination URL]`: the fleet table,
read from etcd alone (one range request, no libvirt connection). Exit status as diff's:
0 every host in sync, 2 some pending, 1 any failed or stale (or no host, or etcd
unreachable)."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from ..errors import VirtctlError
from .options import coordination, coordination_options
from ..printable import printable
from ..coord.status import EXIT_ERROR, exit_status, rows_from, to_json, to_table


def add_status_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="the fleet's hosts and whether each is in sync, from etcd alone",
        description="Each fleet member writes one record per host after each round; "
        "this reads them (and the live members) from etcd, connecting to no host. "
        "Exit 0 all in sync, 2 some pending, 1 any failed or stale.")
    p.add_argument("--fleet", default=None, metavar="NAME",
                   help="only fleet NAME (default: every fleet)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    coordination_options(p)
    p.set_defaults(func=cmd_status)
    return p


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..coord.fleetkeys import check_name, read_status

    try:
        fleet = None if args.fleet is None else check_name("fleet", args.fleet)
        coordinated = coordination(args, os.environ)
        if coordinated is None:
            err.write("error: status reads etcd: give --coordination URL (or "
                      "$VIRTCTL_COORDINATION)\n")
            return EXIT_ERROR
        records, live = read_status(coordinated.client(), fleet)
    except VirtctlError as exc:
        err.write(printable(f"error: {exc}", keep_newlines=False) + "\n")
        return EXIT_ERROR
    rows = rows_from(records, live)
    if args.output == "json":
        out.write(to_json(rows))
    else:
        out.write(to_table(rows, show_fleet=fleet is None and len({r.fleet for r in rows}) > 1))
    if not rows:
        err.write("no host has a status record" + (f" in fleet {fleet}" if fleet else "")
                  + " (is a `virtctl watch --fleet` member running?)\n")
    return exit_status(rows)
