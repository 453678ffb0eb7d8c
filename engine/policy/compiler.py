"""Compiling a policy into durable_rules rulesets, and evaluating with them.

``compile_policy(source)`` lowers every rule of every stage onto that
stage's slots (``lowering``, ``encoding``), refuses what the engine cannot
evaluate (``EngineLimitError``, codes E3xx, naming the rule and what to
change), packs each stage's rules into as few rulesets as the engine's
fixed arrays allow (``network``), and only then creates the rulesets
(``durable``). The result is a ``Policy`` whose ``DurableBackend`` answers
a stage with one engine assertion per ruleset. Ruleset memory is never
given back, so compiled backends are cached for the life of the process by
policy version: reloading an unchanged policy reuses its rulesets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import EngineLimitError, Problem
from engine.policy.durable import EngineRuleset
from engine.policy.encoding import Layout
from engine.policy.loader import PolicySource
from engine.policy.lowering import (
    FALSE,
    MAX_GROUPS,
    TRUE,
    All,
    AnyOf,
    Cmp,
    Each,
    Expr,
    Lowerer,
    count_groups,
    locate,
    to_json,
)
from engine.policy.model import Rule
from engine.policy.network import Network, alone
from engine.policy.policy import Policy

log = logging.getLogger(__name__)

MAX_SLOTS = 240  # of the 252 properties a fact may have, id and sid included

_cache: dict[str, DurableBackend] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Part:
    """One ruleset of a stage: the slots its fact needs, its rules by name."""

    ruleset: EngineRuleset
    slots: tuple[int, ...]
    rules: Mapping[str, int]  # engine rule name -> index in the stage
    stack: int


@dataclass(frozen=True)
class StagePlan:
    stage: str
    rules: tuple[Rule, ...]
    layout: Layout
    parts: tuple[Part, ...]
    always: tuple[int, ...]  # rules without a condition

    def matching(self, facts: Mapping[str, Any]) -> list[Rule]:
        members = self.layout.members(facts)
        found = set(self.always)
        for part in self.parts:
            body = ",".join(m for m in (members[i] for i in part.slots) if m)
            for name in part.ruleset.matches(body):
                found.add(part.rules[name])
        return [self.rules[index] for index in sorted(found)]


@dataclass(frozen=True)
class StageInfo:
    """What one stage became, for status pages and the benchmark."""

    rules: int
    rulesets: int
    slots: int
    stack: int  # the worst stack height of its rulesets


class DurableBackend:
    """Evaluates each stage with its durable_rules rulesets."""

    def __init__(self, version: str, plans: Mapping[str, StagePlan]) -> None:
        self.version = version
        self._plans = dict(plans)

    def matching(self, stage: str, facts: Mapping[str, Any]) -> list[Rule]:
        plan = self._plans.get(stage)
        return plan.matching(facts) if plan else []

    def describe(self) -> dict[str, StageInfo]:
        return {
            stage: StageInfo(
                rules=len(plan.rules),
                rulesets=len(plan.parts),
                slots=len(plan.layout.top.slots),
                stack=max((part.stack for part in plan.parts), default=0),
            )
            for stage, plan in self._plans.items()
        }

    def rulesets(self) -> list[EngineRuleset]:
        return [part.ruleset for plan in self._plans.values() for part in plan.parts]


def compile_policy(source: PolicySource) -> Policy:
    """The evaluable policy; compiled once per version, then reused."""
    with _cache_lock:
        backend = _cache.get(source.version)
        if backend is None:
            backend = compile_backend(source)
            _cache[source.version] = backend
    return Policy(source, backend)


def compiled_versions() -> int:
    """How many policy versions this process holds rulesets for."""
    with _cache_lock:
        return len(_cache)


def compile_backend(source: PolicySource) -> DurableBackend:
    started = time.monotonic()
    drafts, problems = {}, []
    for stage, rules in source.rules.items():
        draft = _Draft.of(stage, rules)
        problems.extend(draft.problems)
        drafts[stage] = draft
    if problems:
        raise EngineLimitError(
            f"{len(problems)} rule(s) cannot be evaluated by the rule engine",
            problems=problems,
        )
    plans = {
        stage: draft.build(source.short_version) for stage, draft in drafts.items()
    }
    backend = DurableBackend(source.version, plans)
    log.info(
        "policy.compiled",
        extra={
            "version": source.short_version,
            "rulesets": len(backend.rulesets()),
            "duration_s": round(time.monotonic() - started, 3),
        },
    )
    return backend


@dataclass
class _Draft:
    """One stage lowered and packed, before any engine ruleset exists."""

    stage: str
    rules: tuple[Rule, ...]
    layout: Layout
    chunks: list[list[tuple[int, Expr]]]
    always: list[int]
    problems: list[Problem]

    @classmethod
    def of(cls, stage: str, rules: Sequence[Rule]) -> _Draft:
        layout = Layout()
        lowerer = Lowerer(layout.top, layout.item_scope)
        draft = cls(stage, tuple(rules), layout, [], [], [])
        lowered = [
            (index, expr)
            for index, rule in enumerate(rules)
            if (expr := draft.lower(lowerer, index, rule)) is not None
        ]
        draft.check_items()
        draft.chunks = _pack(lowered, draft.slot_indexes)
        layout.freeze()
        return draft

    def lower(self, lowerer: Lowerer, index: int, rule: Rule) -> Expr | None:
        before = len(lowerer.problems)
        expr = lowerer.rule(rule.when)
        found = lowerer.problems[before:]
        found.extend(self.check_rule(rule, expr))
        if found:
            self.problems.extend(locate(found, rule.id, rule.location))
            return None
        if expr == TRUE:
            self.always.append(index)
        return None if expr in (TRUE, FALSE) else expr

    def check_rule(self, rule: Rule, expr: Expr) -> list[Problem]:
        if expr in (TRUE, FALSE):
            return []
        groups = count_groups(expr)
        if groups > MAX_GROUPS:
            return [_problem(rule, "E301", _too_many_groups(groups))]
        exceeded = alone(expr).exceeded()
        if exceeded:
            return [_problem(rule, "E302", _too_wide(exceeded))]
        slots = len(self.slot_indexes(expr))
        if slots > MAX_SLOTS:
            return [_problem(rule, "E303", _too_many_slots(slots))]
        return []

    def check_items(self) -> None:
        for path, scope in self.layout.items.items():
            if len(scope.slots) + 1 > MAX_SLOTS:
                self.problems.append(
                    Problem(
                        "E303",
                        f"the {self.stage} rules test {len(scope.slots)} values of "
                        f"each item of {path}; the engine reads at most "
                        f"{MAX_SLOTS - 1}: split the conditions over fewer fields",
                    )
                )

    def slot_indexes(self, expr: Expr) -> frozenset[int]:
        names = {slot.ref: slot.index for slot in self.layout.top.slots}
        return frozenset(names[ref] for ref in _refs(expr) if ref in names)

    def build(self, version: str) -> StagePlan:
        parts = tuple(
            self._part(f"{version}.{self.stage}.{number}", chunk)
            for number, chunk in enumerate(self.chunks)
        )
        return StagePlan(self.stage, self.rules, self.layout, parts, tuple(self.always))

    def _part(self, label: str, chunk: list[tuple[int, Expr]]) -> Part:
        names = {f"r{number}": index for number, (index, _) in enumerate(chunk)}
        exprs = [expr for _, expr in chunk]
        definition = ",".join(
            f'"r{number}":{{"all":[{{"m":{to_json(expr)}}}]}}'
            for number, expr in enumerate(exprs)
        )
        network = Network()
        for expr in exprs:
            network.add(expr)
        slots: frozenset[int] = frozenset().union(
            *(self.slot_indexes(e) for e in exprs)
        )
        ruleset = EngineRuleset("{" + definition + "}", label)
        return Part(ruleset, tuple(sorted(slots)), names, network.limits().stack)


def _refs(expr: Expr) -> set[str]:
    if isinstance(expr, Cmp):
        return {expr.ref}
    if isinstance(expr, All | AnyOf):
        return set().union(*(_refs(part) for part in expr.parts))
    if isinstance(expr, Each):
        return {expr.ref}
    return set()


def _pack(
    lowered: list[tuple[int, Expr]], slots_of: Callable[[Expr], frozenset[int]]
) -> list[list[tuple[int, Expr]]]:
    """Group rules into rulesets, each within the engine's limits."""
    ordered = sorted(lowered, key=lambda pair: to_json(pair[1]))
    chunks: list[list[tuple[int, Expr]]] = []
    chunk: list[tuple[int, Expr]] = []
    network, slots = Network(), frozenset[int]()
    for index, expr in ordered:
        wanted = slots | slots_of(expr)
        network.add(expr)
        if chunk and (len(wanted) > MAX_SLOTS or network.limits().exceeded()):
            chunks.append(chunk)
            chunk, network, wanted = [], Network(), slots_of(expr)
            network.add(expr)
        chunk.append((index, expr))
        slots = wanted
    if chunk:
        chunks.append(chunk)
    return chunks


def _problem(rule: Rule, code: str, message: str) -> Problem:
    return Problem(code, f"rule {rule.id}: {message}", rule.location)


def _too_many_groups(groups: int) -> str:
    return (
        f"its condition needs {groups} nested groups (all/any/none, in, not_in, "
        f"item conditions) and the engine evaluates at most {MAX_GROUPS} per "
        "rule: split it into several rules"
    )


def _too_wide(reason: str) -> str:
    return f"{reason}: split its `any` (or long `not_in` lists) into several rules"


def _too_many_slots(slots: int) -> str:
    return (
        f"it reads {slots} values and the engine reads at most {MAX_SLOTS} per "
        "fact: split it into several rules"
    )
