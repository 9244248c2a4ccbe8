"""What wakes the watch loop: spec file changes, driver events, and the resync clock.

Called by the watch loop. Other threads (watchdog's observer, the driver's event
thread) only *note* things in an `Inbox`; the loop's one thread decides and acts on the
state it reads then (level-based). The pieces:

- `Debouncer`: trailing-edge debounce with a cap, pure given the times it is handed.
  Editors save by writing a temporary file and renaming it, or write in several chunks;
  acting only after the directory has been quiet for a moment sees the finished state.
- `Expectations`: the events our own actions will cause, so they wake nobody.
- `Inbox`: a condition variable holding the pending wake-ups.
- `SpecWatch`: a watchdog Observer over the spec paths, feeding the inbox.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ..drivers.base import Event, EventType
from ..model import ObjectKey
from ..reconciler.plan.actions import (
    Action,
    Define,
    Destroy,
    Resume,
    Shutdown,
    Start,
    Suspend,
    Undefine,
)
from ..reconciler.load.load import SPEC_SUFFIXES


class Trigger(StrEnum):
    START = "start"
    SPEC = "spec"
    EVENT = "event"
    RESYNC = "resync"
    RETRY = "retry"


@dataclass(slots=True)
class Debouncer:
    """Fires `delay` seconds after the last poke, or `cap` seconds after the first."""

    delay: float = 0.1
    cap: float = 1.0
    _first: float | None = None
    _last: float | None = None

    def poke(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def deadline(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.delay, self._first + self.cap)

    def take(self, now: float) -> bool:
        """True (and reset) if the quiet period has passed."""
        due = self.deadline()
        if due is None or now < due:
            return False
        self._first = self._last = None
        return True


# The events each action causes on the host; drivers report a define as either.
# The events each action causes; each set is one event to absorb. Starting a QEMU guest
# also reports it resumed (libvirt's "unpaused"); the sim does not, and an unused
# expectation simply lapses.
_CAUSES: dict[type, tuple[frozenset[EventType], ...]] = {
    Define: (frozenset({EventType.DEFINED, EventType.CHANGED}),),
    Undefine: (frozenset({EventType.UNDEFINED}),),
    Start: (frozenset({EventType.STARTED}), frozenset({EventType.RESUMED})),
    Shutdown: (frozenset({EventType.STOPPED, EventType.CHANGED}),),
    Destroy: (frozenset({EventType.STOPPED}),),
    Suspend: (frozenset({EventType.SUSPENDED}),),
    Resume: (frozenset({EventType.RESUMED}),),
}


@dataclass(slots=True)
class Expectations:
    """Events our own actions will cause: each one expected absorbs one matching event.

    Precise rather than a blanket "ignore what we touched": a guest stopped by someone
    else right after we started it sends STOPPED, which no Start expects, so it wakes
    the loop. Expectations lapse after `ttl` seconds, so a lost event costs nothing.
    Keyed by object, so a big apply's thousands of echoes cost one lookup each.
    """

    ttl: float = 10.0
    _pending: dict[ObjectKey, list[tuple[frozenset[EventType], float]]] = field(
        default_factory=dict)
    _next_sweep: float = 0.0

    def expect(self, action: Action, now: float) -> None:
        all_causes = _CAUSES.get(type(action), ())
        if all_causes:
            self._sweep(now)
            entries = self._pending.setdefault(action.key, [])
            entries.extend((causes, now + self.ttl) for causes in all_causes)

    def forget(self, action: Action) -> None:
        """The action failed or was skipped: it will cause no event."""
        entries = self._pending.get(action.key, [])
        for causes in _CAUSES.get(type(action), ()):
            for index, (pending, _) in enumerate(entries):
                if pending == causes:
                    del entries[index]
                    break

    def absorb(self, event: Event, now: float) -> bool:
        """True if the event is one we caused (and is now accounted for)."""
        if event.kind is None or event.name is None:
            return False
        key = ObjectKey(event.kind, event.name)
        entries = [e for e in self._pending.get(key, []) if e[1] > now]
        match = next((i for i, (causes, _) in enumerate(entries) if event.type in causes), None)
        if match is not None:
            del entries[match]
        if entries:
            self._pending[key] = entries
        else:
            self._pending.pop(key, None)
        return match is not None

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.ttl
        for key in list(self._pending):
            live = [e for e in self._pending[key] if e[1] > now]
            if live:
                self._pending[key] = live
            else:
                del self._pending[key]


@dataclass(frozen=True, slots=True)
class Wakeup:
    triggers: frozenset[Trigger]
    events: tuple[Event, ...] = ()


class Inbox:
    """Pending wake-ups, filled by any thread, drained by the loop."""

    def __init__(
        self, *, debounce: Debouncer, expectations: Expectations,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cond = threading.Condition()
        self._debounce = debounce
        self._expect = expectations
        self._clock = clock
        self._events: list[Event] = []
        self._stopping = False

    def spec_changed(self) -> None:
        with self._cond:
            self._debounce.poke(self._clock())
            self._cond.notify()

    def driver_event(self, event: Event) -> None:
        with self._cond:
            if self._expect.absorb(event, self._clock()):
                return
            self._events.append(event)
            self._cond.notify()

    def expect(self, action: Action) -> None:
        with self._cond:
            self._expect.expect(action, self._clock())

    def forget(self, action: Action) -> None:
        with self._cond:
            self._expect.forget(action)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def wait(self, until: float) -> Wakeup:
        """Block until something is due or `until` (monotonic) passes; empty on timeout."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                ready = self._drain(now)
                if ready.triggers or now >= until:
                    return ready
                due = self._debounce.deadline()
                self._cond.wait(max(0.0, min(until, due if due is not None else until) - now))
            return Wakeup(frozenset())

    def _drain(self, now: float) -> Wakeup:
        triggers: set[Trigger] = set()
        if self._debounce.take(now):
            triggers.add(Trigger.SPEC)
        events, self._events = tuple(self._events), []
        if events:
            triggers.add(Trigger.EVENT)
        return Wakeup(frozenset(triggers), events)


