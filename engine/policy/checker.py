"""``rules check``: every problem of a rules directory, located, in one run.

``check(directory)`` reads the directory as the service would (syntax, JSON
Schema, threshold references, templates: ``loader.read_directory``), then
checks what a schema cannot see: duplicate rule ids (E201), values of the
wrong type for their fact path (E204), invalid regular expressions (E205),
actions missing from the catalog (E206), unknown fact paths (E207), rules
that can never match (E208), rules shadowed by a higher-ranked rule with the
same outcome (W209), catalog entries naming an unknown executor (E211),
message rules naming an undefined template (E212) and static targets the
guards would refuse (W214). Last, it compiles the policy with the backend
the service runs, so engine limits and regular expressions the engine cannot
express are reported too. Every problem carries file, line, column, rule id
and a sentence saying how to fix it; errors give exit status 1, warnings 0.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from engine.actions.base import EXECUTORS
from engine.errors import Location, PolicyError, Problem, Severity
from engine.facts import vocabulary
from engine.facts.vocabulary import PathInfo
from engine.policy import logic
from engine.policy.loader import (
    RULE_SECTIONS,
    SUFFIXES,
    PolicySource,
    find_files,
    read_directory,
)
from engine.policy.model import Condition, Group, Rule, Test
from engine.policy.operators import ITEM_OPERATORS, OPERATORS, ORDERING, Operand
from engine.policy.policy import Compile, compile_python
from engine.policy.source import PathKey

log = logging.getLogger(__name__)

SECTIONS: Mapping[str, tuple[str, str]] = {
    stage: (stem, key)
    for stem, sections in RULE_SECTIONS.items()
    for key, stage in sections
}
"""Where each stage's rules live: (file stem, list key)."""

STAGE_CONTEXT: Mapping[str, Mapping[str, Any]] = {
    "brief": {
        "type_label": {"type": "string"},
        "evidence": {"type": "string"},
        "stable": {"type": "boolean"},
        "window_minutes": {"type": "number"},
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    name: {"type": "string"}
                    for name in ("action", "target", "status", "effect")
                },
            },
        },
    },
    "learning": {"type_label": {"type": "string"}, "thresholds": {"type": "object"}},
}
"""Values a stage adds to the facts before its rules run (see engine.flow)."""

FACTS_SCHEMA = "engine/facts/facts.schema.yaml"


@dataclass(frozen=True)
class CheckReport:
    """The outcome of ``rules check``: problems sorted by file and line."""

    directory: Path
    problems: tuple[Problem, ...]
    files: int = 0
    rules: int = 0

    @property
    def errors(self) -> int:
        return sum(p.severity is Severity.ERROR for p in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    @property
    def exit_status(self) -> int:
        return 1 if self.errors else 0

    def summary(self) -> str:
        return (
            f"{_count(self.errors, 'error')}, {_count(self.warnings, 'warning')} "
            f"in {_count(self.files, 'file')} ({_count(self.rules, 'rule')})"
        )

    def render(self) -> str:
        return "\n".join([*(p.render() for p in self.problems), self.summary()])

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "errors": self.errors,
            "warnings": self.warnings,
            "files": self.files,
            "rules": self.rules,
            "problems": [p.as_dict() for p in self.problems],
        }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def check(directory: Path, *, compile: Compile = compile_python) -> CheckReport:
    """Every problem of the rules in ``directory``; never raises for bad rules."""
    try:
        source, problems = read_directory(directory, partial=True)
    except PolicyError as exc:
        return CheckReport(directory, _sorted(directory, exc.problems))
    if source is None:
        return CheckReport(directory, _sorted(directory, problems))
    loaded_cleanly = not any(p.severity is Severity.ERROR for p in problems)
    catalog_loaded = "actions" in source.files or not _present(directory, "actions")
    problems.extend(semantic_problems(source, catalog_loaded=catalog_loaded))
    if loaded_cleanly:
        problems.extend(_compile_problems(source, compile))
    report = CheckReport(
        directory,
        _sorted(directory, problems),
        # Every rule file found, those refused by their schema included.
        files=len(find_files(directory)[0]),
        rules=sum(len(rules) for rules in source.rules.values()),
    )
    log.info(
        "policy.checked",
        extra={
            "directory": str(directory),
            "errors": report.errors,
            "warnings": report.warnings,
        },
    )
    return report


