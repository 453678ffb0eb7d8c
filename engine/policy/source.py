"""Reading rule files with the line and column of every value.

Rule files are YAML or JSON. Both are read through PyYAML's composer, which
keeps each node's position, and turned into plain Python values plus a
``Positions`` map from a value's path (``("rules", 3, "when", "any", 0)``) to
its line and column. Errors found later (schema, semantics) look their
location up here, so every message can say ``classify.yaml:41:9``. Duplicate
keys, which YAML would silently collapse, are reported instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Location, PolicyError, Problem

PathKey = tuple[str | int, ...]
MAX_VALUES = 100_000


@dataclass(frozen=True)
class Positions:
    """Line and column (1-based) of each value in one file."""

    file: str
    marks: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict)

    def at(
        self, path: Sequence[str | int], rule_id: str = "", name: str = ""
    ) -> Location:
        """The location of ``path``, or of its nearest located ancestor."""
        key = tuple(path)
        while key and key not in self.marks:
            key = key[:-1]
        line, column = self.marks.get(key, (1, 1))
        return Location(self.file, line, column, rule_id, name)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    name: str  # as shown in messages: relative to the rules directory
    text: str
    data: Any
    positions: Positions


class _Builder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.marks: dict[PathKey, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.built = 0

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.built += 1
        if self.built > MAX_VALUES:
            # YAML aliases can expand a few hundred bytes into billions of
            # values; no policy needs this many.
            raise PolicyError(
                f"{self.name} expands to more than {MAX_VALUES} values (through "
                "YAML aliases?); write the rules out or split the file",
                code="E106",
                location=Location(self.name, 1, 1),
            )
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return yaml.SafeLoader(self.name).construct_object(node)

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key in result:
                mark = key_node.start_mark
                self.problems.append(
                    Problem(
                        "E102",
                        f"key {key!r} appears twice in one mapping; YAML would "
                        "keep only the last one: remove or rename one of them",
                        Location(self.name, mark.line + 1, mark.column + 1),
                    )
                )
            result[key] = self.build(value_node, (*path, key))
        return result

    def _key(self, node: yaml.Node) -> str:
        value = yaml.SafeLoader("").construct_object(node)
        return value if isinstance(value, str) else str(value)


def read(path: Path, name: str) -> SourceFile:
    """Parse one rule file; raise ``PolicyError`` (E101/E102) when unreadable."""
    if path.exists() and not path.is_file():
        # A FIFO or a device would block the reader, or never end.
        raise PolicyError(
            f"{name} is not a regular file; a rule file must be one",
            code="E101",
            location=Location(name),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            f"cannot read {name}: {exc}; check the file exists and is UTF-8",
            code="E101",
            location=Location(name),
        ) from exc
    return parse(text, name, path)


def parse(text: str, name: str, path: Path | None = None) -> SourceFile:
    builder = _Builder(name)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        return _parse_json_or_fail(text, name, path, exc)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise PolicyError(
            f"{name} holds a character YAML does not allow "
            f"({exc.character!r}, a control character or unpaired surrogate); "
            "remove it",
            code="E101",
            location=Location(name, line, column),
        ) from exc
    data = builder.build(root, ()) if root is not None else None
    if builder.problems:
        raise PolicyError(builder.problems[0].message, problems=builder.problems)
    return SourceFile(
        path or Path(name), name, text, data, Positions(name, builder.marks)
    )


def _parse_json_or_fail(
    text: str, name: str, path: Path | None, error: yaml.MarkedYAMLError
) -> SourceFile:
    # PyYAML reads YAML 1.1, which refuses a few valid JSON documents (tabs
    # used as whitespace); a .json file gets a second chance with json.
    if name.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(
                f"{name} is not valid JSON: {exc.msg}; fix the syntax at this place",
                code="E101",
                location=Location(name, exc.lineno, exc.colno),
            ) from exc
        return SourceFile(path or Path(name), name, text, data, Positions(name, {}))
    mark = error.problem_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    raise PolicyError(
        f"{name} is not valid YAML: {error.problem}; fix the syntax at this place "
        "(check indentation and quoting)",
        code="E101",
        location=Location(name, line, column),
    ) from error
