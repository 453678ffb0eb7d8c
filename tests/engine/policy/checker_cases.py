"""The data-driven cases of ``tests/cases/checker``: a rules directory per case."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "rules"
CASES = ROOT / "tests" / "cases" / "checker"


def cases() -> Iterator[Any]:
    for path in sorted(CASES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            yield pytest.param(case, id=f"{path.stem}: {case['name']}")


def rules_copy(tmp_path: Path, case: dict[str, Any] | None = None) -> Path:
    """The shipped rules (without their tests), changed as ``case`` says."""
    case = case or {}
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory, ignore=shutil.ignore_patterns("tests"))
    for name in case.get("remove", []):
        (directory / name).unlink()
    for name, text in case.get("files", {}).items():
        (directory / name).write_text(text, encoding="utf-8")
    for name, edits in case.get("edit", {}).items():
        path = directory / name
        text = path.read_text(encoding="utf-8")
        for old, new in edits:
            assert text.count(old) == 1, f"{old!r} must appear once in {name}"
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return directory
