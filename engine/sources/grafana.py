"""Grafana webhooks: unified alerting (Grafana 8+) and legacy alerting (7).

Unified alerting sends an Alertmanager-shaped body (``alerts`` with their own
status, fingerprint and ``values``). Legacy alerting sends one rule per body
(``ruleName``, ``state``, ``evalMatches``). Both have a contact-point test
message that must never become an incident: the unified test says
``status: resolved`` with ``state: alerting``, one alert without labels and a
``TestAlert`` group key; the legacy test has ``ruleId: 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import InputError, Location
from engine.sources.alert import (
    Batch,
    IncomingAlert,
    check_labels,
    from_webhook_entry,
    kind_from_labels,
)

SOURCE = "grafana"
MAX_ALERTS = 1000
LEGACY_STATES = {"alerting": "firing", "ok": "resolved", "no_data": "firing"}


def parse(body: Mapping[str, Any]) -> Batch:
    if "alerts" in body:
        return _unified(body)
    if "ruleName" in body or "evalMatches" in body:
        return _legacy(body)
    raise InputError(
        "not a Grafana webhook body: expected `alerts` (unified alerting) or "
        "`ruleName` (legacy alerting)",
        code="E520",
        location=Location(field="alerts"),
    )


def is_test(body: Mapping[str, Any]) -> bool:
    """The contact-point "test" button, in either format."""
    if "alerts" not in body:
        return (
            body.get("ruleId") == 0 and "test" in str(body.get("message", "")).lower()
        )
    alerts = body.get("alerts") or []
    unlabeled = all(isinstance(a, Mapping) and not a.get("labels") for a in alerts)
    group = str(body.get("groupKey", ""))
    return unlabeled and (
        "TestAlert" in group or "test" in str(body.get("message", "")).lower()
    )


def _unified(body: Mapping[str, Any]) -> Batch:
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise InputError(
            "alerts: expected a list", code="E521", location=Location(field="alerts")
        )
    if len(alerts) > MAX_ALERTS:
        raise InputError(
            f"alerts: {len(alerts)} alerts in one notification; the limit is "
            f"{MAX_ALERTS}",
            code="E512",
            location=Location(field="alerts"),
        )
    test = is_test(body)
    parsed = (
        () if test else tuple(_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts))
    )
    truncated = body.get("truncatedAlerts")
    return Batch(
        alerts=parsed,
        group_key=str(body.get("groupKey") or "") or None,
        truncated=truncated
        if isinstance(truncated, int) and not isinstance(truncated, bool)
        else 0,
        is_test=test,
        envelope_status=str(body.get("status") or "") or None,
    )


def _alert(entry: Any, where: str) -> IncomingAlert:
    values = entry.get("values") if isinstance(entry, Mapping) else None
    return from_webhook_entry(
        entry, where, source=SOURCE, shape_code="E521", value=_first_value(values)
    )


def _first_value(values: Any) -> float | None:
    """Grafana's values map: the last expression (usually the condition's input)."""
    if not isinstance(values, Mapping):
        return None
    numbers = [
        v
        for v in values.values()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return float(numbers[0]) if numbers else None


def _legacy(body: Mapping[str, Any]) -> Batch:
    if is_test(body):
        return Batch(alerts=(), is_test=True, envelope_status=str(body.get("state")))
    state = str(body.get("state", ""))
    status = LEGACY_STATES.get(state)
    if status is None:
        return Batch(
            alerts=(), envelope_status=state
        )  # paused / pending: nothing to do
    name = str(body.get("ruleName") or "unnamed")
    labels = check_labels(body.get("tags") or {}, "tags")
    matches = body.get("evalMatches") or []
    value = next(
        (
            m.get("value")
            for m in matches
            if isinstance(m, Mapping) and isinstance(m.get("value"), int | float)
        ),
        None,
    )
    alert = IncomingAlert(
        source=SOURCE,
        kind=kind_from_labels(labels, name),
        name=name,
        status=status,
        fingerprint=f"legacy-{body.get('ruleId', name)}",
        labels=labels,
        summary=str(body.get("message") or body.get("title") or "") or None,
        value=float(value) if value is not None else None,
        raw=dict(body),
    )
    return Batch(alerts=(alert,), envelope_status=state)
