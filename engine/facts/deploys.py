"""Recent deploys: the deploy log CI appends to, PM2 versions, the API.

CI appends one JSON object per line to the deploy log::

    {"at": "2026-12-04T14:58:00Z", "app": "api", "version": "1.4.2",
     "previous_version": "1.4.1", "kind": "code", "source": "ci"}

The log is read incrementally with ``LogTail`` (the last ``backlog_bytes``
on the first read) and the newest deploys are kept on the collector. Lines
that are not such objects are counted and skipped, never fatal. Further
deploys come from ``sources``: callables returning ``Deploy`` records, fed
by the PM2 collector (a version change it saw between snapshots) and by the
API (``POST /v1/deploys``). The facts give the most recent ones with the
minutes since each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.facts.logtail import LogTail

log = logging.getLogger("engine.facts.deploys")

KEPT = 20
DeploySource = Callable[[], Iterable["Deploy"]]


@dataclass(frozen=True, slots=True)
class Deploy:
    at: datetime
    app: str | None = None
    version: str | None = None
    previous_version: str | None = None
    kind: str | None = "code"
    source: str | None = None  # deploy_log, api, pm2

    @property
    def identity(self) -> tuple[str | None, str | None, float]:
        return (self.app, self.version, self.at.timestamp())


def parse_deploy_line(line: bytes) -> Deploy | None:
    """One deploy-log line, or None when it is not a deploy record."""
    try:
        record = json.loads(line)
        at = datetime.fromisoformat(str(record["at"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(record, dict) or at.tzinfo is None:
        return None
    return Deploy(
        at=at,
        app=_text(record.get("app")),
        version=_text(record.get("version")),
        previous_version=_text(record.get("previous_version")),
        kind=_text(record.get("kind")) or "code",
        source=_text(record.get("source")) or "deploy_log",
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(value)[:256]


class DeployCollector:
    name: str = "deploys"
    sections: tuple[str, ...] = ("deploys",)

    def __init__(
        self,
        path: Path | None,
        *,
        sources: Sequence[DeploySource] = (),
        backlog_bytes: int = 1 << 20,
    ) -> None:
        self.tail = LogTail(path, backlog_bytes=backlog_bytes) if path else None
        self.sources = list(sources)
        self.bad_lines = 0
        self._logged: list[Deploy] = []

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()

    def add_source(self, source: DeploySource) -> None:
        self.sources.append(source)

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        self._read_log()
        known = self._logged + [d for source in self.sources for d in source()]
        recent = _newest(known)
        return {"deploys": _facts(recent, now)}

    def _read_log(self) -> None:
        if self.tail is None:
            return
        try:
            found = [d for d in map(self._parse, self.tail.lines()) if d]
        except FileNotFoundError:
            return  # no deploy recorded yet: nothing to report, not a failure
        self._logged = _newest(self._logged + found)

    def _parse(self, line: bytes) -> Deploy | None:
        if not line.strip():
            return None
        deploy = parse_deploy_line(line)
        if deploy is None:
            self.bad_lines += 1
            log.warning("deploys.bad_line", extra={"bytes": len(line)})
        return deploy


def _newest(deploys: Iterable[Deploy]) -> list[Deploy]:
    unique = {d.identity: d for d in deploys}
    return sorted(unique.values(), key=lambda d: d.at, reverse=True)[:KEPT]


def _facts(recent: list[Deploy], now: datetime) -> dict[str, Any]:
    rows = [_row(d, now) for d in recent]
    last = rows[0] if rows else {}
    return {
        "available": True,
        "last_minutes_ago": last.get("minutes_ago"),
        "last_kind": last.get("kind"),
        "last_version": last.get("version"),
        "last_app": last.get("app"),
        "previous_version": last.get("previous_version"),
        "recent": rows,
    }


def _row(deploy: Deploy, now: datetime) -> dict[str, Any]:
    # A deploy stamped a little in the future (clock skew) happened just now.
    minutes = max((now - deploy.at).total_seconds() / 60.0, 0.0)
    return {
        "app": deploy.app,
        "version": deploy.version,
        "previous_version": deploy.previous_version,
        "kind": deploy.kind,
        "at": deploy.at.isoformat(),
        "minutes_ago": round(minutes, 2),
        "source": deploy.source,
    }
