"""One snapshot of the host: every collector in parallel, each on a budget.

``HostObserver.snapshot()`` starts each collector on a daemon thread of its
own and waits at most ``collector_timeout_s`` for all of them. A collector
that raises becomes ``available: false`` with its message in each section
it owns; one still running at the deadline becomes ``available: false,
error: "timed out after N s"`` and is left to finish in the background: the
snapshot does not wait for it, and the next snapshot reports it as still
running instead of starting it twice (its state, such as a log offset,
stays consistent). A hung thread never blocks the service's exit.

Collectors may add keys to a section another collector owns (the error log
adds ``disk.write_errors``); sections merge key by key.

Facts posted by an alert source fill in: for each key the host did not
observe (absent or null), the posted value is used; a value the host
observed wins, because it was measured here, now. ``provenance`` names each
section's source: ``host``, ``posted``, or ``host+posted``. Ratios that need
two collectors (upstream and DNS failures per request) are derived last,
from the merged facts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from engine.errors import IncidentPolicyError
from engine.facts.accesslog import AccessLogCollector
from engine.facts.base import Collector, Snapshot
from engine.facts.dependencies import DependencyCollector
from engine.facts.deploys import Deploy, DeployCollector
from engine.facts.errorlog import ErrorLogCollector
from engine.facts.features import FeatureMap
from engine.facts.host import DiskCollector, HostCollector
from engine.facts.nginx import NginxCollector
from engine.facts.pm2 import Pm2Collector
from engine.runtime import Runtime
from engine.settings import Settings

log = logging.getLogger("engine.facts.observer")

Facts = dict[str, dict[str, Any]]
HOST, POSTED = "host", "posted"
RATIOS = {"upstream": "failures", "dns": "failures"}  # section: count per request


@dataclass(frozen=True, slots=True)
class _Outcome:
    facts: Mapping[str, Mapping[str, Any]]
    duration_ms: float


@dataclass(slots=True)
class _Run:
    future: Future[_Outcome]
    started: float


def build_default_collectors(
    settings: Settings,
    runtime: Runtime,
    features: FeatureMap,
    *,
    restart_loop: int = 5,
    restart_window_minutes: float = 10.0,
    deploy_sources: Sequence[Callable[[], Iterable[Deploy]]] = (),
) -> list[Collector]:
    """The collectors that watch this host, configured from ``settings``."""
    # Commands get a little less than the snapshot's budget, so the runner's
    # own timeout fires (and kills the child) before the observer gives up.
    command_timeout = settings.collector_timeout_s * 0.9
    pm2 = Pm2Collector(
        runtime.commands,
        pm2_bin=settings.pm2_bin,
        pm2_home=settings.pm2_home,
        timeout_s=command_timeout,
        restart_loop=restart_loop,
        restart_window_minutes=restart_window_minutes,
    )
    return [
        HostCollector(window_s=restart_window_minutes * 60.0),
        DiskCollector(settings.disk_mounts, window_s=restart_window_minutes * 60.0),
        pm2,
        NginxCollector(
            runtime.commands,
            nginx_bin=settings.nginx_bin,
            nginx_conf=settings.nginx_conf,
            nginx_prefix=settings.nginx_prefix,
            pid_file=settings.nginx_pid_file,
            status_url=settings.nginx_status_url,
            timeout_s=command_timeout,
        ),
        AccessLogCollector(
            settings.nginx_access_log,
            features=features,
            log_format=settings.access_log_format,
            customer_field=settings.customer_field,
            upload_pattern=settings.upload_path_pattern,
            window_s=settings.log_window_s,
            baseline_tau_s=settings.baseline_tau_s,
            backlog_bytes=settings.log_backlog_bytes,
            ignore_paths=[urlsplit(settings.nginx_status_url).path],
        ),
        ErrorLogCollector(
            settings.nginx_error_log,
            window_s=settings.log_window_s,
            backlog_bytes=settings.log_backlog_bytes,
        ),
        DeployCollector(
            settings.resolved_deploy_log, sources=[pm2.deploys, *deploy_sources]
        ),
        DependencyCollector(settings.health_checks),
    ]


class HostObserver:
    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        *,
        features: FeatureMap,
        collectors: Sequence[Collector] | None = None,
        restart_loop: int = 5,
        restart_window_minutes: float = 10.0,
        deploy_sources: Sequence[Callable[[], Iterable[Deploy]]] = (),
    ) -> None:
        self.runtime = runtime
        self.timeout_s = settings.collector_timeout_s
        self.collectors: list[Collector] = (
            list(collectors)
            if collectors is not None
            else build_default_collectors(
                settings,
                runtime,
                features,
                restart_loop=restart_loop,
                restart_window_minutes=restart_window_minutes,
                deploy_sources=deploy_sources,
            )
        )
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def snapshot(self, posted: Mapping[str, Any] | None = None) -> Snapshot:
        """Collect every section now, merge ``posted`` facts, derive ratios."""
        now = self.runtime.clock.now()
        started = time.monotonic()
        with self._lock:  # one snapshot at a time per observer
            runs = {c.name: self._start(c, now) for c in self.collectors}
            wait([r.future for r in runs.values()], timeout=self._budget(runs))
            facts, durations, failed = self._gather(runs)
        provenance = {section: HOST for section in facts}
        _merge_posted(facts, provenance, posted or {})
        _derive_ratios(facts)
        log.info(
            "snapshot.taken",
            extra={
                "collectors": len(runs),
                "failed": failed,
                "ms": round((time.monotonic() - started) * 1000.0, 1),
            },
        )
        return Snapshot(
            taken_at=now,
            facts={"taken_at": now.isoformat(), **facts},
            provenance=provenance,
            durations_ms=durations,
        )

    def _start(self, collector: Collector, now: datetime) -> _Run:
        earlier = self._runs.get(collector.name)
        if earlier is not None and not earlier.future.done():
            return earlier  # still busy with an earlier snapshot
        run = _Run(Future(), time.monotonic())
        self._runs[collector.name] = run
        thread = threading.Thread(
            target=_collect_into,
            args=(collector, now, run.future),
            name=f"collect-{collector.name}",
            daemon=True,
        )
        thread.start()
        return run

    def _budget(self, runs: Mapping[str, _Run]) -> float:
        # A run carried over from an earlier snapshot has already used time.
        newest = max((r.started for r in runs.values()), default=time.monotonic())
        return max(newest + self.timeout_s - time.monotonic(), 0.0)

    def _gather(
        self, runs: Mapping[str, _Run]
    ) -> tuple[Facts, dict[str, float], list[str]]:
        facts: Facts = {}
        durations: dict[str, float] = {}
        failed: list[str] = []
        for collector in self.collectors:
            run = runs[collector.name]
            outcome, error = _outcome_of(run, self.timeout_s)
            if outcome is not None:
                durations[collector.name] = round(outcome.duration_ms, 2)
                for section, values in outcome.facts.items():
                    facts.setdefault(section, {}).update(values)
                continue
            failed.append(collector.name)
            durations[collector.name] = round(
                (time.monotonic() - run.started) * 1000.0, 2
            )
            log.warning(
                "snapshot.collector_failed",
                extra={"collector": collector.name, "error": error},
            )
            for section in collector.sections:
                facts.setdefault(section, {}).update(available=False, error=error)
        return facts, durations, failed

    def close(self) -> None:
        """Release what collectors hold open (log files, HTTP clients)."""
        for collector in self.collectors:
            close = getattr(collector, "close", None)
            if callable(close):
                close()


def _collect_into(
    collector: Collector, now: datetime, future: Future[_Outcome]
) -> None:
    started = time.monotonic()
    try:
        facts = collector.collect(now)
    except BaseException as exc:  # reported as a fact, never lost
        future.set_exception(exc)
        return
    future.set_result(_Outcome(facts, (time.monotonic() - started) * 1000.0))


def _outcome_of(run: _Run, timeout_s: float) -> tuple[_Outcome | None, str]:
    future = run.future
    if not future.done():
        return None, f"timed out after {timeout_s:g} s"
    exc = future.exception()
    if exc is None:
        return future.result(), ""
    if isinstance(exc, IncidentPolicyError):
        return None, exc.message[:4096]
    return None, f"{type(exc).__name__}: {exc}"[:4096]


def _merge_posted(
    facts: Facts, provenance: dict[str, str], posted: Mapping[str, Any]
) -> None:
    for section, values in posted.items():
        if section == "taken_at" or not isinstance(values, Mapping):
            continue
        own = facts.setdefault(section, {})
        filled = False
        for key, value in values.items():
            if own.get(key) is None and value is not None:
                own[key] = value
                filled = True
        if filled:
            was = provenance.get(section)
            provenance[section] = POSTED if was is None else f"{HOST}+{POSTED}"


def _derive_ratios(facts: Facts) -> None:
    requests = facts.get("http", {}).get("requests")
    if not isinstance(requests, int) or requests <= 0:
        return
    for section, count_key in RATIOS.items():
        values = facts.get(section)
        if not values or values.get("failure_rate") is not None:
            continue
        count = values.get(count_key)
        if isinstance(count, int):
            values["failure_rate"] = min(count / requests, 1.0)
