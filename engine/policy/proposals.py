"""Threshold change proposals: a diff of ``thresholds.yaml``, applied on approval.

The learning loop proposes new values for named thresholds. A proposal is a
text edit of the one line that holds the value (comments and layout kept),
shown as a unified diff. Applying it re-checks that the file still holds the
text the proposal was made from, validates the whole rules directory with the
new file in a scratch copy, and only then replaces the file atomically. The
caller reloads the policy and records the event.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConflictError, Location, PolicyError, Problem, Severity
from engine.policy.loader import SUFFIXES, copy_rules, read_directory
from engine.policy.source import read

_SCALAR_END = re.compile(r"[\s,}\]#]")


@dataclass(frozen=True)
class Edit:
    file: Path
    threshold: str
    old_value: object
    new_value: object
    old_text: str
    new_text: str

    @property
    def diff(self) -> str:
        lines = difflib.unified_diff(
            self.old_text.splitlines(keepends=True),
            self.new_text.splitlines(keepends=True),
            fromfile=f"a/{self.file.name}",
            tofile=f"b/{self.file.name}",
        )
        return "".join(lines)


def thresholds_file(directory: Path) -> Path:
    for suffix in SUFFIXES:
        candidate = directory / f"thresholds{suffix}"
        if candidate.is_file():
            return candidate
    raise PolicyError(
        f"{directory} has no thresholds.yaml to change",
        code="E123",
        location=Location(str(directory)),
    )


def propose(directory: Path, threshold: str, value: float | int) -> Edit:
    """The edit that sets ``threshold`` (dotted name) to ``value``."""
    path = thresholds_file(directory)
    source = read(path, path.name)
    keys = ("thresholds", *threshold.split("."))
    node: object = source.data
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    if node is None or isinstance(node, dict):
        raise PolicyError(
            f"threshold {threshold} does not exist in {path.name}",
            code="E121",
            location=Location(path.name, field=threshold),
        )
    line, column = source.positions.marks[keys]
    new_text = _replace_scalar(source.text, line, column, _format(value))
    return Edit(path, threshold, node, value, source.text, new_text)


def _format(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _replace_scalar(text: str, line: int, column: int, replacement: str) -> str:
    lines = text.splitlines(keepends=True)
    target = lines[line - 1]
    start = column - 1
    end_match = _SCALAR_END.search(target, start)
    end = end_match.start() if end_match else len(target.rstrip("\n"))
    lines[line - 1] = target[:start] + replacement + target[end:]
    return "".join(lines)


def validate(directory: Path, edit: Edit) -> list[Problem]:
    """Errors the rules directory would have with the edit applied."""
    with tempfile.TemporaryDirectory(prefix="proposal-") as scratch:
        copy = Path(scratch) / "rules"
        copy_rules(directory, copy)
        (copy / edit.file.name).write_text(edit.new_text, encoding="utf-8")
        _, problems = read_directory(copy)
    return [p for p in problems if p.severity is Severity.ERROR]


def apply(directory: Path, edit: Edit) -> None:
    """Write the edit if the file is unchanged since it was proposed."""
    current = edit.file.read_text(encoding="utf-8")
    if current != edit.old_text:
        raise ConflictError(
            f"{edit.file.name} changed since this proposal was made; reject it and "
            "let the learning loop propose again",
            code="E409",
            location=Location(edit.file.name, field=edit.threshold),
        )
    problems = validate(directory, edit)
    if problems:
        raise PolicyError(
            f"the proposed {edit.file.name} does not validate: {problems[0].message}",
            code="E122",
            location=problems[0].location,
            problems=problems,
        )
    handle, temporary = tempfile.mkstemp(dir=edit.file.parent, prefix=".thresholds-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(edit.new_text)
    os.replace(temporary, edit.file)
