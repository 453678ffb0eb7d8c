"""A whole service minus HTTP: store, policy, snapshots, executors, worker.

Tests post alerts through intake, drain the worker, and read the incident as
the store holds it. Snapshots come from ``Snapshots``: the first answer for an
incident's snapshot stage, and a second one (``after``) for every fresh
snapshot once an action has run, so a test can make actions "work".
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.actions.registry import RecordingExecutor, recording_executors
from engine.facts.base import Snapshot
from engine.flow.accept import Accepted, accept
from engine.flow.runner import FlowDeps, Worker
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.policy.policy import Policy
from engine.runtime import FixedClock, Runtime, SequentialIds, SubprocessRunner
from engine.sources.alert import IncomingAlert
from engine.sources.generic import GenericAlertIn, to_alert
from engine.store.db import Database
from engine.store.incidents import IncidentView, load_incident
from engine.store.orgs import create_org

RULES = Path(__file__).resolve().parents[3] / "rules"


def rules_copy(target: Path, **catalog: Any) -> Path:
    """A copy of the shipped rules, with the catalog's top level overridden."""
    copy = target / "rules"
    shutil.copytree(RULES, copy, ignore=shutil.ignore_patterns("tests"))
    if catalog:
        path = copy / "actions.yaml"
        data = yaml.safe_load(path.read_text())
        for key, value in catalog.items():
            if key == "actions":
                for name, changes in value.items():
                    data["actions"][name].update(changes)
            else:
                data[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


@dataclass
class Snapshots:
    before: Mapping[str, Any]
    after: Mapping[str, Any] | None = None
    clock: FixedClock | None = None
    taken: list[bool] = field(default_factory=list)

    def snapshot(
        self, posted: Mapping[str, Any] | None = None, *, fresh: bool = False
    ) -> Snapshot:
        self.taken.append(fresh)
        facts = self.after if fresh and self.after is not None else self.before
        assert self.clock is not None
        return Snapshot(self.clock.now(), {**facts, **(posted or {})}, {}, {})


@dataclass
class Harness:
    db: Database
    clock: FixedClock
    ids: SequentialIds
    rules: Path
    snapshots: Snapshots
    executors: dict[str, RecordingExecutor] = field(default_factory=recording_executors)
    mode: str | None = None
    org_name: str = "acme"
    auto_execute: bool = False
    policy: Policy = field(init=False)
    org_id: str = field(init=False)
    worker: Worker = field(init=False)

    def __post_init__(self) -> None:
        self.snapshots.clock = self.clock
        self.policy = compile_policy(load(self.rules))
        runtime = Runtime(clock=self.clock, ids=self.ids, commands=SubprocessRunner())
        self.deps = FlowDeps(
            sessions=self.db.sessions,
            policy=lambda: self.policy,
            snapshots=self.snapshots,
            executors=self.executors,
            runtime=runtime,
            mode_override=self.mode,
        )
        self.worker = Worker(self.deps, "test")
        with self.db.sessions.begin() as session:
            org = create_org(
                session,
                ids=self.ids,
                name=self.org_name,
                now=self.clock.now(),
                auto_execute=self.auto_execute,
            )
            self.org_id = org.id

    def reload(self) -> str:
        self.policy = compile_policy(load(self.rules))
        return self.policy.version

    def post(self, alert: IncomingAlert | None = None, **fields: Any) -> Accepted:
        incoming = alert or to_alert(GenericAlertIn(**{"kind": "threshold_exceeded", **fields}))
        with self.db.sessions.begin() as session:
            return accept(
                session, self.policy, self.org_id, incoming, ids=self.ids, now=self.clock.now()
            )

    def drain(self, limit: int = 50) -> int:
        done = 0
        while done < limit and self.worker.run_once():
            done += 1
        return done

    def view(self, incident_id: str | None) -> IncidentView:
        assert incident_id is not None
        with self.db.sessions() as session:
            return load_incident(session, self.org_id, incident_id)


def kinds(view: IncidentView) -> list[str]:
    return [e.kind for e in view.events]
