"""`python -m tests.integration.heldrun ARGS...`: `virtctl ARGS...` with one call of the
libvirt driver held, so a crash test can kill the run (SIGKILL) at an exact point on
real libvirt (test_checkpoints_crash_qemu.py). It is the sim's `stall` fault
(virtctl/drivers/sim/driver.py) for the real driver: libvirt itself has no way to hold
a call open, and most points between a checkpoint and a health verdict last
milliseconds on a real host.

$VCTL_TEST_HOLD is `OP[:N][@AFTER]`: the Nth call (1 by default) of `LibvirtDriver.OP`
whose arguments name $VCTL_TEST_HOLD_NAME (a guest's name, in a name or in a
definition's XML), counting only calls made once `AFTER` has been called for it (when
given: `destroy@agent_ping` is the rollback's destroy, not the stop's), writes
$VCTL_TEST_HOLD_MARK and then never returns, before it reaches libvirt: the run stays
at that point until the test, seeing the mark, kills it. Every other call, and every
call when $VCTL_TEST_HOLD is unset, is the real one. This module is test tooling:
virtctl itself has no such hook.
"""

from __future__ import annotations

import os
import runpy
import threading
from pathlib import Path
from typing import Any


def hold(op: str, nth: int, after: str, name: str, mark: Path) -> None:
    from virtctl.drivers.libvirt.driver import LibvirtDriver

    calls = 0
    seen = not after

    def named(args: tuple[Any, ...]) -> bool:
        return any(name in str(arg) for arg in args)

    def held(real: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            if seen and named(args):
                calls += 1
                if calls == nth:
                    mark.write_text(f"{op} #{nth}\n")
                    threading.Event().wait()  # held until the test kills the process
            return real(self, *args, **kwargs)
        return call

    def watched(real: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal seen
            seen = seen or named(args)
            return real(self, *args, **kwargs)
        return call

    if after:  # wrapped first: a call to OP itself may also be the AFTER call
        setattr(LibvirtDriver, after, watched(getattr(LibvirtDriver, after)))
    setattr(LibvirtDriver, op, held(getattr(LibvirtDriver, op)))


def main() -> None:
    spec = os.environ.get("VCTL_TEST_HOLD", "")
    if spec:
        spec, _, after = spec.partition("@")
        op, _, nth = spec.partition(":")
        hold(op, int(nth or 1), after, os.environ["VCTL_TEST_HOLD_NAME"],
             Path(os.environ["VCTL_TEST_HOLD_MARK"]))
    runpy.run_module("virtctl", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
