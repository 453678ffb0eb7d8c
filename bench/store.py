"""Storage benchmark: load one incident with its timeline from a full store.

Fills a fresh SQLite file and, when a server is given, a fresh PostgreSQL
schema with 100,000 incidents (one alert each) and 1,000,000 timeline events
spread across them in time order, the way a busy store interleaves them. Then
loads a random incident with ``load_incident`` (timeline and every related
row) in a new read session, 1,000 times, and prints the 50th and 99th
percentile per database against the 20 ms p99 target; then the same for the
incident and its events alone. SQLite is filled with executemany,
PostgreSQL with COPY. The PostgreSQL schema is dropped afterwards.

    python -m bench.store [--postgres URL] [--incidents N] [--events N]

Without ``--postgres`` the URL comes from ``TEST_DATABASE_URL``; with
neither, only SQLite runs. Exits 1 when a database misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, text
from sqlalchemy.orm import Session

from engine.store.db import Database, open_database, upgrade
from engine.store.events import timeline
from engine.store.incidents import get_incident, load_incident
from engine.store.models import Alert, Incident, IncidentEvent, Organization
from tests.support.databases import PostgresSchema, sqlite_url

TARGET_P99_MS = 20.0
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 20_000
WARMUP = 50
EVENT_KINDS = ("stage.completed", "action.planned", "action.finished", "note")
ORG_ID = "org_bench"

Loader = Callable[[Session, str], None]


@dataclass(frozen=True, slots=True)
class Shape:
    incidents: int
    events: int
    loads: int
    seed: int


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    fill_s: float
    view: Sequence[float]  # load_incident: timeline and every related row
    timeline: Sequence[float]  # the incident and its events only

    @property
    def ok(self) -> bool:
        return percentile(self.view, 0.99) < TARGET_P99_MS

    def render(self) -> str:
        verdict = "ok" if self.ok else "MISSED"
        return (
            f"{self.name:<11} fill {self.fill_s:6.1f} s | load_incident "
            f"{summary(self.view)} (target p99 < {TARGET_P99_MS:g} ms: {verdict})"
            f" | incident + events only {summary(self.timeline)}"
        )


def summary(timings: Sequence[float]) -> str:
    p50, p99 = statistics.median(timings), percentile(timings, 0.99)
    return f"p50 {p50:5.2f} ms p99 {p99:5.2f} ms"


def incident_id(number: int) -> str:
    return f"inc_{number:08d}"


def incident_rows(shape: Shape) -> Iterator[dict[str, Any]]:
    for n in range(shape.incidents):
        at = START + timedelta(seconds=30 * n)
        yield {
            "id": incident_id(n),
            "org_id": ORG_ID,
            "dedup_key": f"bench:{n}",
            "title": f"Memory high on web-{n % 50}",
            "severity": ("info", "warning", "critical")[n % 3],
            "status": "resolved" if n < shape.incidents - 100 else "open",
            "created_at": at,
            "updated_at": at,
            "first_signal_at": at,
            "alert_count": 1,
            "last_alert_at": at,
            "stage": None,
        }


def alert_rows(shape: Shape) -> Iterator[dict[str, Any]]:
    for n in range(shape.incidents):
        yield {
            "id": f"alr_{n:08d}",
            "org_id": ORG_ID,
            "incident_id": incident_id(n),
            "source": "alertmanager",
            "kind": "threshold_exceeded",
            "fingerprint": f"fp-{n % 50}",
            "status": "firing",
            "severity": "warning",
            "received_at": START + timedelta(seconds=30 * n),
            "payload": {"alertname": "HostMemoryHigh", "instance": f"web-{n % 50}"},
            "facts": {"alert": {"name": "HostMemoryHigh", "value": 93.5}},
        }


def event_rows(shape: Shape) -> Iterator[dict[str, Any]]:
    """Events in time order: each goes to one of the incidents open by then."""
    rng = random.Random(shape.seed)
    step = 30 * shape.incidents / shape.events
    for n in range(shape.events):
        seconds = step * n
        newest = min(int(seconds // 30), shape.incidents - 1)
        owner = rng.randint(max(0, newest - 20), newest)
        yield {
            "incident_id": incident_id(owner),
            "org_id": ORG_ID,
            "at": START + timedelta(seconds=seconds),
            "kind": EVENT_KINDS[n % len(EVENT_KINDS)],
            "stage": "stabilize",
            "actor": "worker:bench",
            "message": "pm2 restart web: exit 0 in 1.4 s",
            "data": {"duration_ms": 1400, "exit_status": 0},
        }


def batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def add_org(conn: Connection) -> None:
    conn.execute(
        insert(Organization).values(
            id=ORG_ID, name="bench", auto_execute=False, created_at=START
        )
    )


def fill_with_executemany(conn: Connection, shape: Shape) -> None:
    add_org(conn)
    for model, rows in (
        (Incident, incident_rows(shape)),
        (Alert, alert_rows(shape)),
        (IncidentEvent, event_rows(shape)),
    ):
        for batch in batches(rows):
            conn.execute(insert(model), batch)


def fill_with_copy(conn: Connection, shape: Shape) -> None:
    add_org(conn)
    raw = conn.connection.driver_connection
    assert raw is not None
    for table, rows in (
        ("tms_incidents", incident_rows(shape)),
        ("tms_alerts", alert_rows(shape)),
        ("tms_incident_events", event_rows(shape)),
    ):
        copy_rows(raw, table, rows)


def copy_rows(raw: Any, table: str, rows: Iterator[dict[str, Any]]) -> None:
    first = next(rows)
    columns = list(first)
    with raw.cursor() as cursor:
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with cursor.copy(statement) as copy:
            copy.write_row([copy_value(first[c]) for c in columns])
            for row in rows:
                copy.write_row([copy_value(row[c]) for c in columns])


def copy_value(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def measure(db: Database, shape: Shape, load: Loader) -> list[float]:
    rng = random.Random(shape.seed + 1)
    timings: list[float] = []
    for n in range(WARMUP + shape.loads):
        target = incident_id(rng.randrange(shape.incidents))
        started = time.perf_counter()
        with db.readers() as session:
            load(session, target)  # raises NotFoundError if the fill went wrong
        elapsed = (time.perf_counter() - started) * 1000
        if n >= WARMUP:
            timings.append(elapsed)
    return timings


def load_view(session: Session, target: str) -> None:
    load_incident(session, ORG_ID, target)


def load_timeline(session: Session, target: str) -> None:
    get_incident(session, ORG_ID, target)
    timeline(session, ORG_ID, target)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(name: str, url: str, shape: Shape, *, copy: bool) -> Result:
    upgrade(url)
    db = open_database(url)
    try:
        started = time.perf_counter()
        with db.engine.begin() as conn:
            (fill_with_copy if copy else fill_with_executemany)(conn, shape)
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        fill_s = time.perf_counter() - started
        view = measure(db, shape, load_view)
        only_events = measure(db, shape, load_timeline)
    finally:
        db.dispose()
    return Result(name, fill_s, view, only_events)


def run_sqlite(shape: Shape) -> Result:
    with tempfile.TemporaryDirectory(prefix="ip-bench-") as directory:
        return run("sqlite", sqlite_url(Path(directory), "bench"), shape, copy=False)


def run_postgres(server_url: str, shape: Shape) -> Result:
    schema = PostgresSchema(server_url, prefix="ip_bench")
    try:
        return run("postgresql", schema.create(), shape, copy=True)
    finally:
        schema.drop()


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.store")
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    shape = Shape(args.incidents, args.events, args.loads, args.seed)
    print(
        f"store benchmark: {shape.incidents:,} incidents, {shape.events:,} "
        f"events, {shape.loads:,} loads of one incident with its timeline "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    results = [run_sqlite(shape)]
    print(results[-1].render(), flush=True)
    if args.postgres:
        results.append(run_postgres(args.postgres, shape))
        print(results[-1].render())
    else:
        print("postgresql  skipped: pass --postgres URL or set TEST_DATABASE_URL")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
