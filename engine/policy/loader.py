"""Loading a rules directory: read, validate, parse, hash.

``load(directory)`` reads every rule file (``<stem>.yaml``, ``.yml`` or
``.json``), validates each against its JSON Schema, parses rules and the
action catalog into model objects, compiles the text templates, and computes
the policy version: a SHA-256 over the names and bytes of all files. The
result is a ``PolicySource``; the compiler turns it into an evaluable policy.
Every problem carries its file, line and column; errors make ``load`` raise
``PolicyError`` with all of them, warnings travel on the source.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Template
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.actions.base import ActionSpec
from engine.errors import Location, PolicyError, Problem, Severity
from engine.policy.model import Rule
from engine.policy.operators import GROUPS, OPERATORS
from engine.policy.parser import Parser, Thresholds
from engine.policy.schema import FILE_STEMS, schemas
from engine.policy.source import SourceFile, read
from engine.policy.templates import compile_template

SUFFIXES = (".yaml", ".yml", ".json")
RULE_SECTIONS = {
    "intake": (("rules", "intake"), ("watch", "watch")),
    "classify": (("rules", "classify"),),
    "stabilize": (("rules", "stabilize"),),
    "brief": (("rules", "brief"),),
    "impact": (("rules", "impact"),),
    "messages": (("rules", "messages"),),
    "recommend": (("rules", "recommend"),),
    "decisions": (("rules", "decisions"),),
    "learning": (("rules", "learning"),),
}
"""Which list of which file holds the rules of which stage."""

TEMPLATE_FIELDS = frozenset(
    {
        "title",
        "dedup_key",
        "name",
        "summary",
        "target",
        "recommendation",
        "risk",
        "text",
        "rationale",
        "reason",
        "body",
        "value",
    }
)


@dataclass(frozen=True)
class Catalog:
    mode: str = "dry_run"
    auto_execute: bool = False
    breaker_ineffective_runs: int = 3
    actions: Mapping[str, ActionSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicySource:
    directory: Path
    version: str
    files: Mapping[str, SourceFile]
    thresholds: Thresholds
    rules: Mapping[str, tuple[Rule, ...]]
    catalog: Catalog
    documents: Mapping[str, Any]  # raw document per stem, for defaults and maps
    templates: Mapping[str, Template]  # compiled, keyed by the template text
    warnings: tuple[Problem, ...] = ()

    @property
    def short_version(self) -> str:
        return self.version[:12]

    def all_rules(self) -> Iterable[Rule]:
        for rules in self.rules.values():
            yield from rules

    def template(self, text: str) -> Template:
        """The compiled template of ``text``; built-in texts compile on use."""
        found = self.templates.get(text)
        if found is None:
            found = compile_template(text, Location("<built-in>"))
        return found


def policy_version(files: Mapping[str, SourceFile]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(files[name].name.encode())
        digest.update(b"\0")
        digest.update(files[name].text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def find_files(directory: Path) -> tuple[dict[str, Path], list[Problem]]:
    """Rule files by stem; problems for unknown or ambiguous file names."""
    found: dict[str, Path] = {}
    problems: list[Problem] = []
    if not directory.is_dir():
        raise PolicyError(
            f"rules directory {directory} does not exist or is not a directory; "
            "pass the folder that holds classify.yaml and the other rule files",
            code="E103",
            location=Location(str(directory)),
        )
    for path in sorted(directory.iterdir()):
        if path.suffix not in SUFFIXES:
            continue
        if not path.is_file():
            problems.append(
                Problem(
                    "E101",
                    f"{path.name} is not a regular file; a rule file must be one",
                    Location(path.name),
                )
            )
        elif path.stem not in FILE_STEMS:
            problems.append(_unknown_file(path))
        elif path.stem in found:
            problems.append(
                Problem(
                    "E105",
                    f"both {found[path.stem].name} and {path.name} define "
                    f"{path.stem}; keep one of them",
                    Location(path.name),
                )
            )
        else:
            found[path.stem] = path
    if not found and not problems:
        raise PolicyError(
            f"rules directory {directory} holds no rule file (classify.yaml, "
            "actions.yaml, ...); pass the folder that holds them",
            code="E108",
            location=Location(str(directory)),
        )
    return found, problems


def copy_rules(directory: Path, target: Path) -> None:
    """Copy a rules directory to check a change to it, without its rule tests
    and without anything that is not a plain file (a FIFO would block)."""

    def skipped(folder: str, names: list[str]) -> set[str]:
        return {
            name
            for name in names
            if name == "tests"
            or not ((path := Path(folder, name)).is_file() or path.is_dir())
        }

    shutil.copytree(directory, target, ignore=skipped)


def _unknown_file(path: Path) -> Problem:
    close = difflib.get_close_matches(path.stem, FILE_STEMS, n=1)
    hint = f"; did you mean {close[0]}{path.suffix}?" if close else ""
    return Problem(
        "W104",
        f"{path.name} is not a rule file this service reads and is ignored"
        f"{hint} (known: {', '.join(FILE_STEMS)})",
        Location(path.name),
    )


def load(directory: Path) -> PolicySource:
    """Load and validate a rules directory; raise ``PolicyError`` on errors."""
    source, problems = read_directory(directory)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors or source is None:
        raise PolicyError(
            f"{len(errors)} error(s) in {directory}", problems=errors or problems
        )
    return source


def read_directory(
    directory: Path, *, partial: bool = False
) -> tuple[PolicySource | None, list[Problem]]:
    """Like ``load`` but returns the problems instead of raising.

    With ``partial``, files that fail their schema are left out and the others
    are still parsed (``rules check`` reports every file's problems in one
    run); such a source is for inspection, never for serving.
    """
    paths, problems = find_files(directory)
    files: dict[str, SourceFile] = {}
    for stem, path in paths.items():
        try:
            files[stem] = read(path, path.name)
        except PolicyError as exc:
            problems.extend(exc.problems)
    for stem in FILE_STEMS:
        if stem not in paths:
            problems.append(
                Problem(
                    "W103",
                    f"no {stem}.yaml in {directory}: the {stem} stage has no rules "
                    "and uses built-in defaults",
                    Location(f"{stem}.yaml"),
                )
            )
    valid = {}
    for stem, file in files.items():
        schema_problems = validate_file(stem, file)
        problems.extend(schema_problems)
        if not schema_problems:
            valid[stem] = file
    # Without valid thresholds every reference would be reported as unknown.
    thresholds_usable = "thresholds" in valid or "thresholds" not in files
    if len(valid) != len(files) and not (partial and thresholds_usable):
        return None, problems
    source = _build(directory, valid, problems)
    return source, problems


def validate_file(stem: str, file: SourceFile) -> list[Problem]:
    if not isinstance(file.data, dict):
        return [
            Problem(
                "E110",
                f"{file.name} must hold a mapping at the top level (for example "
                "`rules:`), not " + type(file.data).__name__,
                Location(file.name, 1, 1),
            )
        ]
    return validate_document(file, schemas()[stem])


def validate_document(file: SourceFile, schema: Mapping[str, Any]) -> list[Problem]:
    """Every place ``file`` breaks ``schema``, as located E11x/E202 problems."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(file.data), key=_error_order)
    return [_schema_problem(file, e) for e in _deepest(errors)]