def _present(directory: Path, stem: str) -> bool:
    return any((directory / f"{stem}{suffix}").is_file() for suffix in SUFFIXES)


def _compile_problems(source: PolicySource, compile: Compile) -> list[Problem]:
    try:
        compile(source)
    except PolicyError as exc:
        return list(exc.problems)
    return []


def _sorted(directory: Path, problems: Iterable[Problem]) -> tuple[Problem, ...]:
    """Unique problems, files shown under ``directory``, in file and line order."""
    unique: dict[tuple[str, str, int, int], Problem] = {}
    for problem in problems:
        loc = problem.location
        unique.setdefault((problem.code, loc.file, loc.line, loc.column), problem)
    shown = (_under(directory, p) for p in unique.values())
    return tuple(
        sorted(
            shown,
            key=lambda p: (p.location.file, p.location.line, p.location.column, p.code),
        )
    )


def _under(directory: Path, problem: Problem) -> Problem:
    file = problem.location.file
    if not file or file == str(directory) or Path(file).is_absolute():
        return problem
    return replace(
        problem, location=replace(problem.location, file=str(directory / file))
    )


def semantic_problems(
    source: PolicySource, *, catalog_loaded: bool = True
) -> list[Problem]:
    """The checks a JSON Schema cannot express, on a parsed source.

    Without ``catalog_loaded`` (actions.yaml exists but did not load), actions
    are not checked against the catalog: each would be reported as unknown.
    """
    found = [
        *_duplicate_ids(source),
        *_catalog_problems(source),
        *_feature_problems(source),
        *_shadowed_rules(source),
    ]
    for rule in source.all_rules():
        found.extend(RuleChecker(source, rule, catalog_loaded).problems())
    return found


def _duplicate_ids(source: PolicySource) -> Iterator[Problem]:
    for stage, (stem, key) in SECTIONS.items():
        file = source.files.get(stem)
        if file is None:
            continue
        first_line: dict[str, int] = {}
        for index, item in enumerate(file.data.get(key) or []):
            rule_id = str(item.get("id", ""))
            location = file.positions.at((key, index, "id"), rule_id, "id")
            if rule_id not in first_line:
                first_line[rule_id] = location.line
                continue
            yield Problem(
                "E201",
                f"rule id {rule_id!r} is already used by the {stage} rule at line "
                f"{first_line[rule_id]}; give each rule its own id (matches, "
                "tests and the audit refer to rules by id)",
                location,
            )


def _catalog_problems(source: PolicySource) -> Iterator[Problem]:
    file = source.files.get("actions")
    if file is None:
        return
    for name, spec in source.catalog.actions.items():
        if spec.executor in EXECUTORS:
            continue
        fix = suggest(spec.executor, EXECUTORS, "use one of the executors")
        yield Problem(
            "E211",
            f"action {name!r} names executor {spec.executor!r}, which this service "
            f"does not have; {fix}",
            file.positions.at(("actions", name, "executor"), name, "executor"),
        )


def _feature_problems(source: PolicySource) -> Iterator[Problem]:
    """Routes starting with ``~`` are regular expressions on the request path."""
    file = source.files.get("features")
    if file is None:
        return
    for index, feature in enumerate(file.data.get("features") or []):
        for number, route in enumerate(feature.get("routes") or []):
            if not (isinstance(route, str) and route.startswith("~")):
                continue
            at = ("features", index, "routes", number)
            location = file.positions.at(at, str(feature.get("name", "")), "routes")
            problem = regex_problem(route[1:], location)
            if problem:
                yield problem


def regex_problem(pattern: str, location: Location) -> Problem | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return Problem(
            "E205",
            f"invalid regular expression {pattern!r}: {exc.msg} at position "
            f"{exc.pos}; fix the pattern (Python syntax, matched against the "
            "whole value)",
            location,
        )
    return None


