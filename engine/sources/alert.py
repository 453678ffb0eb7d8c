"""The normalised alert every source produces, and the limits it obeys.

Whatever the sender (the generic API, Alertmanager, Grafana, a person, the
host watcher), intake sees ``IncomingAlert`` values: times are aware UTC
(``+05:30`` offsets converted, Go's zero time ``0001-01-01`` read as "not
set"), the status is the alert's own (never its group's), the fingerprint
identifies the alert across notifications, and labels are plain strings
kept byte for byte. ``Batch`` carries what the envelope says about the
group: its key, how many alerts were cut (``truncatedAlerts``) and whether it
is a sender's test message.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.errors import InputError, Location

KINDS = (
    "health_check_failure",
    "threshold_exceeded",
    "pm2_restart_loop",
    "error_rate_spike",
    "manual",
    "deploy",
)
MAX_LABELS = 128
MAX_LABEL_NAME = 256
MAX_LABEL_VALUE = 4096
MAX_FINGERPRINT = 256
MAX_DEPTH = 32
MAX_NODES = 20_000
EARLIEST_YEAR, LATEST_YEAR = 2000, 2200
GO_ZERO_YEAR = 1


@dataclass(frozen=True)
class IncomingAlert:
    source: str
    kind: str
    name: str
    status: str  # firing | resolved
    fingerprint: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    severity: str | None = None
    summary: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    value: float | None = None
    snapshot: Mapping[str, Any] | None = None  # facts the source posted
    raw: Mapping[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        """The ``alert`` section of the facts document."""
        section: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "name": self.name,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }
        optional = {
            # Sources spell it CRITICAL, Critical or critical: rules see one.
            "severity": self.severity.lower() if self.severity else None,
            "summary": self.summary,
            "value": self.value,
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
        }
        section.update({k: v for k, v in optional.items() if v is not None})
        return section


@dataclass(frozen=True)
class Batch:
    alerts: tuple[IncomingAlert, ...]
    group_key: str | None = None
    truncated: int = 0
    is_test: bool = False
    envelope_status: str | None = None


def parse_time(value: Any, where: str) -> datetime | None:
    """Aware UTC, or None for absent and Go's zero time."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InputError(
            f"{where}: {value!r} is not an ISO 8601 time; send it like "
            "2026-12-04T15:06:53Z or with an offset (+05:30)",
            code="E502",
            location=Location(field=where),
        ) from exc
    if parsed.year == GO_ZERO_YEAR:
        return None
    if parsed.tzinfo is None:
        raise InputError(
            f"{where}: {value!r} has no time zone; add Z or an offset such as +00:00",
            code="E503",
            location=Location(field=where),
        )
    return in_range(parsed, where)


def in_range(moment: datetime, where: str) -> datetime:
    """``moment`` in UTC, refused outside the years this service handles."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise InputError(
            f"{where}: {moment.isoformat()} is outside {EARLIEST_YEAR} to "
            f"{LATEST_YEAR}; send the time it really happened",
            code="E502",
            location=Location(field=where),
        )
    return moment.astimezone(UTC)


def check_text(value: Any, where: str, limit: int) -> str:
    """A string that every database stores as sent, or an ``InputError``.

    NUL characters and unpaired surrogates are refused: PostgreSQL cannot
    store the first, and the second is not text at all.
    """
    if not isinstance(value, str):
        raise InputError(
            f"{where} must be a string (got {type(value).__name__})",
            code="E504",
            location=Location(field=where),
        )
    if len(value) > limit:
        raise InputError(
            f"{where} is {len(value)} characters long; the limit is {limit}: "
            "shorten it",
            code="E505",
            location=Location(field=where),
        )
    if "\x00" in value or not _encodable(value):
        raise InputError(
            f"{where} holds a NUL character or an unpaired surrogate; send "
            "valid UTF-8 text",
            code="E506",
            location=Location(field=where),
        )
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_document(value: Any, where: str) -> None:
    """Raw JSON kept as sent: clean text, finite numbers, bounded shape."""
    count = 0
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise InputError(
                f"{where} is too large or too deeply nested (limits: {MAX_NODES} "
                f"values, {MAX_DEPTH} levels); send less",
                code="E505",
                location=Location(field=where),
            )
        if isinstance(node, str):
            check_text(node, path, 1 << 20)
        elif isinstance(node, float) and not math.isfinite(node):
            raise InputError(
                f"{path} is {node}; numbers must be finite",
                code="E507",
                location=Location(field=path),
            )
        elif isinstance(node, Mapping):
            for key, item in node.items():
                check_text(key, f"{path} key", MAX_LABEL_NAME)
                stack.append((item, f"{path}.{key}", depth + 1))
        elif isinstance(node, list):
            stack.extend(
                (item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node)
            )


def check_labels(labels: Any, where: str) -> dict[str, str]:
    """Labels as plain strings, within the limits, or an ``InputError``."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InputError(
            f"{where} must be an object of string values",
            code="E504",
            location=Location(field=where),
        )
    if len(labels) > MAX_LABELS:
        raise InputError(
            f"{where} has {len(labels)} entries; the limit is {MAX_LABELS}: send fewer",
            code="E505",
            location=Location(field=where),
        )
    clean = {}
    for name, value in labels.items():
        clean[_label_name(name, where)] = _label_value(value, f"{where}.{name}")
    return clean