def _error_order(error: ValidationError) -> tuple[int, ...]:
    return tuple(hash(str(p)) % 1000 for p in error.absolute_path)


def _deepest(errors: list[ValidationError]) -> list[ValidationError]:
    """For oneOf/anyOf failures keep the most specific sub-error."""
    result = []
    for error in errors:
        while error.context:
            error = max(error.context, key=lambda e: len(e.absolute_path))
        result.append(error)
    return result


def _rule_id(file: SourceFile, path: tuple[Any, ...]) -> str:
    """The id of the rule holding ``path``; a catalog entry goes by its name."""
    if len(path) > 1 and path[0] == "actions" and file.path.stem == "actions":
        return str(path[1])
    node: Any = file.data
    rule_id = ""
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(node.get("id"), str):
            rule_id = node["id"]
    return rule_id


def _schema_problem(file: SourceFile, error: ValidationError) -> Problem:
    path = tuple(error.absolute_path)
    rule_id = _rule_id(file, path)
    where = ".".join(str(p) for p in path) or "(top level)"
    if error.validator == "additionalProperties":
        name = _unknown_key(error)
        code, message = _unknown_field(error, where, name)
        # Point at the offending key's value, not at the mapping holding it.
        return Problem(code, message, file.positions.at((*path, name), rule_id, where))
    code, message = _explain(error, where)
    return Problem(code, message, file.positions.at(path, rule_id, where))


