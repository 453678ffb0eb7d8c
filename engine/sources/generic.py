"""The generic alert (``POST /v1/alerts``) and the manual report.

Any alert source can post facts in our own shape: a kind the intake rules
know, a source name, labels, an optional severity, and optionally snapshot
facts of its own (validated against the facts vocabulary, merged with what the
service observes). A manual report is the same with ``kind: manual``: a
person saw something.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import InputError, Location
from engine.facts.vocabulary import validate
from engine.sources.alert import (
    KINDS,
    IncomingAlert,
    check_document,
    check_labels,
    check_text,
    fingerprint_of,
    in_range,
)


class GenericAlertIn(BaseModel):
    """An alert in our own shape."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(max_length=64, description="one of " + ", ".join(KINDS))
    source: str = Field(default="api", min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=256)
    status: str = Field(default="firing", pattern="^(firing|resolved)$")
    severity: str | None = Field(default=None, max_length=32)
    summary: str | None = Field(default=None, max_length=4096)
    fingerprint: str | None = Field(default=None, max_length=256)
    labels: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)
    starts_at: datetime | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    snapshot: dict[str, Any] | None = Field(
        default=None, description="facts the source observed (see docs/facts.md)"
    )


class ManualReportIn(BaseModel):
    """A person reports a problem."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=3, max_length=4096)
    severity: str | None = Field(default=None, pattern="^(info|warning|critical)$")
    reporter: str | None = Field(default=None, max_length=256)
    labels: dict[str, Any] = Field(default_factory=dict)


def to_alert(
    body: GenericAlertIn, known_kinds: frozenset[str] = frozenset(KINDS)
) -> IncomingAlert:
    if body.kind not in known_kinds:
        raise InputError(
            f"kind: {body.kind!r} is not a kind the intake rules know; use one of "
            + ", ".join(sorted(known_kinds)),
            code="E530",
            location=Location(field="kind"),
        )
    labels = check_labels(body.labels, "labels")
    annotations = check_labels(body.annotations, "annotations")
    starts_at = None
    if body.starts_at is not None:
        if body.starts_at.tzinfo is None:
            raise InputError(
                "starts_at has no time zone; add Z or an offset such as +00:00",
                code="E503",
                location=Location(field="starts_at"),
            )
        starts_at = in_range(body.starts_at, "starts_at")
    _check_texts(body)
    _check_snapshot(body.snapshot)
    name = body.name or labels.get("alertname") or body.kind
    return IncomingAlert(
        source=body.source,
        kind=body.kind,
        name=name,
        status=body.status,
        fingerprint=body.fingerprint
        or fingerprint_of(body.source, {"alertname": name, **labels}),
        labels=labels,
        annotations=annotations,
        severity=body.severity,
        summary=body.summary,
        starts_at=starts_at,
        value=body.value,
        snapshot=body.snapshot,
        # The snapshot is kept once, as the alert's posted snapshot.
        raw=body.model_dump(mode="json", exclude_none=True, exclude={"snapshot"}),
    )


def manual_alert(body: ManualReportIn) -> IncomingAlert:
    labels = check_labels(body.labels, "labels")
    check_text(body.summary, "summary", 4096)
    if body.reporter:
        check_text(body.reporter, "reporter", 256)
    if body.reporter:
        labels = {**labels, "reporter": body.reporter}
    return IncomingAlert(
        source="manual",
        kind="manual",
        name="ManualReport",
        status="firing",
        fingerprint=fingerprint_of("manual", {"summary": body.summary, **labels}),
        labels=labels,
        severity=body.severity,
        summary=body.summary,
        raw=body.model_dump(mode="json", exclude_none=True),
    )


TEXT_FIELDS = ("source", "name", "severity", "summary", "fingerprint")


def _check_texts(body: GenericAlertIn) -> None:
    for name in TEXT_FIELDS:
        value = getattr(body, name)
        if value is not None:
            check_text(value, name, 4096)


def _check_snapshot(snapshot: dict[str, Any] | None) -> None:
    if not snapshot:
        return
    check_document(snapshot, "snapshot")
    problems = validate({"snapshot": snapshot})
    if problems:
        first = problems[0]
        raise InputError(
            first.message.replace("facts at ", "", 1),
            code="E531",
            location=first.location,
            problems=[replace(p, code="E531") for p in problems],
        )
