"""The contract of a snapshot collector and of the snapshot it helps build.

A collector fills one section of ``snapshot`` in the facts document (see
``facts.schema.yaml``): ``host``, ``memory``, ``pm2``, ``nginx``... It runs with
a time budget, in parallel with the others, and reports a failure as data:
the observer turns an exception or a timeout into
``{"available": false, "error": "..."}`` for its sections, and the snapshot
goes on. Collectors that derive windowed signals (restart rate, growth per
minute, moving baselines, log offsets) keep that state on their instance, so
one long-lived observer watches one host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class Collector(Protocol):
    name: str  # "pm2"
    sections: tuple[str, ...]  # snapshot sections it writes: ("pm2",)

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        """Return ``{section: facts}``; raise to report a failure."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    facts: Mapping[str, Any]  # the ``snapshot`` section of the facts document
    provenance: Mapping[str, str] = field(default_factory=dict)  # section: source
    durations_ms: Mapping[str, float] = field(default_factory=dict)  # collector: ms
