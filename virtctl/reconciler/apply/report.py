"""`Report`: what applying a plan did, one `ActionResult` (action, `Outcome`, error)
per action, and the run's exit status. Its own module so renderers and virtctl.api name
it without importing the applier.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ...errors import VirtctlError
from ..plan.actions import Action


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    # Done, but the guest did not take all of it (a device it kept, a balloon that did
    # not move): the rest stays restart-pending. Not a failure (exit 0).
    PENDING = "pending"
    # The host stopped answering while it ran (a call timed out, the connection was
    # lost): it may or may not have happened. The run stopped there (exit 1).
    UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: Action
    outcome: Outcome
    error: VirtctlError | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    results: tuple[ActionResult, ...] = ()
    # Why the run stopped part way because the host stopped answering ("" if it did
    # not): nothing after the uncertain action ran, and the connection is given up.
    lost_host: str = ""
    # Why the run stopped part way because it lost the host's lock (an etcd lease not
    # renewed in time, docs/fleet.md; "" if it did not): nothing after it ran.
    lost_lock: str = ""

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def done(self) -> int:
        return self.count(Outcome.DONE)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    @property
    def skipped(self) -> int:
        return self.count(Outcome.SKIPPED)

    @property
    def pending(self) -> int:
        return self.count(Outcome.PENDING)

    @property
    def uncertain(self) -> int:
        return self.count(Outcome.UNCERTAIN)

    @property
    def return_code(self) -> int:
        return 1 if self.failed or self.skipped or self.uncertain else 0
