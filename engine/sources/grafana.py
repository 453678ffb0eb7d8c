"""Grafana webhooks: unified alerting (Grafana 8+) and legacy alerting (7).

Unified alerting sends an Alertmanager-shaped body (``alerts`` with their own
status, fingerprint and ``values``). Legacy alerting sends one rule per body
(``ruleName``, ``state``, ``evalMatches``). Both have a contact-point test
message that must never become an incident: the unified test says
``status: resolved`` with ``state: alerting``, one alert without labels and a
``TestAlert`` group key; the legacy test has ``ruleId: 0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from engine.errors import InputError, Location
from engine.sources.alert import (
    Batch,
    IncomingAlert,
    check_document,
    check_labels,
    check_text,
    from_webhook_entry,
    kind_from_labels,
)

SOURCE = "grafana"
MAX_ALERTS = 1000
LEGACY_STATES = {"alerting": "firing", "ok": "resolved", "no_data": "firing"}
# States of a legacy alert that need nothing done.
LEGACY_QUIET = frozenset({"paused", "pending"})


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
    """The contact-point "test" button, in either format.

    Unified alerting's test is one alert without labels in a ``TestAlert``
    group; legacy alerting's has rule id 0. A real alert that merely lacks
    labels is not a test.
    """
    if "alerts" not in body:
        return (
            body.get("ruleId") == 0 and "test" in str(body.get("message", "")).lower()
        )
    alerts = body.get("alerts") or []
    unlabeled = all(isinstance(a, Mapping) and not a.get("labels") for a in alerts)
    markers = f"{body.get('groupKey', '')} {body.get('title', '')}"
    return unlabeled and "TestAlert" in markers


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
    if not alerts and not test:
        raise InputError(
            "alerts: the notification lists no alert; Grafana always sends at "
            "least one",
            code="E521",
            location=Location(field="alerts"),
        )
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
    """Grafana's values map: the first number that fits a float."""
    if not isinstance(values, Mapping):
        return None
    for value in values.values():
        number = _finite(value)
        if number is not None:
            return number
    return None


def _finite(value: Any) -> float | None:
    """A number as a float, or None when it is none or beyond a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _legacy(body: Mapping[str, Any]) -> Batch:
    if is_test(body):
        return Batch(alerts=(), is_test=True, envelope_status=str(body.get("state")))
    state = body.get("state")
    if not isinstance(state, str):
        raise InputError(
            "state: a legacy Grafana alert needs its state (alerting, ok, ...)",
            code="E520",
            location=Location(field="state"),
        )
    status = LEGACY_STATES.get(state)
    if status is None and state in LEGACY_QUIET:
        return Batch(alerts=(), envelope_status=state)
    if status is None:
        known = ", ".join([*LEGACY_STATES, *sorted(LEGACY_QUIET)])
        raise InputError(
            f"state: {state[:64]!r} is not a Grafana alert state; expected one "
            f"of {known}",
            code="E513",
            location=Location(field="state"),
        )
    check_document(body, "body")
    name = check_text(body.get("ruleName") or "unnamed", "ruleName", 256)
    labels = check_labels(body.get("tags") or {}, "tags")
    matches = body.get("evalMatches") or []
    value = next(
        (
            _finite(m.get("value"))
            for m in matches
            if isinstance(m, Mapping) and _finite(m.get("value")) is not None
        ),
        None,
    )
    rule_id = body.get("ruleId", name)
    if not isinstance(rule_id, int | str) or isinstance(rule_id, bool):
        raise InputError(
            "ruleId: expected a number", code="E520", location=Location(field="ruleId")
        )
    alert = IncomingAlert(
        source=SOURCE,
        kind=kind_from_labels(labels, name),
        name=name,
        status=status,
        fingerprint=f"legacy-{rule_id}",
        labels=labels,
        summary=str(body.get("message") or body.get("title") or "") or None,
        value=value,
        raw=dict(body),
    )
    return Batch(alerts=(alert,), envelope_status=state)
