"""Durable progress: real worker processes killed with SIGKILL, then resumed.

Each test accepts one alert, starts a worker process
(``tests.support.crashworker``), kills it with ``kill -9`` at a chosen
moment, starts another, and checks what the store holds once the second one
finished: the incident went through every stage once, no stage outcome is
duplicated, no action ran twice (the executors journal every run to a file,
fsynced before the command's work), and an action cut off mid-way is
recorded as interrupted instead of being run again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.flow.accept import accept
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.runtime import SystemClock, SortableIds
from engine.sources.generic import GenericAlertIn, to_alert
from engine.store.db import Database
from engine.store.incidents import load_incident
from engine.store.models import IncidentAction, Job, RuleMatch
from engine.store.orgs import create_org
from tests.engine.flow.harness import rules_copy
from tests.engine.flow.test_runner import scenario

ROOT = Path(__file__).resolve().parents[3]


class Crash:
    def __init__(self, db: Database, db_url: str, tmp_path: Path) -> None:
        self.db = db
        self.rules = rules_copy(tmp_path)
        self.journal = tmp_path / "journal.log"
        self.journal.touch()
        self.tmp_path = tmp_path
        self.url = db_url
        ids = SortableIds(SystemClock())
        with db.sessions.begin() as session:
            self.org_id = create_org(session, ids=ids, name="crash", now=SystemClock().now()).id
            accepted = accept(
                session, compile_policy(load(self.rules)), self.org_id,
                to_alert(GenericAlertIn(kind="threshold_exceeded", name="DiskFull")),
                ids=ids, now=SystemClock().now(),
            )
        self.incident_id = accepted.incident_id or ""

    def start(self, **config: float) -> subprocess.Popen[bytes]:
        path = self.tmp_path / f"worker-{time.monotonic_ns()}.json"
        path.write_text(json.dumps({
            "database_url": self.url,
            "rules": str(self.rules),
            "journal": str(self.journal),
            "snapshot": scenario("case-s06")["snapshot"],
            "lease_s": 1,
            "idle_exit_s": 2.5,
            **config,
        }))
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.crashworker", str(path)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def kill_when(self, worker: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not ready():
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def finish(self) -> None:
        worker = self.start()
        assert worker.wait(timeout=60) == 0, worker.stderr.read().decode() if worker.stderr else ""

    def scalar(self, query: object) -> int:
        with self.db.sessions() as session:
            return int(session.scalar(query) or 0)  # type: ignore[call-overload]

    def action_running(self) -> bool:
        return bool(self.scalar(select(func.count()).where(IncidentAction.status == "running")))

    def job_claimed(self) -> bool:
        return bool(self.scalar(select(func.count()).where(Job.status == "running")))

    def runs(self) -> Counter[str]:
        lines = self.journal.read_text().splitlines()
        return Counter(" ".join(line.split()[1:]) for line in lines)

    def assert_whole_and_once(self) -> None:
        with self.db.sessions() as session:
            view = load_incident(session, self.org_id, self.incident_id)
            per_stage = Counter(m.stage for m in session.scalars(select(RuleMatch)))
        assert view.incident.stage is None
        assert view.incident.status == "awaiting_approval"
        assert len(view.briefs) == 1 and len(view.impacts) == 1 and len(view.messages) == 1
        assert len({r.key for r in view.recommendations}) == len(view.recommendations)
        assert per_stage["classify"] == 2  # disk-full and alert-says-disk, once each
        assert per_stage["stabilize"] == 2
        completed = Counter(e.stage for e in view.events if e.kind == "stage.completed")
        assert completed["snapshot"] == 1 and completed["classify"] == 1
        assert all(count == 1 for count in self.runs().values()), self.runs()
        assert {a.status for a in view.actions} <= {"succeeded", "interrupted"}


@pytest.fixture
def crash(db: Database, db_url: str, tmp_path: Path) -> Crash:
    return Crash(db, db_url, tmp_path)


def test_kill_during_an_action_never_runs_it_again(crash: Crash) -> None:
    worker = crash.start(slow_action_s=30)
    crash.kill_when(worker, crash.action_running)

    crash.finish()

    crash.assert_whole_and_once()
    with crash.db.sessions() as session:
        view = load_incident(session, crash.org_id, crash.incident_id)
    interrupted = [a for a in view.actions if a.status == "interrupted"]
    assert len(interrupted) == 1
    assert crash.runs()[f"{crash.incident_id} {interrupted[0].action} temp"] <= 1
    assert "action.interrupted" in [e.kind for e in view.events]


def test_kill_during_the_snapshot_redoes_only_that_stage(crash: Crash) -> None:
    worker = crash.start(slow_snapshot_s=30)
    crash.kill_when(worker, crash.job_claimed)

    crash.finish()

    crash.assert_whole_and_once()
    assert sum(crash.runs().values()) == 2  # clear_temp and pause_jobs, once each


def test_kills_at_random_moments_lose_nothing_and_repeat_nothing(crash: Crash) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261204")))
    for _ in range(6):
        worker = crash.start(slow_action_s=0.3, slow_snapshot_s=0.15)
        time.sleep(rng.uniform(0.05, 1.2))
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    crash.finish()

    crash.assert_whole_and_once()
