"""The watcher: the host's own snapshots become alerts.

Every interval it takes a snapshot of this host, asks the ``watch`` rules of
``intake.yaml`` which alerts it raises (a restart loop, memory or disk past
a threshold, an error-rate spike, a failing health check, nginx down) and
accepts each through intake like any posted alert, in the default
organization. Like an alert manager, it speaks on changes: a condition that
starts firing is sent at once, one that keeps firing is sent again only
every ``repeat_s`` (it folds into its open incident), and one that clears is
sent as resolved. A restart forgets what was sent; the first look then sends
what fires, which folds into the open incidents.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from engine.flow import intake
from engine.flow.accept import Accepted, accept
from engine.flow.outcomes import WatchAlert
from engine.flow.snapshots import SnapshotSource
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.sources.alert import IncomingAlert
from engine.store.orgs import ensure_org

log = logging.getLogger(__name__)

SOURCE = "watcher"
REPEAT_S = 1800.0  # a condition that keeps firing is sent again this often


def _incoming(alert: WatchAlert, status: str, now: datetime) -> IncomingAlert:
    return IncomingAlert(
        source=SOURCE,
        kind=alert.kind,
        name=alert.name,
        status=status,
        fingerprint=f"{SOURCE}:{alert.rule_id}",
        labels={"rule": alert.rule_id},
        severity=alert.severity,
        summary=alert.summary,
        starts_at=now,
    )


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
        repeat_s: float = REPEAT_S,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._snapshots = snapshots
        self._runtime = runtime
        self._org = org
        self._on_alert = on_alert
        self._repeat_s = repeat_s
        self._sent: dict[str, tuple[datetime, WatchAlert]] = {}

    def tick(self) -> list[Accepted]:
        """One look at the host; the alerts it sent, as intake took them."""
        policy = self._policy()
        taken = self._snapshots.snapshot()
        raised = intake.watch_alerts(policy, {"snapshot": dict(taken.facts)})
        now = self._runtime.clock.now()
        due = [(alert, "firing") for alert in raised if self._due(alert, now)]
        current = {alert.rule_id for alert in raised}
        cleared = [
            (alert, "resolved")
            for rule_id, (_, alert) in list(self._sent.items())
            if rule_id not in current
        ]
        if not due and not cleared:
            return []
        accepted = self._send(policy, [*due, *cleared], now)
        for alert, status in (*due, *cleared):
            if status == "firing":
                self._sent[alert.rule_id] = (now, alert)
            else:
                self._sent.pop(alert.rule_id, None)
        self._on_alert()
        log.info("watcher.sent", extra={"alerts": [a.status for a in accepted]})
        return accepted

    def _due(self, alert: WatchAlert, now: datetime) -> bool:
        sent = self._sent.get(alert.rule_id)
        return sent is None or (now - sent[0]).total_seconds() >= self._repeat_s

    def _send(
        self, policy: Policy, alerts: list[tuple[WatchAlert, str]], now: datetime
    ) -> list[Accepted]:
        with self._sessions.begin() as session:
            org = ensure_org(session, ids=self._runtime.ids, name=self._org, now=now)
            return [
                accept(
                    session,
                    policy,
                    org.id,
                    _incoming(alert, status, now),
                    ids=self._runtime.ids,
                    now=now,
                )
                for alert, status in alerts
            ]

    def run(self, stop: threading.Event, interval_s: float) -> None:
        log.info("watcher.started", extra={"interval_s": interval_s})
        while not stop.wait(interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("watcher.tick_failed")
        log.info("watcher.stopped")
