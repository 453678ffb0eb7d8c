"""Policies written to temporary rule directories, compiled both ways."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.facts.scenario import scenario_facts
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.policy.policy import Policy, PythonBackend

FIXTURES = Path(__file__).parents[2] / "fixtures"
SHIPPED_RULES = Path(__file__).parents[3] / "rules"


@dataclass(frozen=True)
class Pair:
    """One policy compiled for durable_rules and for the Python evaluator."""

    durable: Policy
    python: Policy

    def matched(self, facts: Mapping[str, Any], stage: str = "classify") -> set[str]:
        found = set(self.durable.evaluate(stage, facts).rule_ids)
        reference = set(self.python.evaluate(stage, facts).rule_ids)
        assert found == reference, (facts, found, reference)
        return found


def classify_rule(rule_id: str, when: Any, priority: int = 0) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "priority": priority,
        "then": {"type": "memory_exhaustion", "confidence": 0.5},
    }
    if when is not None:
        rule["when"] = when
    return rule


def write_rules(
    directory: Path,
    rules: list[dict[str, Any]],
    thresholds: Mapping[str, Any] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"rules": rules}, allow_unicode=True, sort_keys=False)
    (directory / "classify.yaml").write_text(text, encoding="utf-8")
    if thresholds is not None:
        document = yaml.safe_dump({"thresholds": thresholds}, sort_keys=False)
        (directory / "thresholds.yaml").write_text(document, encoding="utf-8")
    return directory


def pair_from(directory: Path) -> Pair:
    source = load(directory)
    return Pair(compile_policy(source), Policy(source, PythonBackend(source)))


@pytest.fixture
def classify(tmp_path: Path) -> Callable[..., Pair]:
    """Compile classify rules given as (id, when) pairs or rule mappings."""
    counter = iter(range(1_000_000))

    def make(*rules: Any, thresholds: Mapping[str, Any] | None = None) -> Pair:
        listed = [
            rule if isinstance(rule, dict) else classify_rule(rule[0], rule[1])
            for rule in rules
        ]
        directory = tmp_path / f"rules{next(counter)}"
        return pair_from(write_rules(directory, listed, thresholds))

    return make


def scenarios() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((FIXTURES / "scenarios").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        found.append((path.stem, scenario_facts(document, name=path.name)))
    return found


@pytest.fixture(scope="session")
def shipped() -> Pair:
    return pair_from(SHIPPED_RULES)
