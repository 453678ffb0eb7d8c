"""The customer status message draft (never sent by this service).

When decision 2 says customers are likely affected, the highest-priority
matching rule of ``messages.yaml`` picks a template, a tone and channels. The
template is rendered in the sandbox with customer-safe values only (the
problem in plain words, affected customer-facing features, times and the
estimate), never with the facts, so internal host names, addresses, stack
traces and the raw alert cannot reach it. The result is scrubbed once more as
a second line of defence. The draft is stored as requiring approval; there is
no code path that sends it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.flow.outcomes import (
    CUSTOMER_PROBLEMS,
    ClassifyOutcome,
    Impact,
    MessageDraft,
)
from engine.policy.policy import Policy

REDACTED = "[removed]"
LEAKS = (
    re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"),  # IPv4[:port]
    re.compile(r"\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b", re.I),  # IPv6
    re.compile(
        r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:internal|local|lan|corp|svc|cluster)\b",
        re.I,
    ),
    re.compile(r"\b[a-z0-9-]+\.[a-z0-9-]+\.[a-z]{2,}\b", re.I),  # fully qualified names
    re.compile(r"(?:/[\w.-]+){2,}(?::\d+)*"),  # file paths, stack frames
    re.compile(r"\bat [\w.<>$]+ \(.*?\)"),  # JavaScript stack frames
    re.compile(r"Traceback \(most recent call last\).*", re.S),
    re.compile(r"\b\w*(?:Error|Exception): .*"),
    # Node's system error codes name the host's plumbing.
    re.compile(
        r"\bE(?:CONN\w+|TIMEDOUT|AI_AGAIN|NOTFOUND|NOSPC|NOENT|PIPE|ADDRINUSE|HOSTUNREACH|NETUNREACH)\b.*"
    ),
)


def scrub(text: str) -> str:
    """Remove anything that looks like an address, host, path or trace."""
    for pattern in LEAKS:
        text = pattern.sub(REDACTED, text)
    return text


def safe_context(
    classification: ClassifyOutcome,
    impact: Impact,
    started_at: datetime,
    *,
    stable: bool,
    org: str,
) -> dict[str, Any]:
    status = (
        "monitoring a fix"
        if stable
        else (
            "investigating" if classification.type == "unknown" else "working on a fix"
        )
    )
    return {
        "problem": CUSTOMER_PROBLEMS.get(
            classification.type, CUSTOMER_PROBLEMS["unknown"]
        ),
        "features": list(impact.features),
        "level": impact.level,
        "started_at": started_at.strftime("%H:%M UTC"),
        "estimate": f"about {round(impact.downtime_minutes)} min",
        "status": status,
        "org": org,
    }


def draft(
    policy: Policy,
    facts: Mapping[str, Any],
    classification: ClassifyOutcome,
    impact: Impact,
    started_at: datetime,
    *,
    stable: bool,
    org: str,
) -> MessageDraft | None:
    evaluation = policy.evaluate("messages", facts)
    if not evaluation.matches:
        return None
    match = evaluation.matches[0]
    name = str(match.then["template"])
    template = policy.source.documents.get("messages", {}).get("templates", {})[name]
    context = safe_context(classification, impact, started_at, stable=stable, org=org)
    return MessageDraft(
        title=scrub(policy.render(template["title"], context)),
        body=scrub(policy.render_text(template["body"], context)),
        tone=str(match.then["tone"]),
        channels=tuple(match.then["channels"]),
        approvals_required=int(match.then.get("approvals", 1)),
        template=name,
        rule_id=match.rule.id,
        evaluation=evaluation,
    )
