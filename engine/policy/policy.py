"""The evaluable policy: a loaded rules directory bound to an evaluator.

``Policy`` is immutable and safe to share between threads. It answers
``evaluate(stage, facts)`` with every matching rule of that stage, in rule
order, and renders the policy's templates. How rules are matched is the
backend's business: ``PythonBackend`` walks conditions with the explaining
evaluator; the durable_rules backend (``engine.policy.compiler``) is what the
service runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.policy.loader import PolicySource, load
from engine.policy.model import Evaluation, Match, Rule
from engine.policy.templates import render, render_text
from engine.policy.verdicts import facts_used, holds


class Backend(Protocol):
    def matching(self, stage: str, facts: Mapping[str, Any]) -> list[Rule]:
        """Every rule of ``stage`` that matches, in any order."""


class PythonBackend:
    """Linear evaluation with the explaining evaluator."""

    def __init__(self, source: PolicySource) -> None:
        self._rules = source.rules

    def matching(self, stage: str, facts: Mapping[str, Any]) -> list[Rule]:
        return [rule for rule in self._rules.get(stage, ()) if holds(rule.when, facts)]


@dataclass(frozen=True)
class Policy:
    source: PolicySource
    backend: Backend

    @property
    def version(self) -> str:
        return self.source.version

    def evaluate(self, stage: str, facts: Mapping[str, Any]) -> Evaluation:
        rules = sorted(self.backend.matching(stage, facts), key=Rule.sort_key)
        matches = tuple(Match(rule, facts_used(rule.when, facts)) for rule in rules)
        return Evaluation(stage, self.version, matches, facts)

    def render(self, text: str, context: Mapping[str, Any]) -> str:
        """Render one of the policy's templates (compiled at load)."""
        return render(self.source.template(text), context)

    def render_text(self, text: str, context: Mapping[str, Any]) -> str:
        """Render a multi-paragraph template (message bodies)."""
        return render_text(self.source.template(text), context)


Compile = Callable[[PolicySource], Policy]
"""Turns a loaded source into an evaluable policy; raises ``PolicyError``."""


def compile_python(source: PolicySource) -> Policy:
    """The policy evaluated by the pure-Python backend."""
    return Policy(source, PythonBackend(source))


def python_policy(directory: Path) -> Policy:
    return compile_python(load(directory))
