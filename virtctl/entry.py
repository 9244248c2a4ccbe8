"""The `virtctl` command's entry point: `virtctl status` without the reconciler.

`virtctl status` reads etcd and nothing else; importing the whole CLI (the reconciler,
lxml, jsonschema) would cost it most of its time. Every other command, and `status`
after global options, goes through virtctl.cli.commands as always. `apply` and `diff`
first ask the no-op fast path (cli/noop.py), which answers a repeated no-op before
the model, the loader or the planner are imported.
"""

from __future__ import annotations

import os
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
    if args[:1] in (["apply"], ["diff"]):
        from .cli import noop

        if noop.enabled(os.environ):
            # A repeated no-op answered before the model and the planner are imported;
            # else the full path, recorded when it planned nothing (cli/noop.py).
            def full(argv: Sequence[str], **streams: object) -> int:
                from .cli.commands import main as run_full

                return run_full(argv, **streams)  # type: ignore[arg-type]

            return noop.run(args, full)
    from .cli.commands import main as cli_main

    return cli_main(args)
