"""The ``incident-policy`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from engine.errors import IncidentPolicyError
from engine.policy import checker, explain, ruletests
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.policy.policy import Compile
from engine.runtime import SystemClock

COMPILE: Compile = compile_policy
"""The backend ``rules`` commands compile the policy with: the service's."""

FORMATS = click.Choice(["text", "json"])
RULES_DIR = click.Path(file_okay=False, path_type=Path)


@click.group()
def main() -> None:
    """Rules-engine driven incident policy service."""


@main.group()
def rules() -> None:
    """Check, test and explain a rules directory."""


@rules.command("check")
@click.argument("directory", type=RULES_DIR, default=Path("rules"))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def check_command(directory: Path, fmt: str) -> None:
    """Validate every rule file in DIRECTORY; exit 1 on errors.

    Each problem prints as file:line:column: rule-id: code: message.
    Warnings alone exit 0.
    """
    report = checker.check(directory, compile=COMPILE)
    _emit(report.render(), report.as_dict(), fmt)
    sys.exit(report.exit_status)


@rules.command("test")
@click.argument("directory", type=RULES_DIR, default=Path("rules"))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="List passing cases too.")
def test_command(directory: Path, fmt: str, verbose: bool) -> None:
    """Run the rule tests in DIRECTORY/tests; exit 1 on a failure or error."""
    report = ruletests.run_tests(directory, compile=COMPILE)
    _emit(report.render(verbose=verbose), report.as_dict(), fmt)
    sys.exit(report.exit_status)


@rules.command("explain")
@click.argument("facts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(explain.STAGES), help="Only this stage.")
@click.option(
    "--rules",
    "directory",
    type=RULES_DIR,
    default=Path("rules"),
    show_default=True,
    help="The rules directory.",
)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def explain_command(facts: Path, stage: str | None, directory: Path, fmt: str) -> None:
    """Show why each rule did or did not fire for FACTS.

    FACTS is a facts document (JSON or YAML) or a scenario file. Every
    condition is shown with the value found at its path and its verdict, then
    the stage's outcome after conflict resolution.
    """
    try:
        document = explain.read_facts(facts)
        policy = COMPILE(load(directory))
    except IncidentPolicyError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    found = explain.explain(policy, document, now=SystemClock().now(), stage=stage)
    text = explain.render_text(found, color=fmt == "text" and sys.stdout.isatty())
    _emit(text, explain.as_dict(found), fmt)


def _emit(text: str, data: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(text)


def _register() -> None:
    from api.replay_command import replay_command

    main.add_command(replay_command)


_register()
