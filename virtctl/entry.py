"""The `virtctl` command's entry point: `virtctl status` without the reconciler.

`virtctl status` reads etcd and nothing else; importing the whole CLI (the reconciler,
lxml, jsonschema) would cost it most of its time. Every other command, and `status`
after global options, goes through virtctl.cli.commands as always.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["status"]:
        import argparse

        from .cli.status import add_status_parser

        parser = argparse.ArgumentParser(prog="virtctl")
        add_status_parser(parser.add_subparsers(dest="verb", required=True))
        parsed = parser.parse_args(args)
        code: int = parsed.func(parsed, sys.stdout, sys.stderr)
        return code
    from .cli.commands import main as cli_main

    return cli_main(args)
