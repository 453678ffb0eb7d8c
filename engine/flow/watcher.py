"""The watcher: the host's own snapshots become alerts.

Every interval it takes a snapshot of this host, asks the ``watch`` rules of
``intake.yaml`` which alerts it raises (a restart loop, memory or disk past
a threshold, an error-rate spike, a failing health check, nginx down) and
accepts each through intake like any posted alert, in the default
organization. An alert that keeps firing folds into its open incident; the
watcher never opens a second one for the same condition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from engine.flow import intake
from engine.flow.accept import Accepted, accept
from engine.flow.snapshots import SnapshotSource
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.sources.alert import IncomingAlert
from engine.store.orgs import ensure_org

log = logging.getLogger(__name__)

SOURCE = "watcher"


class Watcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: Callable[[], Policy],
        snapshots: SnapshotSource,
        runtime: Runtime,
        *,
        org: str,
        on_alert: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._snapshots = snapshots
        self._runtime = runtime
        self._org = org
        self._on_alert = on_alert

    def tick(self) -> list[Accepted]:
        """One look at the host; the alerts it raised, as intake took them."""
        policy = self._policy()
        taken = self._snapshots.snapshot()
        raised = intake.watch_alerts(policy, {"snapshot": dict(taken.facts)})
        if not raised:
            return []
        now = self._runtime.clock.now()
        accepted = []
        with self._sessions.begin() as session:
            org = ensure_org(session, ids=self._runtime.ids, name=self._org, now=now)
            for alert in raised:
                incoming = IncomingAlert(
                    source=SOURCE,
                    kind=alert.kind,
                    name=alert.name,
                    status="firing",
                    fingerprint=f"{SOURCE}:{alert.rule_id}",
                    labels={"rule": alert.rule_id},
                    severity=alert.severity,
                    summary=alert.summary,
                    starts_at=now,
                )
                accepted.append(
                    accept(
                        session,
                        policy,
                        org.id,
                        incoming,
                        ids=self._runtime.ids,
                        now=now,
                    )
                )
        self._on_alert()
        log.info("watcher.raised", extra={"alerts": [a.status for a in accepted]})
        return accepted

    def run(self, stop: threading.Event, interval_s: float) -> None:
        log.info("watcher.started", extra={"interval_s": interval_s})
        while not stop.wait(interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("watcher.tick_failed")
        log.info("watcher.stopped")
