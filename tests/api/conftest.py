"""The API under test: the real app on a real database, in this process.

``api`` serves the app with FastAPI's ``TestClient`` over a SQLite file of
its own; ``any_api`` does the same on SQLite and on PostgreSQL (a schema of
its own, dropped at the end). The policy is the shipped rules (a copy, so a
test may change it) in the engine's ``PolicyHolder``, evaluated by the
Python backend; snapshots are fixed
facts from a scenario; executors only record. ``Api.drain()`` runs the flow
worker until no job is left, so a test decides when the flow moves.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.service import Service
from engine.actions.registry import RecordingExecutor, recording_executors
from engine.facts.scenario import scenario_facts
from engine.flow.runner import Worker
from engine.flow.snapshots import StaticSnapshots
from engine.policy.holder import PolicyHolder
from engine.policy.policy import compile_python
from engine.runtime import Runtime
from engine.settings import Settings
from engine.store.db import upgrade
from engine.store.models import Base
from engine.store.orgs import create_api_key, ensure_org
from tests.support.databases import PostgresSchema, sqlite_url, wipe

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"


def scenario_snapshot(case: str = "case-s06") -> dict[str, Any]:
    document = json.loads((SCENARIOS / f"{case}.json").read_text(encoding="utf-8"))
    return dict(scenario_facts(document)["snapshot"])


@dataclass
class Api:
    service: Service
    client: TestClient
    executors: Mapping[str, RecordingExecutor]
    rules_dir: Path
    keys: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def key(self, org: str = "acme", role: str = "admin", name: str = "") -> str:
        """A key of ``org`` with ``role`` (made once per org, role and name)."""
        wanted = (org, role, name)
        if wanted not in self.keys:
            runtime = self.service.runtime
            with self.service.database.sessions.begin() as session:
                found = ensure_org(
                    session, ids=runtime.ids, name=org, now=runtime.clock.now()
                )
                issued = create_api_key(
                    session,
                    ids=runtime.ids,
                    org_id=found.id,
                    role=role,
                    now=runtime.clock.now(),
                    name=name,
                )
            self.keys[wanted] = issued.key
        return self.keys[wanted]

    def auth(
        self, org: str = "acme", role: str = "admin", name: str = ""
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(org, role, name)}"}

    def post(self, path: str, body: Any, **who: str) -> Any:
        return self.client.post(path, json=body, headers=self.auth(**who))

    def get(self, path: str, **who: str) -> Any:
        return self.client.get(path, headers=self.auth(**who))

    def drain(self, limit: int = 200) -> int:
        """Run the flow worker until no job is due; how many jobs ran."""
        worker = Worker(self.service.flow_deps(), "test-worker")
        done = 0
        while done < limit and worker.run_once():
            done += 1
        return done

    def rows(self) -> dict[str, int]:
        """Row count of every store table."""
        with self.service.database.readers() as session:
            return {
                table.name: int(session.scalar(select(func.count()).select_from(table)))
                for table in Base.metadata.sorted_tables
            }


def settings_for(tmp_path: Path, url: str, rules: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "rules_dir": rules,
        "database_url": url,
        "watch": False,
        "worker": False,
        "max_body_bytes": 64 * 1024,
        **overrides,
    }
    return Settings(**values)


@contextmanager
def running_api(
    tmp_path: Path,
    url: str,
    *,
    snapshot: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[Api]:
    rules = tmp_path / "rules"
    if not rules.exists():
        shutil.copytree(ROOT / "rules", rules)
    settings = settings_for(tmp_path, url, rules, **overrides)
    runtime = Runtime.system()
    executors = recording_executors()
    holder = PolicyHolder(rules, compile_python, clock=runtime.clock)
    holder.reload()
    service = Service(
        settings,
        runtime=runtime,
        holder=holder,
        snapshots=StaticSnapshots(snapshot or scenario_snapshot(), runtime.clock),
        executors=executors,
    )
    app = create_app(settings, services=service.services)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(service, client, executors, rules)
    finally:
        service.stop()


@pytest.fixture(scope="session")
def api_postgres_url(postgres_url: str) -> Iterator[str]:
    schema = PostgresSchema(postgres_url, prefix="ip_api")
    url = schema.create()
    try:
        upgrade(url)
        yield url
    finally:
        schema.drop()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, sqlite_url(tmp_path)) as found:
        yield found


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url = str(request.getfixturevalue("api_postgres_url"))
    wipe(url)
    return url


@pytest.fixture
def any_api(tmp_path: Path, db_url: str) -> Iterator[Api]:
    with running_api(tmp_path, db_url) as found:
        yield found
