from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.facts.errors import CollectorError
from engine.facts.pm2 import Pm2Collector, parse_jlist
from engine.runtime import CommandResult, SubprocessRunner
from tests.engine.facts.conftest import FIXTURES, assert_valid, eventually
from tests.support.realhost import Pm2

PM2 = FIXTURES / "pm2"
BIG = PM2 / "jlist_stopped_bigenv_640KB_unicode_name.json"
T3, T45 = PM2 / "jlist_t3s.json", PM2 / "jlist_t45s.json"
CAPTURE_START = datetime(2026, 12, 4, 14, 55, 31, tzinfo=UTC)


class ReplayRunner:
    """Answers ``pm2 jlist`` with captured outputs, one per call."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.calls: list[tuple[str, ...]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.calls.append(tuple(argv))
        return CommandResult(tuple(argv), 0, self.outputs.pop(0), "", 0.01)


def capture_secrets(path: Path) -> tuple[set[str], set[str]]:
    """Every environment key and (non-trivial) value in a jlist capture."""
    keys, values = set(), set()
    listed = json.loads(path.read_text())
    names = {proc["name"] for proc in listed}  # PM2 adds the app's name as a key
    for proc in listed:
        for key, value in proc["pm2_env"].get("env", {}).items():
            if key in names:
                continue
            keys.add(key)
            if len(str(value)) >= 8:
                values.add(str(value))
    return keys, values


def test_banner_before_the_json_is_skipped() -> None:
    banner = (PM2 / "jlist_fresh_daemon_stdout_banner_then_json.txt").read_text()
    assert parse_jlist(banner) == []
    listed = banner.rsplit("[]", 1)[0] + T45.read_text()
    names = [p.name for p in parse_jlist(listed)]
    assert names == [p["name"] for p in json.loads(T45.read_text())]


def test_output_without_a_list_is_a_failure_quoting_it() -> None:
    with pytest.raises(CollectorError) as raised:
        parse_jlist("[PM2][ERROR] Daemon not launched\n")
    assert "Daemon not launched" in raised.value.message


def test_large_unicode_output_is_parsed() -> None:
    processes = parse_jlist(BIG.read_text())
    assert len(BIG.read_bytes()) > 600_000
    assert "api-ünicode-服务" in [p.name for p in processes]


@pytest.mark.parametrize("capture", [BIG, T45], ids=["bigenv", "t45"])
def test_no_environment_variable_reaches_the_facts(capture: Path) -> None:
    collector = Pm2Collector(ReplayRunner(capture.read_text()))
    dumped = json.dumps(collector.collect(datetime.now(UTC)), ensure_ascii=False)
    keys, values = capture_secrets(capture)
    assert keys and values
    assert [k for k in keys if f'"{k}"' in dumped] == []
    assert [v for v in values if v in dumped] == []


def test_captured_processes_keep_the_schema_fields() -> None:
    facts = Pm2Collector(ReplayRunner(T45.read_text())).collect(
        CAPTURE_START + timedelta(seconds=45)
    )
    assert_valid(facts)
    pm2 = facts["pm2"]
    raw = json.loads(T45.read_text())
    assert pm2["total"] == len(raw)
    assert pm2["errored"] == sum(p["pm2_env"]["status"] == "errored" for p in raw)
    crash = next(p for p in pm2["processes"] if p["name"] == "worker-crashloop")
    assert crash["pid"] is None and crash["memory_mb"] is None
    assert crash["exit_code"] == 1 and crash["restart_loop"] is True
    highmem = next(p for p in pm2["processes"] if p["name"] == "media-highmem")
    assert highmem["memory_limit_mb"] == 200.0
    assert highmem["uptime_s"] is not None and highmem["uptime_s"] > 0


def test_restarts_recent_is_the_increase_between_snapshots() -> None:
    collector = Pm2Collector(
        ReplayRunner(T3.read_text(), T45.read_text()), restart_loop=5
    )
    first = collector.collect(CAPTURE_START + timedelta(seconds=3))["pm2"]
    second = collector.collect(CAPTURE_START + timedelta(seconds=45))["pm2"]
    assert first["restarts_recent"] is None
    before = {p["name"]: p["restarts"] for p in first["processes"]}
    jobs = next(p for p in second["processes"] if p["name"] == "jobs-backoff")
    assert jobs["restarts_recent"] == jobs["restarts"] - before["jobs-backoff"]
    assert jobs["restart_loop"] is (jobs["restarts_recent"] >= 5)


def jlist_with(restarts: int, status: str = "online") -> str:
    return json.dumps(
        [
            {
                "name": "api",
                "pm_id": 0,
                "pid": 10,
                "pm2_env": {"status": status, "restart_time": restarts},
                "monit": {"memory": 1 << 20, "cpu": 1},
            }
        ]
    )


def test_counter_reset_counts_restarts_since_the_reset() -> None:
    runner = ReplayRunner(jlist_with(40), jlist_with(42), jlist_with(3))
    collector = Pm2Collector(runner, restart_loop=100)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for minute in range(3):
        facts = collector.collect(at + timedelta(minutes=minute))
    assert facts["pm2"]["processes"][0]["restarts_recent"] == 2 + 3


def test_restarts_older_than_the_window_are_forgotten() -> None:
    runner = ReplayRunner(jlist_with(0), jlist_with(9), jlist_with(9), jlist_with(9))
    collector = Pm2Collector(runner, restart_loop=5, restart_window_minutes=10)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    looping = collector.collect(at) and collector.collect(at + timedelta(minutes=1))
    assert looping["pm2"]["processes"][0]["restart_loop"] is True
    collector.collect(at + timedelta(minutes=12))
    calm = collector.collect(at + timedelta(minutes=13))["pm2"]["processes"][0]
    assert calm["restarts_recent"] == 0 and calm["restart_loop"] is False


def test_version_change_is_reported_as_a_deploy() -> None:
    v1 = T45.read_text()
    v2 = v1.replace('"version":"1.0.0"', '"version":"1.1.0"')
    assert v2 != v1
    collector = Pm2Collector(ReplayRunner(v1, v2))
    collector.collect(CAPTURE_START)
    assert list(collector.deploys()) == []
    collector.collect(CAPTURE_START + timedelta(minutes=1))
    deploys = list(collector.deploys())
    assert {d.app for d in deploys} == {p["name"] for p in json.loads(v1)}
    assert {(d.version, d.previous_version, d.source) for d in deploys} == {
        ("1.1.0", "1.0.0", "pm2")
    }


def test_stopped_daemon_is_reported_and_not_started(
    tmp_path: Path, pm2_bin: str
) -> None:
    collector = Pm2Collector(SubprocessRunner(), pm2_bin=pm2_bin, pm2_home=tmp_path)
    with pytest.raises(CollectorError) as raised:
        collector.collect(datetime.now(UTC))
    assert "daemon is not running" in raised.value.message
    assert not (tmp_path / "pm2.pid").exists()


def real(pm2: Pm2, **options: Any) -> Pm2Collector:
    return Pm2Collector(
        SubprocessRunner(),
        pm2_bin=pm2.binary,
        pm2_home=pm2.home,
        timeout_s=20,
        **options,
    )


def process(facts: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in facts["pm2"]["processes"] if p["name"] == name)


def test_real_healthy_app_is_online_and_its_secret_is_not_kept(pm2: Pm2) -> None:
    secret = "tok-" + secrets.token_hex(16)
    pm2.start_app("collect-ok", "healthy.js", env={"COLLECT_API_TOKEN": secret})
    try:
        pm2.wait_for("collect-ok", "online")
        facts = real(pm2).collect(datetime.now(UTC))
        ok = process(facts, "collect-ok")
        assert ok["pid"] and ok["memory_mb"] and ok["uptime_s"] is not None
        assert ok["restart_loop"] is False
        dumped = json.dumps(facts)
        assert secret not in dumped and "COLLECT_API_TOKEN" not in dumped
        assert_valid(facts)
    finally:
        pm2.delete("collect-ok")


def test_real_crash_loop_is_a_restart_loop(pm2: Pm2) -> None:
    collector = real(pm2, restart_loop=3)
    pm2.start_app("collect-crash", "crash.js")
    try:
        first = process(collector.collect(datetime.now(UTC)), "collect-crash")
        later = eventually(
            lambda: process(collector.collect(datetime.now(UTC)), "collect-crash"),
            lambda p: (p["restarts_recent"] or 0) >= 3,
        )
        assert first["restarts_recent"] is None
        assert later["restarts_recent"] >= 3
        assert later["restart_loop"] is True
    finally:
        pm2.delete("collect-crash")


def test_real_backoff_is_waiting_restart_and_a_loop(pm2: Pm2) -> None:
    pm2.start_app(
        "collect-slow", "slowcrash.js", extra=["--exp-backoff-restart-delay", "2000"]
    )
    try:
        pm2.wait_for("collect-slow", "waiting restart", timeout=30)
        facts = real(pm2, restart_loop=100).collect(datetime.now(UTC))
        slow = process(facts, "collect-slow")
        assert slow["status"] == "waiting restart"
        assert slow["restart_loop"] is True
    finally:
        pm2.delete("collect-slow")


def test_real_memory_limit_is_reported(pm2: Pm2) -> None:
    pm2.start_app("collect-mem", "highmem.js", extra=["--max-memory-restart", "300M"])
    try:
        pm2.wait_for("collect-mem", "online")
        mem = process(real(pm2).collect(datetime.now(UTC)), "collect-mem")
        assert mem["memory_limit_mb"] == 300.0
        assert mem["memory_mb"] is not None and mem["memory_mb"] > 0
    finally:
        pm2.delete("collect-mem")
