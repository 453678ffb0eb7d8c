"""Intake routes: the generic alert, Alertmanager, Grafana, a manual report.

Each route parses its format into ``IncomingAlert`` values (a bad body is
refused before anything is stored), hands them to the intake batcher and
answers 202 once they are committed, with what intake did to each. A
sender's test message stores nothing and answers ``{"test": true}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Caller, ReporterCaller, Services, ServicesDep, SourceCaller
from api.schemas import AcceptedOut, IntakeOut
from engine.errors import IncidentPolicyError
from engine.policy.model import Test
from engine.policy.policy import Policy
from engine.sources import alertmanager, grafana
from engine.sources.alert import KINDS, Batch, IncomingAlert
from engine.sources.generic import (
    GenericAlertIn,
    ManualReportIn,
    manual_alert,
    to_alert,
)
from engine.telemetry import ALERTS_REJECTED, source_label

router = APIRouter(prefix="/v1", tags=["intake"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="a retry with the same key returns the first answer",
    ),
]


class AlertmanagerIn(BaseModel):
    """Prometheus Alertmanager's webhook body (format version 4), as sent."""

    model_config = ConfigDict(extra="allow")

    version: str = Field(description="must be 4")
    status: str | None = Field(default=None, description="the group's; not used")
    groupKey: str | None = None
    truncatedAlerts: int = Field(default=0, ge=0)
    alerts: list[dict[str, Any]]


class GrafanaIn(BaseModel):
    """Grafana's webhook body: unified alerting (8+) or legacy alerting (7)."""

    model_config = ConfigDict(extra="allow")

    alerts: list[dict[str, Any]] | None = None
    ruleName: str | None = None
    state: str | None = None


@router.post("/alerts", status_code=202)
async def post_alert(
    body: GenericAlertIn,
    caller: SourceCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> IntakeOut:
    """Accept one alert in the service's own shape (kind, labels, facts)."""
    kinds = known_kinds(services.policy.current)
    alert = _parsed(body.source, lambda: to_alert(body, kinds))
    return await accept_alerts(services, caller, [alert], idempotency_key)


@router.post("/alerts/alertmanager", status_code=202)
async def post_alertmanager(
    body: AlertmanagerIn,
    caller: SourceCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> IntakeOut:
    """Accept a Prometheus Alertmanager webhook notification (version 4)."""
    raw = body.model_dump(exclude_unset=True)
    batch = _parsed(alertmanager.SOURCE, lambda: alertmanager.parse(raw))
    return await accept_batch(services, caller, batch, idempotency_key)


@router.post("/alerts/grafana", status_code=202)
async def post_grafana(
    body: GrafanaIn,
    caller: SourceCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> IntakeOut:
    """Accept a Grafana webhook; its contact-point test stores nothing."""
    raw = body.model_dump(exclude_unset=True)
    batch = _parsed(grafana.SOURCE, lambda: grafana.parse(raw))
    return await accept_batch(services, caller, batch, idempotency_key)


@router.post("/reports", status_code=202)
async def post_report(
    body: ManualReportIn,
    caller: ReporterCaller,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> IntakeOut:
    """Accept a manual report: a person saw something wrong."""
    alert = _parsed("manual", lambda: manual_alert(body))
    return await accept_alerts(services, caller, [alert], idempotency_key)


def _parsed(source: str, parse: Any) -> Any:
    try:
        return parse()
    except IncidentPolicyError as exc:
        ALERTS_REJECTED.labels(source_label(source), exc.code).inc()
        raise


async def accept_batch(
    services: Services, caller: Caller, batch: Batch, key: str | None
) -> IntakeOut:
    if batch.is_test or not batch.alerts:
        return IntakeOut(
            accepted=[], incident_ids=[], test=batch.is_test, truncated=batch.truncated
        )
    found = await accept_alerts(services, caller, batch.alerts, key)
    return found.model_copy(update={"truncated": batch.truncated})


async def accept_alerts(
    services: Services,
    caller: Caller,
    alerts: Sequence[IncomingAlert],
    key: str | None,
) -> IntakeOut:
    future = services.intake.submit(caller.org_id, alerts, key)
    try:
        accepted = await asyncio.wrap_future(future)
    except IncidentPolicyError as exc:
        ALERTS_REJECTED.labels(source_label(alerts[0].source), exc.code).inc()
        raise
    touched = dict.fromkeys(a.incident_id for a in accepted if a.incident_id)
    return IntakeOut(
        accepted=[AcceptedOut(**a.as_dict()) for a in accepted],
        incident_ids=list(touched),
    )


_KINDS_BY_VERSION: dict[str, frozenset[str]] = {}


def known_kinds(policy: Policy) -> frozenset[str]:
    """The built-in kinds and every kind the intake rules test for."""
    known = _KINDS_BY_VERSION.get(policy.version)
    if known is None:
        if len(_KINDS_BY_VERSION) > 16:
            _KINDS_BY_VERSION.clear()
        known = _KINDS_BY_VERSION[policy.version] = _intake_kinds(policy)
    return known


def _intake_kinds(policy: Policy) -> frozenset[str]:
    found = set(KINDS)
    for rule in policy.source.rules.get("intake", ()):
        for node in rule.when.walk():
            if isinstance(node, Test) and node.path == "alert.kind":
                operand = node.operand
                values = operand if isinstance(operand, list | tuple) else [operand]
                found.update(v for v in values if isinstance(v, str))
    return frozenset(found)
