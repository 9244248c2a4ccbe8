"""What the next `apply` does with a journal entry a killed run left (journal.py).

Read first thing, under the host's lock, before planning. For each entry:

- the guest is gone: the entry is dropped;
- its checkpoint was never taken (killed while taking it): nothing was changed under
  it, the entry is dropped and planning goes on as usual;
- it was rolling back: the rollback is done again (restoring a checkpoint twice gives
  the same guest), the guest left off for the plan to start (not recorded as a failed
  change: the plan makes the change once more, under a new gate);
- the change is complete (the definition and the running guest carry the spec-hash
  the change defines, or the guest was to stay off and its definition does): the health
  gate is finished (healthy: done; not: rolled back, as the run would have);
- else the change was cut short: rolled back to the checkpoint (the guest left off), and
  planning makes the change again under a new checkpoint, or starts the guest as it
  was when the spec no longer changes it.

Each returns one line saying which, for the plan's notes.
"""

from __future__ import annotations

from typing import Any

from ...errors import DriverError, VirtctlError
from ...model import DomainState, Kind
from .execute import HealthFailed, owner_hash, restore, verdict
from .journal import Entry, Journal, Stage


def complete(driver: Any, entry: Entry) -> bool:
    """Whether the change the entry guards is fully made on the host."""
    if owner_hash(driver.definition(Kind.DOMAIN, entry.guest)) != entry.target:
        return False
    state = driver.domain_state(entry.guest)
    if not entry.running:
        return True
    if state is not DomainState.RUNNING:
        return False
    return owner_hash(driver.definition(Kind.DOMAIN, entry.guest, running=True)) \
        == entry.target


def recover_one(driver: Any, entry: Entry, clock: Any, journal: Journal) -> str:
    name, cp = entry.guest, entry.checkpoint
    where = f"domain/{name}: a run was interrupted at '{entry.stage}' (checkpoint {cp})"
    if driver.domain_state(name) is None:
        journal.clear(name)
        return f"{where}; the guest is gone: nothing to finish"
    if cp not in {s.name for s in driver.snapshots(name)}:
        journal.clear(name)
        return f"{where}; the checkpoint was never taken, so nothing changed under it"
    # A rollback here leaves the guest off: planning follows at once and starts it (under
    # a new checkpoint and gate when the spec still changes it), where a guest started
    # now would be stopped again while it boots, before it heeds a shutdown.
    if entry.stage is Stage.ROLLBACK:
        # Not remembered as a failure (planning.hold): the verdict was the killed run's,
        # and the plan that follows makes the change once more under a new gate.
        restore(driver, name, cp, start=False)
        journal.clear(name)
        return f"{where}; finished rolling back to {cp} (started by the plan)"
    if complete(driver, entry):
        try:
            detail = verdict(driver, name, entry, entry.health, entry.rollback, clock, journal,
                             start=False)
        except HealthFailed as exc:
            return f"{where}; finished the health gate: {exc.message}"
        return f"{where}; finished the health gate: {detail}"
    restore(driver, name, cp, start=False)
    journal.clear(name)
    return f"{where}; the change was cut short: rolled back to {cp} (started by the plan)"


def recover(driver: Any, clock: Any) -> tuple[str, ...]:
    """Finish or roll back every change a killed run left on this host."""
    journal = Journal(driver.uri)
    notes = []
    for entry in list(journal.entries()):
        try:
            notes.append(recover_one(driver, entry, clock, journal))
        except (DriverError, VirtctlError) as exc:
            notes.append(f"domain/{entry.guest}: could not finish the interrupted change "
                         f"(checkpoint {entry.checkpoint}): {exc}; the journal is kept")
    return tuple(notes)


def pending(uri: str) -> tuple[str, ...]:
    """For diff and dry runs: the interrupted changes the next apply will settle."""
    return tuple(
        f"domain/{e.guest}: a run was interrupted at '{e.stage}' (checkpoint "
        f"{e.checkpoint}): the next apply finishes its health gate or rolls back"
        for e in Journal(uri).entries())
