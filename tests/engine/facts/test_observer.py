from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.facts.errors import CollectorError
from engine.facts.features import FeatureMap
from engine.facts.observer import HostObserver, build_default_collectors
from engine.runtime import FixedClock, Runtime
from engine.settings import HealthCheck, Settings
from tests.engine.facts.conftest import assert_valid
from tests.support.realhost import Nginx, Pm2

NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


class Fixed:
    def __init__(self, name: str, facts: Mapping[str, Mapping[str, Any]]) -> None:
        self.name = name
        self.sections = tuple(facts)
        self.facts = facts

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        return self.facts


class Hangs:
    name = "hangs"
    sections = ("pm2",)

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        self.calls += 1
        self.release.wait(30)
        return {"pm2": {"available": True, "total": 1}}


class Raises:
    name = "raises"
    sections = ("nginx",)

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        raise CollectorError("nginx -t could not run: no such file")


class Crashes:
    name = "crashes"
    sections = ("deploys",)

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        return {"deploys": {"x": 1 / 0}}


def observer(*collectors: Any, timeout_s: float = 0.5) -> HostObserver:
    settings = Settings(collector_timeout_s=timeout_s)
    return HostObserver(
        settings,
        Runtime(clock=FixedClock(NOW)),
        features=FeatureMap.empty(),
        collectors=list(collectors),
    )


@pytest.fixture
def hangs() -> Iterator[Hangs]:
    hung = Hangs()
    yield hung
    hung.release.set()


def test_hung_collector_becomes_a_fact_and_does_not_hold_the_snapshot(
    hangs: Hangs,
) -> None:
    memory = Fixed("host", {"memory": {"available": True, "percent": 50.0}})
    snap = observer(hangs, memory, timeout_s=0.3).snapshot()
    assert snap.facts["pm2"] == {"available": False, "error": "timed out after 0.3 s"}
    assert snap.facts["memory"]["percent"] == 50.0
    assert not hangs.release.is_set()  # the snapshot came back while it hung
    assert set(snap.durations_ms) == {"hangs", "host"}


def test_collector_still_running_is_not_started_twice(hangs: Hangs) -> None:
    watcher = observer(hangs, timeout_s=0.2)
    watcher.snapshot()
    again = watcher.snapshot()
    assert hangs.calls == 1
    assert again.facts["pm2"]["available"] is False
    hangs.release.set()


def test_failing_collectors_report_their_reason_in_their_sections() -> None:
    snap = observer(Raises(), Crashes()).snapshot()
    assert snap.facts["nginx"] == {
        "available": False,
        "error": "nginx -t could not run: no such file",
    }
    assert snap.facts["deploys"]["available"] is False
    assert snap.facts["deploys"]["error"].startswith("ZeroDivisionError")
    assert_valid(snap.facts)


def test_sections_merge_key_by_key_across_collectors() -> None:
    disk = Fixed("disk", {"disk": {"available": True, "max_percent": 40.0}})
    errors = Fixed("error_log", {"disk": {"write_errors": 2}})
    snap = observer(disk, errors).snapshot()
    assert snap.facts["disk"] == {
        "available": True,
        "max_percent": 40.0,
        "write_errors": 2,
    }


def test_failed_owner_keeps_what_others_added() -> None:
    class DiskFails(Raises):
        name = "disk"
        sections = ("disk",)

    errors = Fixed("error_log", {"disk": {"write_errors": 2}})
    snap = observer(DiskFails(), errors).snapshot()
    assert snap.facts["disk"]["write_errors"] == 2
    assert snap.facts["disk"]["available"] is False


def test_posted_facts_fill_in_and_host_observations_win() -> None:
    host = Fixed(
        "host", {"memory": {"available": True, "percent": 50.0, "limit_mb": None}}
    )
    posted = {
        "memory": {"percent": 99.0, "limit_mb": 512.0},
        "http": {"error_rate": 0.3},
    }
    snap = observer(host).snapshot(posted)
    assert snap.facts["memory"]["percent"] == 50.0
    assert snap.facts["memory"]["limit_mb"] == 512.0
    assert snap.facts["http"] == {"error_rate": 0.3}
    assert snap.provenance == {"memory": "host+posted", "http": "posted"}
    assert_valid(snap.facts)


