"""The running service, assembled from ``Settings``.

``Service`` opens the database (upgrading it to the code's schema first),
holds the policy, and builds what the flow needs: the host observer behind
a ``SharedObserver``, the executors, the target locks. ``start()`` runs the
flow's ``Worker`` threads (one on SQLite, whose writes are serialised
anyway; as many as asked on PostgreSQL), the host ``Watcher`` unless
watching is off, and the policy's hot reload when the holder offers it.
``stop()`` asks every thread to finish its current step and waits for it.
``services`` is what ``api.app.create_app`` serves. On first start the
operator organization (``Settings.default_org``) is created and, when it
has no admin key, one is made and written to ``<data_dir>/admin.key``
(mode 0600) so a service started on loopback is usable at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.deps import KeyCache, Services
from api.holder import PolicyControl
from api.intake import IntakeBatcher
from engine.actions.base import Executor
from engine.actions.locks import TargetLocks
from engine.actions.registry import build_executors
from engine.facts.deploys import Deploy
from engine.facts.features import FeatureMap
from engine.facts.observer import HostObserver
from engine.flow.runner import FlowDeps, Worker
from engine.flow.snapshots import SharedObserver, SnapshotSource
from engine.flow.watcher import Watcher
from engine.policy.compiler import compile_policy
from engine.policy.holder import PolicyHolder
from engine.policy.model import Rule
from engine.policy.policy import Compile, Policy
from engine.runtime import Runtime
from engine.settings import Settings
from engine.store.db import Database, open_database, upgrade
from engine.store.deploys import recent_deploys
from engine.store.models import ApiKey, Role
from engine.store.orgs import create_api_key, ensure_org, find_org
from engine.telemetry import RULE_EVALUATION

log = logging.getLogger(__name__)

POLICY_WATCH_S = 2.0
DEPLOY_WINDOW = timedelta(hours=6)
ADMIN_KEY_FILE = "admin.key"


class TimedBackend:
    """Times each stage's rule evaluation for ``/metrics``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def matching(self, stage: str, facts: Mapping[str, Any]) -> list[Rule]:
        started = time.perf_counter()
        try:
            return list(self._inner.matching(stage, facts))
        finally:
            RULE_EVALUATION.labels(stage).observe(time.perf_counter() - started)


class TimedPolicies:
    """The holder's current policy, wrapped once per version with timing."""

    def __init__(self, holder: PolicyControl) -> None:
        self._holder = holder
        self._seen: tuple[Policy, Policy] | None = None

    def __call__(self) -> Policy:
        current = self._holder.current
        seen = self._seen
        if seen is not None and seen[0] is current:
            return seen[1]
        timed = Policy(current.source, TimedBackend(current.backend))
        self._seen = (current, timed)
        return timed


