from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.facts.deploys import Deploy, DeployCollector, parse_deploy_line
from tests.engine.facts.conftest import assert_valid

NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def record(minutes_ago: float, version: str, **extra: str) -> str:
    at = (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    return json.dumps({"at": at, "app": "api", "version": version, **extra})


def test_most_recent_deploy_leads_with_minutes_since(tmp_path: Path) -> None:
    log = tmp_path / "deploys.log"
    log.write_text(
        record(90, "1.0.0")
        + "\n"
        + record(12, "1.1.0", previous_version="1.0.0", kind="config")
        + "\n"
    )
    facts = DeployCollector(log).collect(NOW)
    deploys = facts["deploys"]
    assert deploys["last_version"] == "1.1.0"
    assert deploys["previous_version"] == "1.0.0"
    assert deploys["last_kind"] == "config"
    assert deploys["last_minutes_ago"] == 12.0
    assert [d["version"] for d in deploys["recent"]] == ["1.1.0", "1.0.0"]
    assert deploys["recent"][0]["source"] == "deploy_log"
    assert_valid(facts)


def test_bad_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    log = tmp_path / "deploys.log"
    log.write_text(
        "not json\n"
        + '{"app": "api"}\n'
        + "[1, 2]\n"
        + '{"at": "yesterday"}\n'
        + record(5, "2.0.0")
        + "\n\n"
    )
    collector = DeployCollector(log)
    facts = collector.collect(NOW)
    assert collector.bad_lines == 4
    assert facts["deploys"]["last_version"] == "2.0.0"


def test_lines_appended_later_are_picked_up(tmp_path: Path) -> None:
    log = tmp_path / "deploys.log"
    log.write_text(record(30, "1.0.0") + "\n")
    collector = DeployCollector(log)
    collector.collect(NOW)
    with log.open("a") as handle:
        handle.write(record(1, "1.0.1") + "\n")
    assert collector.collect(NOW)["deploys"]["last_version"] == "1.0.1"


def test_no_deploy_log_means_no_known_deploy(tmp_path: Path) -> None:
    facts = DeployCollector(tmp_path / "none.log").collect(NOW)
    assert facts["deploys"]["available"] is True
    assert facts["deploys"]["last_minutes_ago"] is None
    assert facts["deploys"]["recent"] == []


def test_posted_and_pm2_deploys_merge_with_the_log(tmp_path: Path) -> None:
    log = tmp_path / "deploys.log"
    log.write_text(record(20, "1.0.0") + "\n")
    posted = Deploy(at=NOW - timedelta(minutes=3), app="web", version="7", source="api")
    collector = DeployCollector(log, sources=[lambda: [posted]])
    deploys = collector.collect(NOW)["deploys"]
    assert deploys["last_app"] == "web"
    assert [d["source"] for d in deploys["recent"]] == ["api", "deploy_log"]


def test_only_the_twenty_newest_are_listed(tmp_path: Path) -> None:
    log = tmp_path / "deploys.log"
    log.write_text("".join(record(m, f"v{m}") + "\n" for m in range(1, 40)))
    recent = DeployCollector(log).collect(NOW)["deploys"]["recent"]
    assert [d["version"] for d in recent] == [f"v{m}" for m in range(1, 21)]


def test_timestamp_without_zone_is_refused() -> None:
    assert parse_deploy_line(b'{"at": "2026-12-04T14:00:00", "app": "a"}') is None
