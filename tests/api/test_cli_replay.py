"""`incident-policy replay` runs every recorded scenario through the flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from tests.support.fixtures import FIXTURES

SCENARIOS = sorted((FIXTURES / "scenarios").glob("case-s*.json"))
ROOT = Path(__file__).resolve().parents[2]
AVOIDED = {
    "pm2_restart": "pm2_restart",
    "nginx reload": "nginx_reload",
    "clear_temp": "clear_temp",
    "rate_limit": "rate_limit",
    "pausing": "pause_jobs",
}


def avoided_actions(document: dict) -> set[str]:
    found = set()
    for text in document["actions_to_avoid"]:
        for words, action in AVOIDED.items():
            if text.lower().startswith(words.lower()):
                found.add(action)
    return found


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_replay_of_each_scenario_as_json(path: Path) -> None:
    document = json.loads(path.read_text())

    result = CliRunner().invoke(
        main, ["replay", "--json", "--rules", str(ROOT / "rules"), str(path)]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["type"] == document["expected_type"]
    assert report["impact"]["level"] == document["expected_customer_impact"]
    assert 0 < report["confidence"] <= 1
    assert {"stable", "customer_impact"} <= set(report["decisions"])
    chosen = {a["name"] for a in report["actions"] if a["status"] != "refused"}
    assert chosen.isdisjoint(avoided_actions(document))
    assert all({"name", "target", "verdict"} <= set(a) for a in report["actions"])


def test_replay_prints_the_incident_as_a_reviewer_reads_it() -> None:
    path = FIXTURES / "scenarios" / "case-s06.json"

    result = CliRunner().invoke(
        main, ["replay", "--rules", str(ROOT / "rules"), str(path)]
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == "type: disk_pressure (95%) by disk-full"
    assert any(line.startswith("  - clear_temp temp: dry_run") for line in lines)
    assert any(line.startswith("brief: Disk pressure") for line in lines)
    assert "customer message draft (informational, status_page; draft" in result.output
    # Values as JSON spells them, never as Python prints them.
    assert "  stable: false (" in result.output
    assert not {"None", "True", "False"} & set(result.output.replace(",", " ").split())
    assert "decisions:" in lines


def test_replay_of_a_missing_file_fails_with_the_path() -> None:
    result = CliRunner().invoke(main, ["replay", "/nonexistent/facts.json"])

    assert result.exit_code == 2
    assert "/nonexistent/facts.json" in result.output
