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
    check_labels,
    fingerprint_of,
    kind_from_labels,
    parse_time,
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
    if not isinstance(entry, Mapping):
        raise InputError(
            f"{where}: expected an object", code="E511", location=Location(field=where)
        )
    status = entry.get("status")
    if status not in ("firing", "resolved"):
        raise InputError(
            f"{where}.status: {status!r} is not firing or resolved",
            code="E513",
            location=Location(field=f"{where}.status"),
        )
    labels = check_labels(entry.get("labels"), f"{where}.labels")
    annotations = check_labels(entry.get("annotations"), f"{where}.annotations")
    name = labels.get("alertname", "")
    return IncomingAlert(
        source=SOURCE,
        kind=kind_from_labels(labels, name),
        name=name or "unnamed",
        status=str(status),
        fingerprint=str(entry.get("fingerprint") or fingerprint_of(SOURCE, labels)),
        labels=labels,
        annotations=annotations,
        severity=labels.get("severity"),
        summary=annotations.get("summary") or annotations.get("description"),
        starts_at=parse_time(entry.get("startsAt"), f"{where}.startsAt"),
        ends_at=parse_time(entry.get("endsAt"), f"{where}.endsAt"),
        raw=dict(entry),
    )
