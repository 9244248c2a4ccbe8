"""The options every verb takes (`-c URI`, `--call-timeout`) and those of verbs that
read spec files (`-f PATH`), shared by commands.py and guests.py.
"""

from __future__ import annotations

import argparse

from .options import call_timeout_option


def connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--connect", metavar="URI", default=argparse.SUPPRESS,
        help="hypervisor connection (default: $VIRTCTL_CONNECT, $LIBVIRT_DEFAULT_URI, "
        "sim:///default)",
    )
    call_timeout_option(parser)


def file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", dest="paths", action="append", required=True, metavar="PATH",
        help="spec file or directory (recursive); '-' reads stdin; repeatable",
    )
