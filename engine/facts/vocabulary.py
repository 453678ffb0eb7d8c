"""The facts vocabulary: which paths exist, what type each holds, validation.

``facts.schema.yaml`` is the one description of the facts document. This
module loads it once and answers two kinds of question: the checker asks
what a rule's path means (``snapshot.memory.percent`` is a number;
``alert.labels.team`` is free-form text; ``snapshot.pm2.processes`` is a list
whose items have ``memory_mb``), and intake asks whether a posted document
fits, with every problem named by its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from engine.errors import Location, Problem

FREE_FORM = "any"


@dataclass(frozen=True, slots=True)
class PathInfo:
    """What the schema says of one path."""

    types: frozenset[str]  # JSON types: number, integer, string, boolean, ...
    description: str = ""
    item: Mapping[str, Any] | None = None  # schema of list items

    @property
    def is_list(self) -> bool:
        return "array" in self.types

    @property
    def is_free_form(self) -> bool:
        return FREE_FORM in self.types

    def accepts(self, value: object) -> bool:
        """Could a fact at this path ever equal ``value``?"""
        if self.is_free_form:
            return True
        return _json_type(value) in self.types or (
            _json_type(value) == "integer" and "number" in self.types
        )


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


@cache
def schema() -> Mapping[str, Any]:
    text = resources.files("engine.facts").joinpath("facts.schema.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return merged


def _types(node: Mapping[str, Any]) -> frozenset[str]:
    if "enum" in node:
        return frozenset(_json_type(v) for v in node["enum"])
    declared = node.get("type")
    if declared is None:
        return frozenset({FREE_FORM})
    names = [declared] if isinstance(declared, str) else list(declared)
    return frozenset(names)


def lookup(path: str, root: Mapping[str, Any] | None = None) -> PathInfo | None:
    """The schema of ``path`` (dotted), or None when the vocabulary lacks it.

    Below a free-form map (``labels``, ``annotations``, ``extra``, ``target``,
    ``item``) every path is known and holds anything.
    """
    node: Mapping[str, Any] = _resolve(root or schema())
    for part in path.split("."):
        props = node.get("properties")
        if props is None:
            if node.get("type") == "object" and "additionalProperties" in node:
                node = _resolve(node["additionalProperties"])
                continue
            if node.get("type") == "object":
                return PathInfo(frozenset({FREE_FORM}))
            return None
        if part not in props:
            return None
        node = _resolve(props[part])
    item = node.get("items")
    return PathInfo(
        _types(node),
        str(node.get("description", "")),
        _resolve(item) if isinstance(item, Mapping) else None,
    )


def validate(document: Mapping[str, Any], *, file: str = "") -> list[Problem]:
    """Every place where ``document`` does not fit the vocabulary."""
    problems = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: e.path):
        where = ".".join(str(p) for p in error.absolute_path) or "(document)"
        problems.append(
            Problem(
                "E411",
                f"facts at {where}: {_said(error)}; see the facts "
                "vocabulary in docs/facts.md for the expected shape",
                Location(file=file, field=where),
            )
        )
    return problems


# The limits, said with their number; jsonschema's own words repeat the value.
_LIMITS = {
    "maxLength": "is longer than {} characters",
    "maxProperties": "has more than {} keys",
    "maxItems": "has more than {} items",
}
_SAID_CHARS = 240


def _said(error: Any) -> str:
    """What is wrong, in a sentence that stays short however big the value."""
    limit = _LIMITS.get(error.validator)
    if limit is not None:
        return limit.format(error.validator_value)
    message = str(error.message)
    if len(message) <= _SAID_CHARS:
        return message
    return message[:_SAID_CHARS] + "..."


def markdown() -> str:
    """The vocabulary as a Markdown table (``docs/facts.md`` is generated)."""
    rows = ["| path | type | meaning |", "|---|---|---|"]
    for path, info in _walk(schema(), ""):
        kinds = ", ".join(sorted(t for t in info.types if t != "null")) or "any"
        rows.append(f"| `{path}` | {kinds} | {info.description} |")
    return "\n".join(rows) + "\n"


def _walk(node: Mapping[str, Any], prefix: str) -> list[tuple[str, PathInfo]]:
    found: list[tuple[str, PathInfo]] = []
    for name, child in (node.get("properties") or {}).items():
        resolved = _resolve(child)
        path = f"{prefix}{name}"
        item = resolved.get("items")
        info = PathInfo(
            _types(resolved),
            " ".join(str(resolved.get("description", "")).split()),
            _resolve(item) if isinstance(item, Mapping) else None,
        )
        if "properties" in resolved:
            found.extend(_walk(resolved, f"{path}."))
        else:
            found.append((path, info))
        if info.item and "properties" in info.item:
            found.extend(_walk(info.item, f"{path}[]."))
    return found


HEADER = """# The facts vocabulary

Every rule condition reads a path of the facts document: the alert as intake
normalised it (`alert`), the host snapshot (`snapshot`, written by the
collectors in [collectors.md](collectors.md) or posted by an alert source),
the incident so far (`incident`), and what earlier stages decided
(`classification`, `stabilization`, `impact`, `recommendation`, `resolution`,
`review`, `org`). `rules check` refuses a path that is not listed here (code
E207), except below the free-form maps `alert.labels`, `alert.annotations`,
`snapshot.extra`, `target` and `item`. A value that could not be observed is
absent, never zero: write conditions that hold on missing values with `none:`
or `ne` (see [rules.md](rules.md)).

This page is generated from `engine/facts/facts.schema.yaml`
(`python -m engine.facts.vocabulary > docs/facts.md` rewrites the table).
Paths with `[]` are fields of list items (`any_item`, `all_items`,
`for_each`).

"""


def page() -> str:
    """``docs/facts.md`` as it should read."""
    return HEADER + markdown()


if __name__ == "__main__":
    print(page(), end="")