def _shadowed_rules(source: PolicySource) -> Iterator[Problem]:
    for stage, rules in source.rules.items():
        if stage == "guards":
            continue
        ranked = sorted(rules, key=Rule.sort_key)
        for position, rule in enumerate(ranked):
            cover = _covering_rule(rule, ranked[:position])
            if cover is None:
                continue
            yield Problem(
                "W209",
                f"this rule never changes the outcome: {cover.id!r} (line "
                f"{cover.location.line}, priority {cover.priority}) ranks above "
                "it, has the same `then` and matches whenever this rule "
                "does; remove this rule, or change its `then` or priority",
                rule.location,
            )


def _covering_rule(rule: Rule, above: list[Rule]) -> Rule | None:
    for other in above:
        if other.then == rule.then and logic.implies(rule.when, other.when):
            return other
    return None


class RuleChecker:
    """The checks of one rule: its conditions, ``then`` and selectors."""

    def __init__(
        self, source: PolicySource, rule: Rule, catalog_loaded: bool = True
    ) -> None:
        self.source = source
        self.rule = rule
        self.catalog_loaded = catalog_loaded
        self.found: list[Problem] = []

    def problems(self) -> list[Problem]:
        self.condition(self.rule.when, None, "")
        self.patterns(self.rule.when)
        if not _unresolved(self.rule.when):
            self.contradiction(self.rule.when, "rule can never match")
        self.then()
        return self.found

    def patterns(self, condition: Condition) -> None:
        for node in condition.walk():
            if isinstance(node, Test) and node.op == "matches":
                problem = regex_problem(str(node.operand), node.location)
                if problem:
                    self.found.append(problem)

    def add(self, code: str, message: str, location: Location) -> None:
        self.found.append(Problem(code, message, location))

    def condition(
        self, condition: Condition, items: PathInfo | None, prefix: str
    ) -> None:
        """Check every leaf; ``items`` is the list whose items paths are under."""
        if isinstance(condition, Group):
            for child in condition.children:
                self.condition(child, items, prefix)
            return
        info = self.path_info(condition, items, prefix)
        if info is not None:
            TypeCheck(self, condition, info, prefix).run()

    def path_info(
        self, test: Test, items: PathInfo | None, prefix: str
    ) -> PathInfo | None:
        root = items.item if items is not None else None
        if items is not None and (items.is_free_form or root is None):
            return None  # items of undeclared shape: anything goes
        info = lookup(test.path, self.rule.stage, root)
        if info is None:
            self.add(
                "E207",
                unknown_path(test.path, self.rule.stage, root, prefix),
                test.location,
            )
        return info

    def contradiction(self, condition: Condition, lead: str) -> None:
        found = logic.contradiction(condition)
        if found is None:
            return
        location = found.test.location if found.test else self.rule.location
        self.add(
            "E208",
            f"{lead}: {found.reason}; fix the bounds or values, or use `any:` "
            "when either should do",
            location,
        )

    def then(self) -> None:
        stage = self.rule.stage
        if stage in ("stabilize", "recommend"):
            key = "actions" if stage == "stabilize" else "recommendations"
            for index, entry in enumerate(self.rule.then.get(key) or []):
                self.entry(entry, (key, index))
        if stage == "messages":
            self.template()

    def then_location(self, *path: str | int) -> Location:
        stem, key = SECTIONS[self.rule.stage]
        file = self.source.files[stem]
        at: PathKey = (key, self.rule.order, "then", *path)
        return file.positions.at(at, self.rule.id, ".".join(map(str, path)))

    def entry(self, entry: Mapping[str, Any], at: tuple[str, int]) -> None:
        action = entry.get("action")
        if isinstance(action, str) and self.catalog_loaded:
            self.action(action, str(entry.get("target", "")), at)
        if "for_each" in entry:
            self.selector(str(entry["for_each"]), entry.get("where"), at)

    def action(self, name: str, target: str, at: tuple[str, int]) -> None:
        spec = self.source.catalog.actions.get(name)
        if spec is None:
            fix = suggest(
                name, self.source.catalog.actions, "add it to actions.yaml or use"
            )
            self.add(
                "E206",
                f"action {name!r} is not in the catalog (actions.yaml); {fix}",
                self.then_location(*at, "action"),
            )
            return
        if (
            target
            and "{" not in target
            and spec.targets
            and not any(fnmatchcase(target, glob) for glob in spec.targets)
        ):
            self.add(
                "W214",
                f"target {target!r} is not among the allowed targets of {name} "
                f"({', '.join(spec.targets)}): the guards will refuse it; fix the "
                "target or add it to `targets` in actions.yaml",
                self.then_location(*at, "target"),
            )

    def selector(self, path: str, where: Any, at: tuple[str, int]) -> None:
        location = self.then_location(*at, "for_each")
        info = lookup(path, self.rule.stage, None)
        if info is None:
            self.add("E207", unknown_path(path, self.rule.stage, None, ""), location)
            return
        if not (info.is_list or info.is_free_form):
            self.add(
                "E204",
                f"for_each: {path} holds {kind_of(info)}, not a list; name a list "
                "of facts such as snapshot.pm2.processes",
                location,
            )
            return
        if isinstance(where, Group | Test):
            self.condition(where, info, f"{path}[].")
            self.patterns(where)
            if not _unresolved(where):
                self.contradiction(where, "this `where` never selects an item")

    def template(self) -> None:
        name = self.rule.then.get("template")
        document = self.source.documents.get("messages") or {}
        templates = list(document.get("templates") or {})
        if not isinstance(name, str) or name in templates:
            return
        fix = suggest(name, templates, "define it there or use")
        self.add(
            "E212",
            f"template {name!r} is not defined under `templates:` in "
            f"messages.yaml; {fix}",
            self.then_location("template"),
        )


