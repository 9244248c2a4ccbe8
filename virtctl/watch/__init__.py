"""`virtctl watch`: continuous reconciliation of watched spec paths.

fleet.py runs the watch (`run_watch`): one watcher per host the specs target, each
running loop.py's reconcile loop; sources.py wakes them (spec files, host events,
debounce), specs.py keeps each file's last good specs, routing.py sends each spec to its
host, metrics.py and logs.py report.
command.py is the CLI verb (`add_watch_parser`, `cmd_watch`). The loop (watchdog,
http.server) is imported only when used, so registering the verb costs the CLI nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .command import add_watch_parser, cmd_watch, parse_interval

if TYPE_CHECKING:
    from .fleet import run_watch

__all__ = ["add_watch_parser", "cmd_watch", "parse_interval", "run_watch"]


def __getattr__(name: str) -> Any:
    if name == "run_watch":
        from .fleet import run_watch

        return run_watch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
