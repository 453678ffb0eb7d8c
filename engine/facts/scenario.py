"""Turning a recorded incident scenario into a facts document.

Scenario files (``shared/cases/scenarios/*.json``, drawn from public
postmortems) describe what one host behind nginx and PM2 would have seen as
``signals``: ``memory_percent: 97``, ``pm2_status: {api: errored}``,
``upstream_failures: {share: 1.0, types: [timeout]}``... This module maps each
known signal onto the facts vocabulary, so a scenario can be replayed through
the whole flow as a drill. Qualitative values ("some", "dominant") become
shares of the error rate; signals with no place in the vocabulary are kept
under ``snapshot.extra`` so nothing is silently dropped. The mapping never
looks at the scenario's expected answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import InputError, Location

RESTART_LOOP = 5  # restarts in the window that count as a loop, as thresholds.yaml
LOOPING_STATUSES = frozenset({"errored", "waiting restart"})
QUALITATIVE_SHARE = {"dominant": 0.8, "most": 0.7, "some": 0.3, "few": 0.1}

Facts = dict[str, Any]


def is_scenario(document: Mapping[str, Any]) -> bool:
    return isinstance(document.get("signals"), Mapping)


def scenario_facts(document: Mapping[str, Any], *, name: str = "") -> Facts:
    """The facts document a host would have produced for this scenario."""
    signals = document.get("signals")
    if not isinstance(signals, Mapping):
        raise InputError(
            "a scenario needs a `signals` mapping (see shared/cases/scenarios)",
            code="E501",
            location=Location(name, field="signals"),
        )
    snapshot: Facts = {}
    extra: Facts = {}
    for key, value in signals.items():
        mapper = SIGNALS.get(key)
        if mapper is None:
            extra[key] = value
        elif value is not None:
            mapper(snapshot, value, signals)
    _derive_pm2(snapshot, signals)
    if extra:
        snapshot["extra"] = extra
    return {
        "alert": _alert(document, snapshot),
        "snapshot": snapshot,
        "incident": _incident(signals),
    }


def _section(snapshot: Facts, name: str) -> Facts:
    section: Facts = snapshot.setdefault(name, {})
    return section


def _put(section: str, key: str) -> Callable[[Facts, Any, Mapping[str, Any]], None]:
    def put(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            _section(snapshot, section)[key] = value

    return put


def _error_rate(snapshot: Facts, value: Any, signals: Mapping[str, Any]) -> None:
    if isinstance(value, int | float):
        _section(snapshot, "http")["error_rate"] = float(value)


def _status_codes(snapshot: Facts, value: Any, signals: Mapping[str, Any]) -> None:
    rate = signals.get("error_rate")
    if not isinstance(value, Mapping) or not isinstance(rate, int | float):
        return
    share = sum(
        QUALITATIVE_SHARE.get(str(value.get(code)), 0.0) for code in ("502", "504")
    )
    _section(snapshot, "http")["bad_gateway_rate"] = round(min(share, 1.0) * rate, 4)


def _upload_errors(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    if isinstance(value, int | float):
        feature = {"name": "uploads", "customer_facing": True, "error_rate": value}
        _section(snapshot, "http").setdefault("features", []).append(feature)


def _disk(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    if isinstance(value, int | float):
        disk = _section(snapshot, "disk")
        disk["max_percent"] = value
        disk["worst_mount"] = "/"


def _write_errors(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    _section(snapshot, "disk")["write_errors"] = 1 if value else 0


def _upstream(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    upstream = _section(snapshot, "upstream")
    if isinstance(value, int | float):
        upstream["failures"] = int(value)
        if value == 0:
            upstream["failure_rate"] = 0.0
        return
    if not isinstance(value, Mapping):
        return
    kinds = " ".join(str(t) for t in value.get("types", [value.get("type", "")]))
    upstream["failure_rate"] = float(value.get("share", 0.0))
    upstream["failing"] = [str(value.get("target", "upstream"))]
    if "timeout" in kinds:
        upstream["timed_out"] = 1
    if "refused" in kinds or "rejected" in kinds:
        upstream["refused"] = 1
    if "reset" in kinds:
        upstream["reset"] = 1


def _dns(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    dns = _section(snapshot, "dns")
    if isinstance(value, int | float):
        dns["failures"] = int(value)
        if value == 0:
            dns["failure_rate"] = 0.0
    elif isinstance(value, Mapping):
        dns["failure_rate"] = float(value.get("share_of_lookups", 0.0))


def _deploy(snapshot: Facts, value: Any, signals: Mapping[str, Any]) -> None:
    if not isinstance(value, int | float):
        return
    deploys = _section(snapshot, "deploys")
    deploys["last_minutes_ago"] = value
    kind = str(signals.get("deploy_kind") or "code")
    deploys["last_kind"] = "config" if "config" in kind or "rule" in kind else "code"


def _pm2_status(snapshot: Facts, value: Any, signals: Mapping[str, Any]) -> None:
    if not isinstance(value, Mapping):
        return
    processes = _section(snapshot, "pm2").setdefault("processes", [])
    for name, status in value.items():
        processes.append({"name": str(name), "status": str(status)})


def _main_process(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    if value is False:
        processes = _section(snapshot, "pm2").setdefault("processes", [])
        processes.append({"name": "main-service", "status": "stopped"})


def _restarts(snapshot: Facts, value: Any, _: Mapping[str, Any]) -> None:
    pm2 = _section(snapshot, "pm2")
    if isinstance(value, int | float):
        pm2["restarts_recent"] = int(value)
    elif isinstance(value, Mapping):
        processes = pm2.setdefault("processes", [])
        for name, count in value.items():
            found = next((p for p in processes if p["name"] == name), None)
            if found is None:
                found = {"name": str(name), "status": "online"}
                processes.append(found)
            found["restarts_recent"] = int(count)
        pm2["restarts_recent"] = sum(int(c) for c in value.values())


def _derive_pm2(snapshot: Facts, signals: Mapping[str, Any]) -> None:
    """Counts and restart-loop flags, as the PM2 collector derives them."""
    pm2 = snapshot.get("pm2")
    if not pm2:
        return
    processes = pm2.get("processes", [])
    for process in processes:
        recent = process.get("restarts_recent", 0)
        looping = process["status"] in LOOPING_STATUSES or recent >= RESTART_LOOP
        process["restart_loop"] = looping
    pm2["total"] = len(processes)
    pm2["online"] = sum(p["status"] == "online" for p in processes)
    pm2["errored"] = sum(p["status"] == "errored" for p in processes)
    pm2["stopped"] = sum(p["status"] == "stopped" for p in processes)
    pm2["restart_loops"] = sum(bool(p["restart_loop"]) for p in processes)
    if not processes and pm2.get("restarts_recent", 0) >= RESTART_LOOP:
        pm2["restart_loops"] = 1


def _alert(document: Mapping[str, Any], snapshot: Facts) -> Facts:
    rate = snapshot.get("http", {}).get("error_rate") or 0.0
    return {
        "kind": "error_rate_spike" if rate >= 0.05 else "threshold_exceeded",
        "source": "scenario",
        "name": str(document.get("id", "scenario")),
        "status": "firing",
        "summary": str(document.get("description", ""))[:4000],
        "labels": {},
    }


def _incident(signals: Mapping[str, Any]) -> Facts:
    duration = signals.get("duration_minutes")
    incident: Facts = {"severity": "critical", "status": "open", "alert_count": 1}
    if isinstance(duration, int | float):
        incident["age_minutes"] = duration
    return incident


SIGNALS: Mapping[str, Callable[[Facts, Any, Mapping[str, Any]], None]] = {
    "memory_percent": _put("memory", "percent"),
    "swap_percent": _put("swap", "percent"),
    "oom_killer_events_last_15m": _put("memory", "oom_kills_recent"),
    "cpu_percent": _put("host", "cpu_percent"),
    "disk_percent": _disk,
    "write_errors": _write_errors,
    "error_rate": _error_rate,
    "error_rate_upload_endpoints": _upload_errors,
    "http_5xx_by_code": _status_codes,
    "p95_latency_ms": _put("http", "p95_latency_ms"),
    "request_rate_vs_baseline": _put("http", "request_rate_vs_baseline"),
    "upload_rate_vs_baseline": _put("uploads", "rate_vs_baseline"),
    "inbound_bandwidth_vs_baseline": _put("uploads", "inbound_vs_baseline"),
    "upstream_failures": _upstream,
    "dns_errors": _dns,
    "packet_loss_percent": _put("network", "packet_loss_percent"),
    "provider_change_within_minutes": _put("network", "provider_change_minutes_ago"),
    "deploy_within_minutes": _deploy,
    "deploy_kind": lambda *_: None,  # read by _deploy
    "pm2_status": _pm2_status,
    "pm2_restarts_last_15m": _restarts,
    "main_process_running": _main_process,
    "duration_minutes": lambda *_: None,  # becomes incident.age_minutes
}
