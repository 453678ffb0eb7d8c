"""What ``/metrics`` adds to the engine's counters: questions to the database.

Incidents by type and status, the flow's queue depth by job kind and the
running policy's version are read when Prometheus scrapes, not kept in
memory, so several replicas report the same truth. The engine's own
counters and histograms (``engine.telemetry``) live in the default registry
and are written out first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from api.deps import Services
from engine.store.models import Incident, Job, JobStatus
from engine.telemetry import POLICY_LAST_RELOAD_OK

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        incidents = GaugeMetricFamily(
            "incident_policy_incidents",
            "Incidents by type and status.",
            labels=["type", "status"],
        )
        queue = GaugeMetricFamily(
            "incident_policy_queue_depth",
            "Flow jobs waiting to run, by kind.",
            labels=["kind"],
        )
        try:
            self._fill(incidents, queue)
        except SQLAlchemyError as exc:
            log.warning(
                "metrics.store_unavailable", extra={"error": type(exc).__name__}
            )
        yield incidents
        yield queue
        yield self._policy()

    def _fill(self, incidents: GaugeMetricFamily, queue: GaugeMetricFamily) -> None:
        with self._services.database.readers() as session:
            for type_, status, count in session.execute(
                select(Incident.type, Incident.status, func.count()).group_by(
                    Incident.type, Incident.status
                )
            ):
                incidents.add_metric([type_ or "unclassified", status], count)
            for kind, count in session.execute(
                select(Job.kind, func.count())
                .where(Job.status == JobStatus.QUEUED.value)
                .group_by(Job.kind)
            ):
                queue.add_metric([kind], count)

    def _policy(self) -> GaugeMetricFamily:
        # The holder may reload on its own (file watcher, SIGHUP): the gauge
        # is set from its status at each scrape.
        POLICY_LAST_RELOAD_OK.set(1 if self._services.policy.status.ok else 0)
        info = GaugeMetricFamily(
            "incident_policy_policy_info",
            "The running policy version (value 1); ok is the last reload's result.",
            labels=["version", "ok"],
        )
        holder = self._services.policy
        info.add_metric([holder.current.version[:12], str(holder.status.ok).lower()], 1)
        return info


def exposition(registry: CollectorRegistry) -> bytes:
    store = generate_latest(registry)  # first: it sets the reload gauge
    return generate_latest(REGISTRY) + store


def store_registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(services))
    return registry
