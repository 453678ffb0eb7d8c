"""``incident-policy replay``: one alert through the whole flow, as a drill."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from engine.errors import IncidentPolicyError
from engine.facts.scenario import is_scenario, scenario_facts
from engine.flow.drill import Report, replay
from engine.policy.explain import read_facts
from engine.policy.loader import load
from engine.runtime import Runtime, SequentialIds, SubprocessRunner, SystemClock
from engine.sources.alert import from_facts


@click.command("replay")
@click.argument("facts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--rules",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("rules"),
    show_default=True,
    help="The rules directory.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def replay_command(facts: Path, directory: Path, as_json: bool) -> None:
    """Run FACTS through every stage in dry-run against a temporary store.

    FACTS is a facts document (``alert`` plus ``snapshot``) or a scenario file
    (its ``signals`` are mapped to facts). Nothing on this host is touched:
    actions are guarded and recorded with the command they would run.
    """
    from api.cli import COMPILE

    try:
        document = read_facts(facts)
        mapped = (
            scenario_facts(document, name=facts.name)
            if is_scenario(document)
            else document
        )
        policy = COMPILE(load(directory))
        clock = SystemClock()
        runtime = Runtime(clock=clock, ids=SequentialIds(), commands=SubprocessRunner())
        alert = from_facts(
            mapped.get("alert") or {"kind": "manual", "name": facts.stem}
        )
        report = replay(policy, mapped, alert, runtime)
    except IncidentPolicyError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    if as_json:
        click.echo(
            json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str)
        )
    else:
        click.echo(render(report))


def render(report: Report) -> str:
    data = report.as_dict()
    lines = [
        f"{data['title']}  [{data['severity']}] -> {data['status']}",
        f"type: {data['type']} ({data['confidence']:.0%}) "
        f"by {data['classified_by'] or '-'}",
    ]
    lines += [
        f"  evidence: {k} = {'missing' if v is None else _plain(v)}"
        for k, v in data["evidence"].items()
    ]
    if data["other_matches"]:
        lines.append(f"  also matched: {', '.join(data['other_matches'])}")
    lines.append("actions:" if data["actions"] else "actions: none chosen")
    lines += [_action(a) for a in data["actions"]]
    lines += _brief(data["brief"])
    impact = data["impact"]
    lines.append(
        f"impact: {_plain(impact.get('level'))} "
        f"(customer-facing: {_plain(impact.get('customer_facing'))}, "
        f"features: {', '.join(impact.get('features', [])) or '-'}, "
        f"downtime ~{_plain(impact.get('downtime_minutes'))} min)"
    )
    lines += _message(data["message"])
    lines.append("recommendations:")
    lines += [
        f"  - [{r['risk']}] {r['text']}"
        + (f"  ({r['action']} {r['target']})" if r["action"] else "")
        for r in data["recommendations"]
    ]
    lines.append("decisions:")
    lines += [
        f"  {name}: {_plain(d['value'])} ({d['rule']})"
        for name, d in data["decisions"].items()
    ]
    return "\n".join(lines)


def _plain(value: Any) -> str:
    """A value as JSON spells it, and unknown for nothing."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _action(action: dict[str, Any]) -> str:
    command = " ".join(action["command"][0]) if action["command"] else ""
    why = f" - {action['reason']}" if action["reason"] else ""
    return (
        f"  - {action['name']} {action['target']}: {action['status']} "
        f"({action['verdict']}, rule {action['rule']}){why}"
        + (f"\n      would run: {command}" if command else "")
    )


def _brief(brief: dict[str, Any] | None) -> list[str]:
    if not brief:
        return ["brief: none"]
    return [
        f"brief: {brief['summary']}",
        f"  window: {brief['window_minutes']} min; state: {brief['current_state']}",
        f"  recommendation: {brief['recommendation']}",
        f"  risk if nothing is done: {brief['risk']}",
    ]


def _message(message: dict[str, Any] | None) -> list[str]:
    if message is None:
        return ["customer message: none needed"]
    return [
        f"customer message draft ({message['tone']}, {', '.join(message['channels'])}; "
        f"{message['status']}, never sent by this service):",
        f"  {message['title']}",
        *(f"  {line}" for line in message["body"].splitlines()),
    ]
