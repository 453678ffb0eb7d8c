"""Classify: which kind of incident this is, with the evidence.

The highest-priority matching rule of ``rules/classify.yaml`` gives the type
and confidence (ties: confidence, then file order); its facts are the
evidence; the other matches are kept for the reviewer. No match: ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.flow.outcomes import ClassifyOutcome
from engine.policy import resolve
from engine.policy.policy import Policy


def classify(policy: Policy, facts: Mapping[str, Any]) -> ClassifyOutcome:
    evaluation = policy.evaluate("classify", facts)
    found = resolve.classify(evaluation)
    return ClassifyOutcome(
        type=found.type,
        confidence=found.confidence,
        rule_id=found.rule_id,
        evidence=found.evidence,
        others=found.others,
        evaluation=evaluation,
    )


def as_facts(outcome: ClassifyOutcome) -> dict[str, Any]:
    return {
        "type": outcome.type,
        "confidence": outcome.confidence,
        "rule": outcome.rule_id,
    }
