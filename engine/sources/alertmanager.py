"""Prometheus Alertmanager webhook (format version 4).

One notification carries a group of alerts. The group's ``status`` is
computed by Alertmanager from the alerts it kept, so it is never taken as the
status of each alert: every alert carries its own. A truncated group
(``truncatedAlerts`` > 0) lists only some alerts; the ones it left out are
not resolved by it (intake only ever changes the alerts a payload names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import InputError, Location
from engine.sources.alert import (
    Batch,
    IncomingAlert,
    from_webhook_entry,
)

SOURCE = "alertmanager"
MAX_ALERTS = 1000


def parse(body: Mapping[str, Any]) -> Batch:
    version = str(body.get("version", ""))
    if version != "4":
        raise InputError(
            f"version: Alertmanager webhook format {version or '(missing)'!r} is "
            "not supported; this endpoint reads version 4 (Alertmanager 0.x)",
            code="E510",
            location=Location(field="version"),
        )
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise InputError(
            "alerts: expected a non-empty list of alerts",
            code="E511",
            location=Location(field="alerts"),
        )
    if len(alerts) > MAX_ALERTS:
        raise InputError(
            f"alerts: {len(alerts)} alerts in one notification; the limit is "
            f"{MAX_ALERTS} (set max_alerts in the Alertmanager receiver)",
            code="E512",
            location=Location(field="alerts"),
        )
    return Batch(
        alerts=tuple(_alert(entry, f"alerts[{i}]") for i, entry in enumerate(alerts)),
        group_key=str(body.get("groupKey") or "") or None,
        truncated=_count(body.get("truncatedAlerts")),
        envelope_status=str(body.get("status") or "") or None,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _alert(entry: Any, where: str) -> IncomingAlert:
    return from_webhook_entry(entry, where, source=SOURCE, shape_code="E511")
