"""``matches`` patterns: RE2, whole string, dot matches newline, linear."""

from __future__ import annotations

import pytest

from engine.policy import patterns


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("api-.*", "api-gateway", True),
        ("api", "api-gateway", False),
        ("\\d+", "٣", False),
        ("a.c", "a\nc", True),
        ("(?i)oom", "OOM", True),
        ("a^b", "ab", False),
        (".", "\ud800", True),
    ],
)
def test_fullmatch_follows_re2(pattern: str, text: str, expected: bool) -> None:
    assert patterns.fullmatch(pattern, text) is expected


def test_problem_names_what_re2_refuses() -> None:
    assert patterns.problem("(?=a)") is not None
    assert "invalid repetition size" in str(patterns.problem("a{1001}"))
    assert patterns.problem("(a|b)+") is None


@pytest.mark.timeout(60)
def test_nested_repetition_runs_in_linear_time() -> None:
    assert not patterns.fullmatch("(a*)*b", "a" * 100_000)
