"""Time windows and moving baselines for collectors that read logs.

Log collectors fold each line into a bucket for its second; ``SecondBuckets``
keeps only the seconds inside the window, so memory depends on the window
length, not on the traffic. ``Baseline`` is an exponentially weighted moving
average over time (not over samples), so snapshots taken at irregular
intervals weigh the same per minute of history; it answers "how does this
value compare with normal" before folding the new value in, so a surge is
measured against the baseline that preceded it.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

B = TypeVar("B")


class SecondBuckets(Generic[B]):
    def __init__(self, factory: Callable[[], B]) -> None:
        self._factory = factory
        self._buckets: dict[int, B] = {}

    def at(self, second: int) -> B:
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = self._factory()
        return bucket

    def evict_before(self, second: int) -> list[B]:
        """Drop the buckets older than ``second``; return them."""
        old = [s for s in self._buckets if s < second]
        return [self._buckets.pop(s) for s in old]

    def __iter__(self) -> Iterator[B]:
        return iter(self._buckets.values())

    def __len__(self) -> int:
        return len(self._buckets)


class Baseline:
    """A moving average of a rate with time constant ``tau_s``."""

    def __init__(self, tau_s: float, *, floor: float) -> None:
        self.tau_s = tau_s
        self.floor = floor  # keeps the ratio finite when normal is zero
        self.value: float | None = None
        self._at: float | None = None

    def compare_and_update(self, current: float, at: float) -> float | None:
        """``current / baseline`` (None on the first sample), then update."""
        if self.value is None or self._at is None:
            self.value, self._at = current, at
            return None
        ratio = current / max(self.value, self.floor)
        elapsed = max(at - self._at, 0.0)
        weight = 1.0 - math.exp(-elapsed / self.tau_s)
        self.value += weight * (current - self.value)
        self._at = at
        return ratio


class Trend:
    """Samples of a level over ``window_s``; its change per minute."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float) -> None:
        self._samples.append((at, value))
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.window_s:
            self._samples.popleft()

    def per_minute(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        if end - start < 1.0:
            return None
        return (last - first) * 60.0 / (end - start)


class CounterWindow:
    """Samples of a monotonic counter; its increase over ``window_s``.

    A counter that went down was reset (PM2 ``reset``, a re-created cgroup):
    its new value is the increase since the reset, as Prometheus counts it.
    The newest sample from before the window is kept as the starting point.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, value: int) -> None:
        self._samples.append((at, value))
        while len(self._samples) > 2 and self._samples[1][0] <= at - self.window_s:
            self._samples.popleft()

    @property
    def last_at(self) -> float | None:
        return self._samples[-1][0] if self._samples else None

    def increase(self) -> int | None:
        if len(self._samples) < 2:
            return None
        total = 0
        values = [value for _, value in self._samples]
        for before, after in itertools.pairwise(values):
            total += after - before if after >= before else after
        return total
