"""A real host for the end-to-end cases: the service's parts on private tools.

``RealHost.build`` assembles what ``incident-policy serve`` runs, minus HTTP,
and points it at the session's private nginx and PM2 daemon: ``Settings``
naming their binaries, prefix, pid file, logs and ``PM2_HOME``; a
``HostObserver`` behind a ``SharedObserver``; the five real executors and the
target locks; a policy compiled from a copy of ``rules/`` set up for this host
(``e2e_rules``); a migrated SQLite store with one organization; the
``Watcher`` and a ``Worker``. A test makes the trouble real (a crashing app,
502s, a full filesystem, a surge of uploads), lets the watcher raise its
alert or posts one as a remote source would, drains the worker and reads the
incident as the store holds it. The observer takes its first snapshot at
build time, so the log readers start at the end of nginx's shared logs
(earlier tests' traffic is not this test's) and the moving baselines start
from a quiet host.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from engine.actions.locks import TargetLocks
from engine.actions.registry import build_executors
from engine.facts.features import FeatureMap
from engine.facts.observer import HostObserver
from engine.flow.accept import Accepted, accept
from engine.flow.learning import resolve
from engine.flow.runner import FlowDeps, Worker
from engine.flow.snapshots import SharedObserver
from engine.flow.watcher import Watcher
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.settings import HealthCheck, Settings
from engine.sources.generic import GenericAlertIn, to_alert
from engine.store.db import Database, open_database
from engine.store.incidents import IncidentView, load_incident
from engine.store.models import IncidentAction
from engine.store.orgs import ensure_org
from tests.support.realhost import Nginx, Pm2

RULES = Path(__file__).resolve().parents[2] / "rules"
ORG = "default"
PROCESS_RESTART_MB = 150
WINDOW_S = 30.0  # access and error log window: a case's traffic stays inside
T = TypeVar("T")


@dataclass(frozen=True)
class HostPlan:
    """What one case configures on top of the shared nginx and PM2."""

    jobs: Sequence[str] = ()  # PM2 names pause_jobs stops
    temp_dirs: Sequence[Path] = ()  # folders clear_temp may empty
    disk_mounts: Sequence[Path] = ()  # empty: the case's work folder only
    rate: str = "1r/s"  # the upload rate limit, low so a burst is refused
    burst: int = 5
    health_checks: Sequence[HealthCheck] = ()


def e2e_rules(target: Path, nginx: Nginx, plan: HostPlan) -> Path:
    """A copy of the shipped rules, with the catalog set up for this host.

    Every action runs (``mode: auto``) with a one-second cooldown, so cases
    never wait on each other; the settings name this host's job processes,
    the nginx snippet folder and the temp folders. A PM2 process of 150 MB
    counts as leaking, and the ``down`` upstream's location is a feature.
    """
    rules = target / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("tests"))
    _edit(rules / "actions.yaml", lambda doc: _catalog(doc, nginx, plan))
    _edit(rules / "thresholds.yaml", _small_restart_size)
    _edit(rules / "features.yaml", _partner_feature)
    return rules


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _catalog(doc: dict[str, Any], nginx: Nginx, plan: HostPlan) -> None:
    doc["mode"] = "auto"
    for spec in doc["actions"].values():
        spec.update(cooldown_s=1, budget_per_hour=100)
    actions = doc["actions"]
    actions["pause_jobs"]["settings"] = {"processes": list(plan.jobs)}
    actions["rate_limit"]["settings"] = {
        "snippet_dir": str(nginx.prefix / "conf"),
        "locations": ["/upload"],
        "rate": plan.rate,
        "burst": plan.burst,
    }
    actions["clear_temp"]["settings"] = {
        "directories": [str(d) for d in plan.temp_dirs],
        "min_age_minutes": 60,
        "byte_budget_mb": 64,
    }


def _small_restart_size(doc: dict[str, Any]) -> None:
    doc["thresholds"]["memory"]["process_restart_mb"] = PROCESS_RESTART_MB


def _partner_feature(doc: dict[str, Any]) -> None:
    partner = {
        "name": "partners",
        "description": "Calls customers make through a partner's service.",
        "customer_facing": True,
        "routes": ["/down/"],
    }
    doc["features"].insert(0, partner)


def e2e_settings(
    nginx: Nginx, pm2: Pm2, work: Path, plan: HostPlan, database_url: str
) -> Settings:
    """Settings that point every collector and executor at the private tools."""
    return Settings(
        data_dir=work / "data",
        rules_dir=work / "rules",
        database_url=database_url,
        pm2_bin=pm2.binary,
        pm2_home=pm2.home,
        nginx_bin=nginx.binary,
        nginx_prefix=nginx.prefix,
        nginx_conf=nginx.conf,
        nginx_pid_file=nginx.prefix / "logs" / "nginx.pid",
        nginx_status_url=nginx.status_url,
        nginx_access_log=nginx.access_log,
        nginx_error_log=nginx.error_log,
        access_log_format="timed",
        log_window_s=WINDOW_S,
        baseline_tau_s=60.0,
        log_backlog_bytes=0,
        deploy_log=work / "deploys.log",
        disk_mounts=list(plan.disk_mounts) or [work],
        collector_timeout_s=10.0,
        health_checks=list(plan.health_checks),
    )


@dataclass
class RealHost:
    settings: Settings
    runtime: Runtime
    policy: Policy
    db: Database
    observer: SharedObserver
    watcher: Watcher
    worker: Worker
    org_id: str

    @classmethod
    def build(
        cls, nginx: Nginx, pm2: Pm2, work: Path, database_url: str, plan: HostPlan
    ) -> RealHost:
        runtime = Runtime.system()
        settings = e2e_settings(nginx, pm2, work, plan, database_url)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.resolved_deploy_log.touch()
        policy = compile_policy(load(e2e_rules(work, nginx, plan)))
        host = HostObserver(
            settings,
            runtime,
            features=FeatureMap.from_document(policy.source.documents["features"]),
        )
        host.snapshot()  # logs are read from here on; baselines start quiet
        observer = SharedObserver(host, runtime.clock)
        db = open_database(database_url)
        with db.sessions.begin() as session:
            now = runtime.clock.now()
            org_id = ensure_org(session, ids=runtime.ids, name=ORG, now=now).id
        deps = FlowDeps(
            sessions=db.sessions,
            policy=lambda: policy,
            snapshots=observer,
            executors=build_executors(settings, runtime),
            runtime=runtime,
            locks=TargetLocks.for_settings(settings, runtime.clock),
        )
        watcher = Watcher(db.sessions, lambda: policy, observer, runtime, org=ORG)
        worker = Worker(deps, "e2e")
        return cls(settings, runtime, policy, db, observer, watcher, worker, org_id)

    def close(self) -> None:
        self.observer.close()
        self.db.dispose()

    def tick(self, rule: str) -> list[Accepted]:
        """One look by the watcher; the alerts its watch ``rule`` raised.

        Other rules' alerts are accepted too, but not returned: the session's
        daemon and nginx are shared, and a case speaks only for its own.
        """
        return [a for a in self.watcher.tick() if a.dedup_key == f"watcher:{rule}"]

    def tick_until(self, rule: str, *, timeout_s: float = 20.0) -> Accepted:
        """Tick until the watch ``rule`` raises its alert; the accepted alert."""
        found = poll(
            lambda: self.tick(rule),
            bool,
            timeout_s=timeout_s,
            what=f"the watch rule {rule} to raise its alert",
            interval_s=1.0,
        )
        return found[0]

    def post(self, **fields: Any) -> Accepted:
        """An alert posted by a remote source, through intake."""
        incoming = to_alert(GenericAlertIn(**fields))
        with self.db.sessions.begin() as session:
            now = self.runtime.clock.now()
            return accept(
                session,
                self.policy,
                self.org_id,
                incoming,
                ids=self.runtime.ids,
                now=now,
            )

    def drain(self, limit: int = 20) -> int:
        done = 0
        while done < limit and self.worker.run_once():
            done += 1
        return done

    def view(self, incident_id: str | None) -> IncidentView:
        assert incident_id is not None
        with self.db.sessions() as session:
            return load_incident(session, self.org_id, incident_id)

    def resolve(self, incident_id: str | None, root_cause: str, category: str) -> None:
        """A human resolves the incident; the learning job runs (and undoes)."""
        assert incident_id is not None
        with self.db.sessions.begin() as session:
            resolve(
                session,
                self.org_id,
                incident_id,
                by="e2e",
                root_cause=root_cause,
                category=category,
                ids=self.runtime.ids,
                now=self.runtime.clock.now(),
            )
        self.drain()

    def deployed(
        self,
        app: str,
        version: str,
        previous: str,
        *,
        kind: str = "code",
        minutes_ago: float = 2.0,
    ) -> None:
        """Append a deploy to the deploy log, as CI does."""
        at = self.runtime.clock.now() - timedelta(minutes=minutes_ago)
        record = {
            "at": at.isoformat(),
            "app": app,
            "version": version,
            "previous_version": previous,
            "kind": kind,
            "source": "ci",
        }
        with self.settings.resolved_deploy_log.open("a") as log:
            log.write(json.dumps(record) + "\n")


def actions_named(view: IncidentView, action: str) -> list[IncidentAction]:
    return [a for a in view.actions if a.action == action]


def stabilizing(view: IncidentView) -> list[IncidentAction]:
    return [a for a in view.actions if a.origin == "stabilize"]


def verified(action: IncidentAction) -> Mapping[str, Any]:
    """The verification recorded for ``action`` (it must have one)."""
    assert action.verification is not None, f"{action.action} was not verified"
    return action.verification


def snapshot_of(view: IncidentView, purpose: str) -> Mapping[str, Any]:
    return next(s.facts for s in reversed(view.snapshots) if s.purpose == purpose)


def process_in(facts: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return next(p for p in facts["pm2"]["processes"] if p["name"] == name)


def poll(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
) -> T:
    """Probe until ``done`` holds; fail, quoting the last value, at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = probe()
        if done(seen):
            return seen
        if time.monotonic() >= deadline:
            last = repr(seen)[:400]
            raise AssertionError(
                f"gave up after {timeout_s:g} s waiting for {what}; last seen: {last}"
            )
        time.sleep(interval_s)
