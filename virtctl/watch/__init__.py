"""`virtctl watch`: continuous reconciliation of watched spec paths.

fleet.py runs the watch (`run_watch`): one watcher per host the specs target, each
running loop.py's reconcile loop; sources.py wakes them (spec files, host events,
debounce), specs.py keeps each file's last good specs, routing.py sends each spec to its
host, commit.py caches the specs' git commit, metrics.py and logs.py report;
membership.py and fleetmember.py share the hosts among the members of a fleet (etcd).
The verb itself (arguments, `cmd_watch`) is virtctl/cli/watch.py.

May import: virtctl.reconciler, virtctl.drivers, virtctl.coord and the foundation
modules; never virtctl.cli or virtctl.api. Nothing is imported here, so `import
virtctl.watch.x` costs only x (watchdog and http.server load only when watching).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fleet import run_watch

__all__ = ["run_watch"]


def __getattr__(name: str) -> Any:
    if name == "run_watch":
        from .fleet import run_watch

        return run_watch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