LIMIT_FIXES = {
    "minItems": "give at least one entry, or remove the key",
    "maxItems": "shorten the list",
    "minLength": "give a non-empty text",
    "maxLength": "shorten the text",
    "minProperties": "give at least one field, or remove the key",
    "maxProperties": "remove some fields",
    "minimum": "use a value within the limit",
    "maximum": "use a value within the limit",
    "exclusiveMinimum": "use a value within the limit",
    "uniqueItems": "remove the repeated entry",
    "dependentRequired": "add the missing field, or remove the one that needs it",
    "oneOf": "check the value's form against the rule reference (docs/rules.md)",
}


def _explain(error: ValidationError, where: str) -> tuple[str, str]:
    if error.validator == "type":
        return "E112", (
            f"{where}: {error.instance!r} has the wrong type, expected "
            f"{error.validator_value}; change the value"
        )
    if error.validator == "enum":
        allowed = [str(v) for v in _listed(error.validator_value)]
        close = difflib.get_close_matches(str(error.instance), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return "E113", (
            f"{where}: {error.instance!r} is not allowed{hint} "
            f"(allowed: {', '.join(allowed)})"
        )
    if error.validator == "required":
        return "E114", f"{where}: {error.message}; add it"
    if error.validator == "pattern":
        return "E115", (
            f"{where}: {error.instance!r} does not have the required form "
            f"({error.validator_value}); rename it to fit"
        )
    fix = LIMIT_FIXES.get(str(error.validator), "fix the value")
    return "E110", f"{where}: {error.message}; {fix}"


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _schema_of(error: ValidationError) -> Mapping[str, Any]:
    return error.schema if isinstance(error.schema, Mapping) else {}


def _unknown_key(error: ValidationError) -> str:
    """The first key the schema does not allow (fact paths are allowed)."""
    schema = _schema_of(error)
    allowed = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    keys = error.instance if isinstance(error.instance, dict) else {}
    extra = [
        key
        for key in keys
        if key not in allowed and not any(p.search(key) for p in patterns)
    ]
    return extra[0] if extra else "?"


def _unknown_field(error: ValidationError, where: str, name: str) -> tuple[str, str]:
    schema = _schema_of(error)
    allowed = list(schema.get("properties", {}))
    close = difflib.get_close_matches(name, allowed, n=1)
    fix = f"did you mean {close[0]!r}?" if close else "remove it or correct its name"
    if set(allowed) == set(OPERATORS):
        return "E202", (
            f"{where}: unknown operator {name!r}; {fix} "
            f"(operators: {', '.join(OPERATORS)})"
        )
    if "patternProperties" in schema and set(allowed) == set(GROUPS):
        return "E111", (
            f"{where}: {name!r} is neither a fact path nor a group: write fact "
            "paths in lowercase with dots (snapshot.memory.percent), or group "
            "conditions under all, any or none"
        )
    listed = ", ".join(allowed) if allowed else "none"
    return "E111", f"{where}: unknown field {name!r}; {fix} (allowed: {listed})"


def _build(
    directory: Path, files: Mapping[str, SourceFile], problems: list[Problem]
) -> PolicySource:
    documents = {stem: file.data for stem, file in files.items()}
    thresholds = Thresholds.from_document(documents.get("thresholds"))
    rules: dict[str, tuple[Rule, ...]] = {}
    for stem, sections in RULE_SECTIONS.items():
        for key, stage in sections:
            file = files.get(stem)
            items = (file.data.get(key) or []) if file else []
            if file is None:
                rules[stage] = ()
                continue
            parser = Parser(file.positions, thresholds)
            rules[stage] = tuple(parser.rules(stage, items, key))
            problems.extend(parser.problems)
    catalog, guards = _catalog(files.get("actions"), thresholds, problems)
    rules["guards"] = guards
    templates = _templates(files, problems)
    return PolicySource(
        directory=directory,
        version=policy_version(files),
        files=dict(files),
        thresholds=thresholds,
        rules=rules,
        catalog=catalog,
        documents=documents,
        templates=templates,
        warnings=tuple(p for p in problems if p.severity is Severity.WARNING),
    )


def _catalog(
    file: SourceFile | None, thresholds: Thresholds, problems: list[Problem]
) -> tuple[Catalog, tuple[Rule, ...]]:
    if file is None:
        return Catalog(), ()
    parser = Parser(file.positions, thresholds)
    specs: dict[str, ActionSpec] = {}
    guards: list[Rule] = []
    for name, entry in file.data.get("actions", {}).items():
        at = ("actions", name)
        conditions = {}
        for check in ("precondition", "verify"):
            if entry.get(check):
                condition = parser.condition(entry[check], (*at, check), name)
                conditions[check] = condition
                guards.append(
                    Rule(
                        id=f"{name}.{check}",
                        stage="guards",
                        when=condition,
                        then={"action": name, "check": check},
                        description=f"{check} of {name}",
                        order=len(guards),
                        location=file.positions.at((*at, check), name),
                    )
                )
        specs[name] = _spec(name, entry, conditions)
    problems.extend(parser.problems)
    data = file.data
    catalog = Catalog(
        mode=data.get("mode", "dry_run"),
        auto_execute=bool(data.get("auto_execute", False)),
        breaker_ineffective_runs=int(
            data.get("breaker", {}).get("ineffective_runs", 3)
        ),
        actions=specs,
    )
    return catalog, tuple(guards)


def _spec(
    name: str, entry: Mapping[str, Any], conditions: Mapping[str, Any]
) -> ActionSpec:
    return ActionSpec(
        name=name,
        executor=entry["executor"],
        description=entry.get("description", ""),
        targets=tuple(entry.get("targets", ())),
        timeout_s=float(entry.get("timeout_s", 30)),
        cooldown_s=float(entry.get("cooldown_s", 600)),
        budget_per_hour=int(entry.get("budget_per_hour", 3)),
        auto=bool(entry.get("auto", False)),
        mode=entry.get("mode", "auto"),
        risk=entry.get("risk", "medium"),
        precondition=conditions.get("precondition"),
        verify=conditions.get("verify"),
        undo=bool(entry.get("undo", False)),
        settings=dict(entry.get("settings", {})),
    )


def _templates(
    files: Mapping[str, SourceFile], problems: list[Problem]
) -> dict[str, Template]:
    compiled: dict[str, Template] = {}
    for file in files.values():
        for path, text in _template_strings(file.data, ()):
            if text in compiled:
                continue
            try:
                compiled[text] = compile_template(text, file.positions.at(path))
            except PolicyError as exc:
                problems.extend(exc.problems)
    return compiled


def _template_strings(
    node: Any, path: tuple[Any, ...]
) -> Iterable[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in TEMPLATE_FIELDS and isinstance(value, str):
                yield (*path, key), value
            elif key in {"prevention", "alert_improvements", "automation", "ux"}:
                for i, text in enumerate(value if isinstance(value, list) else []):
                    yield (*path, key, i), text
            else:
                yield from _template_strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _template_strings(value, (*path, index))
