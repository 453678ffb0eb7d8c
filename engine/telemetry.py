"""Prometheus metrics of the service itself.

Counters and histograms live here, module-level, in the default registry:
the engine increments them where things happen (an alert accepted, a rule
stage evaluated, an action finished, a policy reloaded). Gauges that are
really questions to the database (incidents by type and status, queue depth)
are answered at scrape time by a collector the API registers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALERTS_RECEIVED = Counter(
    "incident_policy_alerts_received_total",
    "Alerts accepted, by source.",
    ["source"],
)
ALERTS_REJECTED = Counter(
    "incident_policy_alerts_rejected_total",
    "Alert posts refused, by source and error code.",
    ["source", "code"],
)
RULE_EVALUATION = Histogram(
    "incident_policy_rule_evaluation_seconds",
    "Time to evaluate one stage's rules against one facts document.",
    ["stage"],
    buckets=(0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
ACTIONS = Counter(
    "incident_policy_actions_total",
    "Actions by name and result (succeeded, failed, refused, dry_run).",
    ["action", "result"],
)
STAGES = Counter(
    "incident_policy_stages_total",
    "Flow stages completed, by stage.",
    ["stage"],
)
POLICY_RELOADS = Counter(
    "incident_policy_policy_reloads_total",
    "Policy reload attempts by result (ok, failed).",
    ["result"],
)
POLICY_LAST_RELOAD_OK = Gauge(
    "incident_policy_policy_last_reload_ok",
    "1 when the last reload attempt succeeded, 0 when it failed.",
)
SNAPSHOT_SECONDS = Histogram(
    "incident_policy_snapshot_seconds",
    "Time to take one host snapshot.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)


KNOWN_SOURCES = frozenset(
    {"api", "alertmanager", "grafana", "manual", "watcher", "replay", "scenario"}
)


def source_label(source: str) -> str:
    """A metric label for an alert source: senders choose the field, so any
    name outside the known ones is counted as ``other`` (bounded series)."""
    return source if source in KNOWN_SOURCES else "other"
