"""Waiting for a tool to show the effect of an action, a bounded number of times.

Some effects appear after the command returns: nginx starts new workers
after ``nginx -s reload`` has already exited. ``Poll`` observes, tests and
sleeps between attempts, at most ``wait_s`` in total, and returns the last
observation either way so the verification can say what it saw. Sleeping is
injected, so tests that need no waiting pass a no-op.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Poll:
    wait_s: float = 10.0
    interval_s: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep)

    def until(self, observe: Callable[[], T], done: Callable[[T], bool]) -> T:
        attempts = max(1, math.ceil(self.wait_s / self.interval_s) + 1)
        seen = observe()
        for _ in range(attempts - 1):
            if done(seen):
                break
            self.sleep(self.interval_s)
            seen = observe()
        return seen
