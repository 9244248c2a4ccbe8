"""The command layer: argument parsing, the verbs, and what they print.

commands.py builds the parser and holds the verbs that compose virtctl.api (apply, diff,
delete, get, validate, capabilities, convert, export); guests.py the guest verbs
(render, addresses, ssh, console) with reach.py (addresses, ssh argv), console.py (the
serial console) and inventory.py (Ansible inventory); watch.py the `watch` verb;
status.py `virtctl status` (fleet status from etcd, dispatched early by virtctl/entry.py);
common.py the options every verb shares (guests.py's `load_desired` reads `-f` and `-l`);
options.py the option types shared with `watch`.

May import anything below it: virtctl.api, virtctl.render, virtctl.watch, the reconciler,
drivers, converters and the foundation modules. Nothing imports it but virtctl.entry and
virtctl.__main__. Verbs import their heavy modules inside the function, so `--help` and
`get` load only what they use (tests/unit/test_layout.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def main(argv: Sequence[str] | None = None, **streams: Any) -> int:
    """`virtctl ...`: the whole CLI (virtctl/cli/commands.py), imported only when called."""
    from .commands import main as run

    return run(argv, **streams)