def _label_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_LABEL_NAME:
        raise InputError(
            f"{where}: label name {str(name)[:80]!r} must be 1 to {MAX_LABEL_NAME} "
            "characters",
            code="E505",
            location=Location(field=where),
        )
    return check_text(name, f"{where} name", MAX_LABEL_NAME)


def _label_value(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(
            f"{where} must be a string (got {type(value).__name__})",
            code="E504",
            location=Location(field=where),
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(
            f"{where} is {value}; numbers must be finite",
            code="E507",
            location=Location(field=where),
        )
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_LABEL_VALUE:
        hint = "move it to an annotation" if "labels" in where else "shorten it"
        raise InputError(
            f"{where} is {len(text)} characters long; the limit is "
            f"{MAX_LABEL_VALUE}: {hint}",
            code="E505",
            location=Location(field=where),
        )
    return check_text(text, where, MAX_LABEL_VALUE)


def fingerprint_of(source: str, labels: Mapping[str, str]) -> str:
    """A stable fingerprint from the labels, for sources that send none."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False)
    digest = hashlib.sha256(f"{source}\0{canonical}".encode()).hexdigest()
    return digest[:16]


def kind_from_labels(labels: Mapping[str, str], name: str) -> str:
    """The alert kind: an explicit ``kind`` label, else guessed from its name."""
    if labels.get("kind") in KINDS:
        return labels["kind"]
    lowered = name.lower()
    guesses = (
        (("restart", "crashloop", "crash_loop"), "pm2_restart_loop"),
        (("down", "unreachable", "health", "probe"), "health_check_failure"),
        (("error", "5xx", "errors"), "error_rate_spike"),
    )
    for words, kind in guesses:
        if any(word in lowered for word in words):
            return kind
    return "threshold_exceeded"


def from_facts(section: Mapping[str, Any], *, source: str = "replay") -> IncomingAlert:
    """An alert rebuilt from the ``alert`` section of a facts document."""
    labels = check_labels(section.get("labels") or {}, "alert.labels")
    name = str(section.get("name") or section.get("kind") or "replay")
    kind = str(section.get("kind") or kind_from_labels(labels, name))
    return IncomingAlert(
        source=str(section.get("source") or source),
        kind=kind,
        name=name,
        status=str(section.get("status") or "firing"),
        fingerprint=str(
            section.get("fingerprint")
            or fingerprint_of(source, {"alertname": name, **labels})
        ),
        labels=labels,
        annotations=check_labels(section.get("annotations") or {}, "alert.annotations"),
        severity=section.get("severity"),
        summary=section.get("summary"),
        starts_at=parse_time(section.get("starts_at"), "alert.starts_at"),
        value=section.get("value"),
    )


def from_webhook_entry(
    entry: Any, where: str, *, source: str, shape_code: str, value: float | None = None
) -> IncomingAlert:
    """One alert of an Alertmanager-shaped webhook (Alertmanager, Grafana 8+).

    Each alert carries its own status and fingerprint; the envelope's status
    is never used for it.
    """
    if not isinstance(entry, Mapping):
        raise InputError(
            f"{where}: expected an object",
            code=shape_code,
            location=Location(field=where),
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
    check_document(entry, where)
    name = labels.get("alertname") or "unnamed"
    given = entry.get("fingerprint")
    fingerprint = (
        check_text(given, f"{where}.fingerprint", MAX_FINGERPRINT)
        if given
        else fingerprint_of(source, labels)
    )
    return IncomingAlert(
        source=source,
        kind=kind_from_labels(labels, name),
        name=name,
        status=str(status),
        fingerprint=fingerprint,
        labels=labels,
        annotations=annotations,
        severity=labels.get("severity"),
        summary=annotations.get("summary") or annotations.get("description"),
        starts_at=parse_time(entry.get("startsAt"), f"{where}.startsAt"),
        ends_at=parse_time(entry.get("endsAt"), f"{where}.endsAt"),
        value=value,
        raw=dict(entry),
    )
