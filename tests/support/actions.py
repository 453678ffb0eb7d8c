"""Small builders for executor tests: catalog entries, requests, no waiting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.actions.base import ActionRequest, ActionSpec
from engine.actions.polling import Poll


def spec_for(
    executor: str,
    *,
    timeout_s: float = 30.0,
    settings: Mapping[str, Any] | None = None,
    name: str = "",
) -> ActionSpec:
    return ActionSpec(
        name=name or executor,
        executor=executor,
        timeout_s=timeout_s,
        settings=dict(settings or {}),
    )


def request_for(
    action: str, target: str, facts: Mapping[str, Any] | None = None
) -> ActionRequest:
    return ActionRequest(
        action=action, target=target, incident_id="inc_test", facts=dict(facts or {})
    )


def patient_poll() -> Poll:
    """Wait for real effects (new workers, new pids) up to 15 s."""
    return Poll(wait_s=15.0, interval_s=0.1)


def no_wait() -> Poll:
    """Look once: for verifications that must fail."""
    return Poll(wait_s=0.0, interval_s=0.1, sleep=lambda _: None)
