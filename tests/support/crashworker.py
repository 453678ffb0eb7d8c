"""A worker process for crash tests: it can be killed at any moment.

``python -m tests.support.crashworker CONFIG.json`` drives the incidents in
the database until no job is left, then exits 0. Every action it really runs
is first written (and fsynced) to a journal file, so a test can count runs
across processes killed with SIGKILL. ``slow_action_s`` and
``slow_snapshot_s`` stretch the two moments a test wants to kill in.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Outcome,
    Refusal,
    Step,
    Verification,
)
from engine.actions.base import EXECUTORS
from engine.facts.base import Snapshot
from engine.flow.runner import FlowDeps, Worker
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.runtime import Runtime
from engine.store.db import open_database


class JournalExecutor:
    def __init__(self, name: str, journal: Path, slow_s: float) -> None:
        self.name = name
        self.journal = journal
        self.slow_s = slow_s

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        return None

    def run(self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool) -> ExecutionResult:
        if not dry_run:
            line = f"{os.getpid()} {request.incident_id} {request.action} {request.target}\n"
            with self.journal.open("a") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            time.sleep(self.slow_s)
        outcome = Outcome.DRY_RUN if dry_run else Outcome.SUCCEEDED
        return ExecutionResult(outcome, steps=(Step((self.name, request.target), 0),))

    def verify(
        self, request: ActionRequest, result: ExecutionResult, after: Mapping[str, Any]
    ) -> Verification:
        return Verification(True, "journaled")

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        return ExecutionResult(Outcome.SUCCEEDED)


class SlowSnapshots:
    def __init__(self, facts: Mapping[str, Any], slow_s: float, runtime: Runtime) -> None:
        self.facts = dict(facts)
        self.slow_s = slow_s
        self.runtime = runtime

    def snapshot(
        self, posted: Mapping[str, Any] | None = None, *, fresh: bool = False
    ) -> Snapshot:
        time.sleep(self.slow_s)
        return Snapshot(self.runtime.clock.now(), self.facts, {}, {})


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    runtime = Runtime.system()
    database = open_database(config["database_url"])
    policy = compile_policy(load(Path(config["rules"])))
    journal = Path(config["journal"])
    executors = {
        name: JournalExecutor(name, journal, float(config.get("slow_action_s", 0)))
        for name in EXECUTORS
    }
    deps = FlowDeps(
        sessions=database.sessions,
        policy=lambda: policy,
        snapshots=SlowSnapshots(
            config["snapshot"], float(config.get("slow_snapshot_s", 0)), runtime
        ),
        executors=executors,
        runtime=runtime,
        mode_override="auto",
    )
    worker = Worker(deps, f"crash-{os.getpid()}", lease_s=float(config.get("lease_s", 1)))
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < float(config.get("idle_exit_s", 3)):
        if worker.run_once():
            idle_since = time.monotonic()
        else:
            time.sleep(0.05)
    database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
