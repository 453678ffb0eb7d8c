"""Benchmark of the flow without HTTP: alert fact to brief, on one core.

For SQLite (a temporary file) and PostgreSQL (a throwaway schema on the
server ``TEST_DATABASE_URL`` names, when set), in one run:

- intake: alerts accepted per second, each in its own durable transaction;
- flow: incidents per second taken from accepted to done (snapshot,
  stabilize with dry-run executors, classify, brief, impact, message,
  recommend) by one worker;
- end to end: a producer accepting alerts and a worker driving them, both in
  this process pinned to one core: incidents per second from the first alert
  to the last brief;
- latency: at a paced rate, the time from an alert's commit to its first
  action starting (p50/p99). Snapshots come from fixed facts, so collection
  time is excluded (``python -m bench.snapshot`` measures it with the real
  tools).

Loading one incident with its timeline among 100,000 incidents and a million
events is ``python -m bench.store``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.actions.base import ActionRequest, ActionSpec, ExecutionResult
from engine.actions.registry import RecordingExecutor, recording_executors
from engine.facts.scenario import scenario_facts
from engine.flow.accept import Entry, accept_many
from engine.flow.runner import FlowDeps, Worker
from engine.flow.snapshots import StaticSnapshots
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.sources.generic import GenericAlertIn, to_alert
from engine.store.db import Database, open_database, upgrade
from engine.store.orgs import ensure_org
from tests.support.databases import PostgresSchema, sqlite_url
from tests.support.fixtures import load_json

RULES = Path(__file__).resolve().parent.parent / "rules"
GROUP = 32  # alerts per intake commit in the grouped and end-to-end runs


class TimedExecutor(RecordingExecutor):
    """Records when each incident's first action started."""

    def __init__(self, name: str, started: dict[str, float]) -> None:
        super().__init__(name)
        self.started = started

    def run(
        self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool
    ) -> ExecutionResult:
        self.started.setdefault(request.incident_id, time.perf_counter())
        return super().run(request, spec, dry_run=dry_run)


class Setup:
    def __init__(self, url: str, policy: Policy, batch: int) -> None:
        upgrade(url)
        self.db: Database = open_database(url)
        self.runtime = Runtime.system()
        self.policy = policy
        facts = scenario_facts(load_json("scenarios/case-s06.json"))["snapshot"]
        self.started: dict[str, float] = {}
        executors: dict[str, Any] = recording_executors()
        executors.update({n: TimedExecutor(n, self.started) for n in executors})
        self.deps = FlowDeps(
            sessions=self.db.sessions,
            policy=lambda: policy,
            snapshots=StaticSnapshots(facts, self.runtime.clock),
            executors=executors,
            runtime=self.runtime,
            mode_override="dry_run",
            batch=batch,
        )
        with self.db.sessions.begin() as session:
            org = ensure_org(
                session,
                ids=self.runtime.ids,
                name="bench",
                now=self.runtime.clock.now(),
            )
            self.org_id = org.id
        self.serial = 0

    def accept_one(self) -> str:
        return self.accept_group(1)[0]

    def accept_group(self, size: int) -> list[str]:
        """``size`` alerts in one durable transaction, as the API's batcher."""
        entries = []
        for _ in range(size):
            self.serial += 1
            alert = to_alert(
                GenericAlertIn(kind="threshold_exceeded", name=f"Disk{self.serial}")
            )
            entries.append(Entry(self.org_id, alert))
        with self.db.sessions.begin() as session:
            accepted = accept_many(
                session,
                self.policy,
                entries,
                ids=self.runtime.ids,
                now=self.runtime.clock.now(),
            )
        self.deps.wake.set()
        return [a.incident_id or "" for a in accepted]

    def drain(self) -> None:
        worker = Worker(self.deps, "bench")
        while worker.run_once():
            pass


