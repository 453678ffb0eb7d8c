"""Where the flow gets its snapshots: the host observer, or fixed facts.

``SnapshotSource`` is what the runner and the watcher ask for a snapshot.
``SharedObserver`` wraps the one ``HostObserver`` of a process: snapshots are
taken one at a time (collectors keep windowed state), and a snapshot taken a
moment ago is reused by the next caller unless it asks for a fresh one, so
an incident opened by the watcher's tick does not pay for a second
collection. Verification after an action always asks for a fresh one.
``StaticSnapshots`` returns given facts, for replays, drills and benchmarks.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol

from engine.facts.base import Snapshot
from engine.facts.observer import HostObserver
from engine.runtime import Clock

REUSE_S = 2.0


class SnapshotSource(Protocol):
    def snapshot(
        self, posted: Mapping[str, Any] | None = None, *, fresh: bool = False
    ) -> Snapshot: ...


class SharedObserver:
    def __init__(self, observer: HostObserver, clock: Clock, reuse_s: float = REUSE_S):
        self._observer = observer
        self._clock = clock
        self._reuse_s = reuse_s
        self._lock = threading.Lock()
        self._last: Snapshot | None = None

    def snapshot(
        self, posted: Mapping[str, Any] | None = None, *, fresh: bool = False
    ) -> Snapshot:
        with self._lock:
            if not fresh and not posted and self._recent():
                assert self._last is not None
                return self._last
            taken = self._observer.snapshot(posted)
            if not posted:
                self._last = taken
            return taken

    def _recent(self) -> bool:
        if self._last is None:
            return False
        age = (self._clock.now() - self._last.taken_at).total_seconds()
        return age < self._reuse_s

    def close(self) -> None:
        self._observer.close()


class StaticSnapshots:
    """Always the same facts (merged with what a source posted)."""

    def __init__(self, facts: Mapping[str, Any], clock: Clock) -> None:
        self._facts = dict(facts)
        self._clock = clock

    def snapshot(
        self, posted: Mapping[str, Any] | None = None, *, fresh: bool = False
    ) -> Snapshot:
        facts = {**self._facts, **(posted or {})}
        provenance = {name: "posted" for name in (posted or {})}
        provenance.update(
            {name: "replay" for name in self._facts if name not in provenance}
        )
        return Snapshot(self._clock.now(), facts, provenance, {})