# -- spec files -------------------------------------------------------------------------

_RELEVANT = frozenset({"created", "modified", "deleted", "moved", "closed"})


def is_relevant(path: str, *, is_directory: bool) -> bool:
    """Could a change at `path` change what the specs declare? Hidden files, editor
    backups and swap files cannot; directories can (a renamed folder of specs)."""
    name = os.path.basename(path.rstrip(os.sep))
    if not name or name.startswith(".") or name.endswith("~"):
        return False
    return is_directory or name.lower().endswith(SPEC_SUFFIXES)


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[], None], only: str | None) -> None:
        self._notify = notify
        self._only = only  # a single watched file in this directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _RELEVANT:
            return  # opened / closed_no_write: our own reads
        paths = [os.fsdecode(event.src_path)]
        if event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        if self._only is not None:
            if any(os.path.abspath(p) == self._only for p in paths):
                self._notify()
            return
        if any(is_relevant(p, is_directory=event.is_directory) for p in paths):
            self._notify()


class SpecWatch:
    """Watch directories recursively; watch a single file through its directory, since
    save-by-rename replaces the file (and an inotify watch on it would follow the old
    inode)."""

    def __init__(self, paths: Sequence[str], notify: Callable[[], None]) -> None:
        self._observer = Observer()
        self._observer.daemon = True
        for given in paths:
            path = Path(given).resolve()
            if path.is_dir():
                self._observer.schedule(_Handler(notify, None), str(path), recursive=True)
            else:
                self._observer.schedule(
                    _Handler(notify, str(path)), str(path.parent), recursive=False
                )

    def start(self) -> None:
        self._observer.start()

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=2)