@dataclass(frozen=True)
class AdminKey:
    key: str | None  # the secret when it was made now; None when one existed
    path: Path


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        runtime: Runtime | None = None,
        holder: PolicyControl | None = None,
        compile: Compile = compile_policy,
        snapshots: SnapshotSource | None = None,
        executors: Mapping[str, Executor] | None = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime or Runtime.system()
        url = settings.resolved_database_url
        upgrade(url)
        self.database: Database = open_database(url)
        self.holder = holder or load_policy(settings, compile, self.runtime)
        self.policy = TimedPolicies(self.holder)
        wake = threading.Event()
        self.services = Services(
            settings=settings,
            database=self.database,
            policy=self.holder,
            runtime=self.runtime,
            intake=IntakeBatcher(
                self.database.sessions,
                self.policy,
                self.runtime,
                on_commit=wake.set,
                before_commit=self.database.ensure_same_file,
            ),
            wake=wake,
            reload=self.holder.reload,
            compile=compile,
            keys=KeyCache(),
        )
        self.snapshots = snapshots or self._observer()
        self.executors = executors or build_executors(settings, self.runtime)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _observer(self) -> SharedObserver:
        source = self.holder.current.source
        features = FeatureMap.from_document(source.documents.get("features") or {})
        thresholds = source.thresholds.values
        # The collectors derive restart loops with the policy's own numbers.
        observer = HostObserver(
            self.settings,
            self.runtime,
            features=features,
            restart_loop=int(thresholds.get("pm2.restart_loop", 5)),
            restart_window_minutes=float(
                thresholds.get("pm2.restart_window_minutes", 10)
            ),
            deploy_sources=[self._stored_deploys],
        )
        return SharedObserver(observer, self.runtime.clock)

    def _stored_deploys(self) -> list[Deploy]:
        """Deploys posted to the API by the operator organization's CI."""
        now = self.runtime.clock.now()
        with self.database.readers() as session:
            org = stored_org_id(session, self.settings.default_org)
            if org is None:
                return []
            rows = recent_deploys(session, org, now - DEPLOY_WINDOW)
        return [
            Deploy(
                at=r.at,
                app=r.app,
                version=r.version,
                previous_version=r.previous_version,
                kind="config" if r.kind == "config" else "code",
                source="api",
            )
            for r in rows
        ]

    def flow_deps(self) -> FlowDeps:
        return FlowDeps(
            sessions=self.database.sessions,
            policy=self.policy,
            snapshots=self.snapshots,
            executors=self.executors,
            runtime=self.runtime,
            locks=TargetLocks.for_settings(self.settings, self.runtime.clock),
            mode_override=self.settings.mode,
            approval_ttl_s=self.settings.approval_ttl_s,
            wake=self.services.wake,
        )

    def start(self) -> None:
        """Run the flow workers, the watcher and the policy's hot reload."""
        if self.settings.worker:
            deps = self.flow_deps()
            for number in range(self.worker_count()):
                worker = Worker(deps, f"{os.getpid()}-{number + 1}")
                self._spawn(f"worker-{number + 1}", worker.run, self._stop)
        if self.settings.watch:
            watcher = Watcher(
                self.database.sessions,
                self.policy,
                self.snapshots,
                self.runtime,
                org=self.settings.default_org,
                on_alert=self.services.wake.set,
            )
            self._spawn(
                "watcher", watcher.run, self._stop, self.settings.watch_interval_s
            )
        start_watching = getattr(self.holder, "start_watching", None)
        if callable(start_watching):
            start_watching(POLICY_WATCH_S)
        log.info(
            "service.started",
            extra={
                "workers": len([t for t in self._threads if t.name != "watcher"]),
                "watch": self.settings.watch,
                "policy_version": self.holder.current.version,
            },
        )

    def worker_count(self) -> int:
        if self.database.engine.dialect.name == "sqlite":
            return 1
        return self.settings.workers

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self.services.wake.set()
        stop_watching = getattr(self.holder, "stop", None)
        if callable(stop_watching):
            stop_watching()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        self._threads.clear()
        close = getattr(self.snapshots, "close", None)
        if callable(close):
            close()
        self.database.dispose()
        log.info("service.stopped")

    def ensure_admin_key(self) -> AdminKey:
        """The operator organization, and an admin key for it if it has none."""
        path = self.settings.data_dir / ADMIN_KEY_FILE
        now = self.runtime.clock.now()
        with self.database.sessions.begin() as session:
            org = ensure_org(
                session, ids=self.runtime.ids, name=self.settings.default_org, now=now
            )
            if _has_admin(session, org.id):
                return AdminKey(None, path)
            issued = create_api_key(
                session,
                ids=self.runtime.ids,
                org_id=org.id,
                role=Role.ADMIN.value,
                now=now,
                name="bootstrap admin",
            )
            write_secret(path, issued.key)
        return AdminKey(issued.key, path)


def load_policy(settings: Settings, compile: Compile, runtime: Runtime) -> PolicyHolder:
    """The engine's holder over the rules directory, loaded once now."""
    holder = PolicyHolder(settings.rules_dir, compile, clock=runtime.clock)
    holder.reload()
    _ = holder.current  # raises a PolicyError naming every problem
    return holder


def _has_admin(session: Any, org_id: str) -> bool:
    query = select(ApiKey.id).where(
        ApiKey.org_id == org_id,
        ApiKey.role == Role.ADMIN.value,
        ApiKey.revoked_at.is_(None),
    )
    return session.scalars(query.limit(1)).first() is not None


def stored_org_id(session: Any, name: str) -> str | None:
    org = find_org(session, name)
    return org.id if org else None


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)