def test_section_only_the_host_saw_is_marked_host() -> None:
    host = Fixed("host", {"memory": {"percent": 50.0}})
    snap = observer(host).snapshot({"memory": {"percent": 70.0}})
    assert snap.provenance == {"memory": "host"}


def test_failure_rates_are_derived_from_requests_across_collectors() -> None:
    access = Fixed("access_log", {"http": {"requests": 200}})
    errors = Fixed("error_log", {"upstream": {"failures": 50}, "dns": {"failures": 10}})
    snap = observer(access, errors).snapshot()
    assert snap.facts["upstream"]["failure_rate"] == 0.25
    assert snap.facts["dns"]["failure_rate"] == 0.05


def test_no_requests_leaves_failure_rates_unobserved() -> None:
    access = Fixed("access_log", {"http": {"requests": 0}})
    errors = Fixed("error_log", {"upstream": {"failures": 5}})
    snap = observer(access, errors).snapshot()
    assert "failure_rate" not in snap.facts["upstream"]


def test_snapshot_is_stamped_with_the_injected_clock() -> None:
    snap = observer(Fixed("host", {"memory": {}})).snapshot()
    assert snap.taken_at == NOW
    assert snap.facts["taken_at"] == NOW.isoformat()


def test_default_collectors_on_the_real_host(
    nginx: Nginx, pm2: Pm2, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        collector_timeout_s=20,
        pm2_bin=pm2.binary,
        pm2_home=pm2.home,
        nginx_bin=nginx.binary,
        nginx_conf=nginx.conf,
        nginx_status_url=nginx.status_url,
        nginx_access_log=nginx.access_log,
        nginx_error_log=nginx.error_log,
        access_log_format="timed",
        health_checks=[HealthCheck(name="nginx", url=nginx.status_url)],
    )
    pm2.start_app("collect-observed", "healthy.js")
    try:
        pm2.wait_for("collect-observed", "online")
        watcher = HostObserver(settings, Runtime.system(), features=FeatureMap.empty())
        nginx.get("/down/observer")
        snap = watcher.snapshot()
        watcher.close()
    finally:
        pm2.delete("collect-observed")
    assert_valid(snap.facts)
    names = {
        c.name
        for c in build_default_collectors(
            settings, Runtime.system(), FeatureMap.empty()
        )
    }
    assert set(snap.durations_ms) == names
    unavailable = {
        name: section.get("error")
        for name, section in snap.facts.items()
        if isinstance(section, dict) and section.get("available") is False
    }
    assert unavailable == {}
    assert snap.facts["nginx"]["running"] is True
    assert "collect-observed" in [p["name"] for p in snap.facts["pm2"]["processes"]]
    assert snap.facts["dependencies"]["failing"] == 0
    assert set(snap.provenance.values()) == {"host"}


def test_every_default_collector_failing_still_fits_the_vocabulary(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        collector_timeout_s=5,
        pm2_home=tmp_path / "no-pm2",
        nginx_bin=str(tmp_path / "no-nginx"),
        nginx_pid_file=tmp_path / "nginx.pid",
        nginx_status_url="http://127.0.0.1:9/nginx_status",
        nginx_access_log=tmp_path / "missing-access.log",
        nginx_error_log=tmp_path / "missing-error.log",
        disk_mounts=[tmp_path / "no-mount"],
    )
    watcher = HostObserver(settings, Runtime.system(), features=FeatureMap.empty())
    snap = watcher.snapshot()
    failed = {
        name
        for name, section in snap.facts.items()
        if isinstance(section, dict) and section.get("available") is False
    }
    assert failed == {
        "pm2",
        "nginx",
        "http",
        "uploads",
        "upstream",
        "dns",
        "network",
        "disk",
    }
    assert_valid(snap.facts)