class TypeCheck:
    """Does one leaf's operator and operand fit its path's declared type?"""

    def __init__(
        self, owner: RuleChecker, test: Test, info: PathInfo, prefix: str
    ) -> None:
        self.owner = owner
        self.test = test
        self.info = info
        self.where = prefix + test.path

    def run(self) -> None:
        if self.info.is_free_form:
            return
        op = self.test.op
        if op in ORDERING:
            self.ordering()
        elif op in ITEM_OPERATORS:
            self.items()
        elif op == "matches":
            self.require({"string"}, "`matches` only holds on text")
        elif op == "contains":
            self.contains()
        elif OPERATORS[op].operand in (Operand.SCALAR, Operand.SCALARS):
            self.values()

    def fail(self, message: str) -> None:
        self.owner.add("E204", f"{self.where}: {message}", self.test.location)

    def require(self, kinds: set[str], why: str) -> bool:
        if self.info.types & kinds:
            return True
        self.fail(
            f"holds {kind_of(self.info)}; {why}, so this never holds: "
            "use an operator that fits the fact, or another path"
        )
        return False

    def ordering(self) -> None:
        if not self.require(
            {"number", "integer"}, f"`{self.test.op}` only holds on numbers"
        ):
            return
        operand = self.test.operand
        if self.test.reference and operand is not None and not _is_number(operand):
            self.fail(
                f"{self.test.reference} is {operand!r} in thresholds.yaml, not a "
                f"number, so `{self.test.op}` never holds; make the threshold a number"
            )

    def items(self) -> None:
        if self.info.is_list:
            self.owner.condition(self.test.operand, self.info, f"{self.where}[].")
            return
        self.fail(
            f"holds {kind_of(self.info)}, not a list; `{self.test.op}` "
            "needs a list of objects: use the path of a list"
        )

    def contains(self) -> None:
        if not self.require({"array", "string"}, "`contains` needs a list or text"):
            return
        if self.info.is_list:
            item_types = PathInfo(vocabulary_types(self.info.item))
            if not item_types.accepts(self.test.operand):
                self.fail(
                    f"items are {kind_of(item_types)}; `contains "
                    f"{self.test.operand!r}` never holds: {fix_for(item_types)}"
                )

    def values(self) -> None:
        operand = self.test.operand
        listed = operand if isinstance(operand, tuple) else (operand,)
        for value in listed:
            if value is not None and not self.info.accepts(value):
                self.fail(self.mismatch(value))
                return

    def mismatch(self, value: object) -> str:
        if self.info.is_list:
            return (
                f"holds a list; `{self.test.op}` compares it with {value!r} and "
                "never holds: use `contains` to look for an item"
            )
        source = f" ({self.test.reference})" if self.test.reference else ""
        return (
            f"holds {kind_of(self.info)}, and {value!r}{source} is "
            f"{kind_of(PathInfo(frozenset({_json_kind(value)})))}: values of "
            f"different types are never equal; {fix_for(self.info, value)}"
        )


