"""The applier's clock: `now` and `sleep`, injected so tests and benchmarks run the
stop ladder and the live waits without real time passing.

Its own module so apply.py, applylive.py and applystop.py all import it without importing
each other (apply.py imports the other two).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
