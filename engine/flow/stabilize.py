"""Stabilize, the deciding half: which safe actions the rules ask for.

Every matching rule of ``rules/stabilize.yaml`` contributes its actions; an
action with ``for_each`` fans out over a list of facts (one restart per leaking
PM2 process), its target rendered from the item. The union is de-duplicated
per (action, target), the higher-priority rule's entry kept. Whether each may
run is the guards' decision (``engine.flow.guards``); running them is the
runner's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.flow.outcomes import PlannedAction, StabilizePlan
from engine.policy import resolve
from engine.policy.policy import Policy


def plan(policy: Policy, facts: Mapping[str, Any]) -> StabilizePlan:
    evaluation = policy.evaluate("stabilize", facts)
    items = resolve.fan_out(
        evaluation.matches, "actions", facts, policy.render, ("target",)
    )
    kept = resolve.unique(
        [i for i in items if i.fields.get("target")],
        key=lambda i: (i.fields["action"], i.fields["target"]),
    )
    actions = tuple(
        PlannedAction(
            action=str(i.fields["action"]),
            target=str(i.fields["target"]),
            rule_id=i.rule_id,
            item=i.item,
        )
        for i in kept
    )
    return StabilizePlan(actions, evaluation)


def summary_facts(statuses: list[str], breaker_open: bool) -> dict[str, Any]:
    """The ``stabilization`` facts decision 1 reads."""
    return {
        "actions_planned": len(statuses),
        "actions_succeeded": statuses.count("succeeded"),
        "actions_refused": statuses.count("refused"),
        "actions_failed": statuses.count("failed"),
        "breaker_open": breaker_open,
    }
