"""Command-line options shared by the verbs of virtctl/cli.py and virtctl watch (which
must not import cli.py)."""

from __future__ import annotations

import argparse


def live_options(parser: argparse.ArgumentParser) -> None:
    """--no-live and --detach-timeout (apply, diff and watch)."""
    parser.add_argument("--no-live", dest="live", action="store_false",
                        help="change running guests and networks only at their next start: "
                        "no hot-plug, vcpu or network live updates (memory balloon stays)")
    parser.add_argument("--detach-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long a guest may take to release a detached device before "
                        "the change is left restart-pending (default 30)")


def lock_options(parser: argparse.ArgumentParser) -> None:
    """--lock-timeout (the verbs that change a host)."""
    parser.add_argument("--lock-timeout", type=float, default=None, metavar="SECONDS",
                        help="give up (exit 1) when another virtctl run holds the host's lock "
                        "this long (default: wait, saying every 10 s who holds it)")


def set_options(parser: argparse.ArgumentParser) -> None:
    """--set and --prune-all (apply, diff, watch)."""
    parser.add_argument("--set", dest="apply_set", default=None, metavar="NAME",
                        help="the apply set this run owns; --prune deletes only its objects "
                        "(default: named after the -f paths, e.g. REPO:specs/prod)")
    parser.add_argument("--prune-all", action="store_true",
                        help="with --prune: delete managed objects of every set, and more "
                        "than 5 at once or everything a set holds")
