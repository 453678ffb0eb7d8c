"""Health checks of the dependencies the SRE configured: status and latency.

Each configured URL is fetched once per snapshot with its own timeout, all
of them at the same time on a small thread pool, through one httpx client
kept on the collector (no proxies from the environment, no redirects
followed: a redirect answers, so it counts as up). A check passes on a
2xx or 3xx status; a connection error or timeout fails it with the reason.
Latency is measured on the monotonic clock around the request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

from engine.settings import HealthCheck

log = logging.getLogger("engine.facts.dependencies")

MAX_PARALLEL = 8


def check(client: httpx.Client, health: HealthCheck) -> dict[str, Any]:
    started = time.monotonic()
    try:
        response = client.get(health.url, timeout=health.timeout_s)
    except httpx.HTTPError as exc:
        return {
            "name": health.name,
            "ok": False,
            "status": None,
            "latency_ms": None,
            "error": f"{type(exc).__name__}: {exc}"[:4096],
        }
    latency = (time.monotonic() - started) * 1000.0
    ok = 200 <= response.status_code < 400
    return {
        "name": health.name,
        "ok": ok,
        "status": response.status_code,
        "latency_ms": round(latency, 1),
        "error": None if ok else f"answered {response.status_code}",
    }


class DependencyCollector:
    name: str = "dependencies"
    sections: tuple[str, ...] = ("dependencies",)

    def __init__(self, checks: Sequence[HealthCheck]) -> None:
        self.checks = list(checks)[:64]
        # One client: building one costs more than a loopback request.
        self._client = httpx.Client(trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        results = self._run_all()
        failing = [r["name"] for r in results if not r["ok"]]
        if failing:
            log.info("dependencies.failing", extra={"names": failing})
        return {
            "dependencies": {
                "available": True,
                "total": len(results),
                "failing": len(failing),
                "failing_names": failing,
                "checks": results,
            }
        }

    def _run_all(self) -> list[dict[str, Any]]:
        if not self.checks:
            return []
        workers = min(len(self.checks), MAX_PARALLEL)
        with ThreadPoolExecutor(workers, thread_name_prefix="health") as pool:
            return list(pool.map(lambda h: check(self._client, h), self.checks))