def lookup(path: str, stage: str, root: Mapping[str, Any] | None) -> PathInfo | None:
    """The declared type of ``path`` in ``stage`` (or under list items ``root``)."""
    if root is not None:
        return vocabulary.lookup(path, root)
    extra = STAGE_CONTEXT.get(stage)
    if extra:
        found = vocabulary.lookup(path, {"type": "object", "properties": extra})
        if found is not None:
            return found
    return vocabulary.lookup(path)


def unknown_path(
    path: str, stage: str, root: Mapping[str, Any] | None, prefix: str
) -> str:
    known = (
        list(known_paths(root))
        if root is not None
        else [
            *known_paths(None),
            *(name for name in STAGE_CONTEXT.get(stage, {})),
        ]
    )
    if root is not None:
        if not known:
            return (
                f"{prefix}{path}: the items of this list are not objects and have "
                "no fields; test the list with `contains` instead"
            )
        fix = suggest(path, known, "use")
        return f"{prefix}{path}: the items of this list have no field {path!r}; {fix}"
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.7)
    if close:
        return (
            f"{path}: unknown fact path; did you mean {close[0]}? (the vocabulary "
            f"is {FACTS_SCHEMA})"
        )
    return f"{path}: unknown fact path; use a path declared in {FACTS_SCHEMA}"


def suggest(name: str, known: Iterable[str], otherwise: str) -> str:
    """``did you mean 'x'? (known: ...)``, else ``otherwise one of: ...``."""
    choices = list(known)
    listed = ", ".join(choices) or "none defined"
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"did you mean {close[0]!r}? (known: {listed})"
    return f"{otherwise} one of: {listed}"


def known_paths(root: Mapping[str, Any] | None) -> Iterator[str]:
    """Every declared path of the facts vocabulary (or of one item schema)."""
    top = vocabulary.schema()
    yield from _walk(_deref(root if root is not None else top, top), "", top)


def _walk(
    node: Mapping[str, Any], prefix: str, top: Mapping[str, Any]
) -> Iterator[str]:
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        resolved = _deref(child, top)
        if "properties" in resolved:
            yield from _walk(resolved, f"{path}.", top)
        else:
            yield path


def _deref(node: Mapping[str, Any], top: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    target: Any = top
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def vocabulary_types(item: Mapping[str, Any] | None) -> frozenset[str]:
    if item is None or "type" not in item:
        return frozenset({vocabulary.FREE_FORM})
    declared = item["type"]
    return frozenset([declared] if isinstance(declared, str) else declared)


KIND_NAMES = {
    "number": "a number",
    "integer": "a whole number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


def kind_of(info: PathInfo) -> str:
    names = [KIND_NAMES[t] for t in sorted(info.types) if t in KIND_NAMES]
    if "a number" in names and "a whole number" in names:
        names.remove("a whole number")
    return " or ".join(names) or "nothing a rule can compare"


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fix_for(info: PathInfo, value: object = None) -> str:
    if isinstance(value, str) and info.types & {"number", "integer"}:
        try:
            return f"write the number without quotes ({float(value):g})"
        except ValueError:
            pass
    if (
        isinstance(value, str)
        and "boolean" in info.types
        and value in ("true", "false")
    ):
        return f"write {value} without quotes"
    return f"compare with {kind_of(info)}"


def _unresolved(condition: Condition) -> bool:
    """An operand left unresolved by an unknown threshold (E203 says so)."""
    for node in condition.walk():
        if (
            isinstance(node, Test)
            and node.reference
            and (
                node.operand is None
                or (isinstance(node.operand, tuple) and None in node.operand)
            )
        ):
            return True
    return False
