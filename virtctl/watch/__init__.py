"""`virtctl watch`: continuous reconciliation of watched spec paths.

loop.py runs the loop (`run_watch`), sources.py wakes it (spec files, host events,
debounce), specs.py keeps each file's last good specs, metrics.py and logs.py report.
command.py is the CLI verb (`add_watch_parser`, `cmd_watch`). The loop (watchdog,
http.server) is imported only when used, so registering the verb costs the CLI nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .command import add_watch_parser, cmd_watch, parse_interval

if TYPE_CHECKING:
    from .loop import run_watch

__all__ = ["add_watch_parser", "cmd_watch", "parse_interval", "run_watch"]


def __getattr__(name: str) -> Any:
    if name == "run_watch":
        from .loop import run_watch

        return run_watch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