def measure(url: str, policy: Policy, incidents: int, batch: int) -> dict[str, float]:
    setup = Setup(url, policy, batch)
    began = time.perf_counter()
    for _ in range(incidents):
        setup.accept_one()
    intake = incidents / (time.perf_counter() - began)
    began = time.perf_counter()
    setup.drain()
    flow = incidents / (time.perf_counter() - began)
    began = time.perf_counter()
    grouped = 0
    while grouped < incidents:
        grouped += len(setup.accept_group(GROUP))
    intake_grouped = incidents / (time.perf_counter() - began)
    setup.drain()
    end_to_end = _concurrent(setup, incidents)
    p50, p99, rate = _latency(setup, min(incidents, 300))
    setup.db.dispose()
    return {
        "intake": intake,
        "intake_grouped": intake_grouped,
        "flow": flow,
        "end_to_end": end_to_end,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "paced_rate": rate,
    }


def _concurrent(setup: Setup, incidents: int) -> float:
    stop = threading.Event()
    worker = Worker(setup.deps, "bench-e2e")
    thread = threading.Thread(target=worker.run, args=(stop, 0.01), daemon=True)
    began = time.perf_counter()
    thread.start()
    ids: list[str] = []
    while len(ids) < incidents:
        ids += setup.accept_group(GROUP)
    while not _all_started(setup, ids):
        time.sleep(0.005)
    setup.drain()
    elapsed = time.perf_counter() - began
    stop.set()
    setup.deps.wake.set()
    thread.join()
    return incidents / elapsed


def _all_started(setup: Setup, ids: list[str]) -> bool:
    return all(i in setup.started for i in ids[-5:])


def _latency(
    setup: Setup, count: int, rate: float = 50.0
) -> tuple[float, float, float]:
    stop = threading.Event()
    worker = Worker(setup.deps, "bench-latency")
    thread = threading.Thread(target=worker.run, args=(stop, 0.5), daemon=True)
    thread.start()
    committed: dict[str, float] = {}
    for _ in range(count):
        tick = time.perf_counter()
        incident_id = setup.accept_one()
        committed[incident_id] = time.perf_counter()
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - tick)))
    deadline = time.monotonic() + 30
    while (
        not all(i in setup.started for i in committed) and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    stop.set()
    setup.deps.wake.set()
    thread.join()
    waits = sorted(
        (setup.started[i] - t) * 1000
        for i, t in committed.items()
        if i in setup.started
    )
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return statistics.median(waits), p99, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    policy = compile_policy(load(RULES))
    results: dict[str, Mapping[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as scratch:
        results["sqlite"] = measure(
            sqlite_url(Path(scratch)), policy, args.incidents, args.batch
        )
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        schema = PostgresSchema(server, prefix="ip_bench")
        try:
            results["postgresql"] = measure(
                schema.create(), policy, args.incidents, args.batch
            )
        finally:
            schema.drop()
    _print(results, args)
    return 0


def _print(
    results: Mapping[str, Mapping[str, float]], args: argparse.Namespace
) -> None:
    print(
        f"flow benchmark: {args.incidents} incidents, batch {args.batch}, one core, "
        "dry-run executors, fixed snapshot"
    )
    header = (
        "database",
        "intake/s (1 per commit)",
        f"intake/s ({GROUP} per commit)",
        "flow/s",
        "end-to-end/s",
        "first action p50 ms",
        "p99 ms",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, r in results.items():
        cells = (
            name,
            f"{r['intake']:.0f}",
            f"{r['intake_grouped']:.0f}",
            f"{r['flow']:.0f}",
            f"{r['end_to_end']:.0f}",
            f"{r['latency_p50_ms']:.1f}",
            f"{r['latency_p99_ms']:.1f}",
        )
        print("| " + " | ".join(cells) + " |")
    paced = next(iter(results.values()))["paced_rate"]
    print(f"targets (first action paced at {paced:.0f} alerts/s):")
    for line in verdicts(results):
        print(f"  {line}")


def verdicts(results: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per target and database: met or MISSED, with the figure."""
    lines = []
    if "sqlite" in results:
        rate = results["sqlite"]["end_to_end"]
        lines.append(_verdict(rate >= 200, f"sqlite end to end {rate:.0f}/s >= 200/s"))
    for name, r in results.items():
        p99 = r["latency_p99_ms"]
        lines.append(
            _verdict(p99 < 100, f"{name} first action p99 {p99:.1f} ms < 100 ms")
        )
    return lines


def _verdict(ok: bool, text: str) -> str:
    return ("met     " if ok else "MISSED  ") + text


if __name__ == "__main__":
    raise SystemExit(main())
