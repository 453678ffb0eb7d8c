"""Helpers shared by the collector tests: fixture paths and schema checks."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from engine.facts.vocabulary import validate

T = TypeVar("T")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def assert_valid(sections: Mapping[str, Any]) -> None:
    """The sections fit the facts vocabulary as a ``snapshot``."""
    problems = validate({"snapshot": dict(sections)})
    assert not problems, "\n".join(p.render() for p in problems)


def eventually(
    produce: Callable[[], T], done: Callable[[T], bool], *, within_s: float = 10.0
) -> T:
    """Call ``produce`` until ``done`` holds (nginx logs a request after
    answering it, so a test can be ahead of the log by a moment)."""
    deadline = time.monotonic() + within_s
    while True:
        value = produce()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
