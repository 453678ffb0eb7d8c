"""Reading rule files: positions, duplicates, and input that must not explode."""

from __future__ import annotations

import pytest

from engine.errors import PolicyError
from engine.policy.source import parse

BOMB = "\n".join(
    [
        "a: &a [x, x, x, x, x, x, x, x, x]",
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]",
        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]",
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]",
        "rules: *g",
    ]
)


def test_an_alias_bomb_is_refused_not_expanded() -> None:
    with pytest.raises(PolicyError) as raised:
        parse(BOMB, "classify.yaml")

    assert raised.value.code == "E106"
    assert raised.value.message.startswith(
        "classify.yaml expands to more than 100000 values (through YAML aliases?)"
    )


def test_a_modest_alias_is_still_allowed() -> None:
    source = parse("common: &c {a: 1}\nrules: [*c, *c]\n", "classify.yaml")

    assert source.data["rules"] == [{"a": 1}, {"a": 1}]


def test_duplicate_keys_are_reported_with_their_place() -> None:
    with pytest.raises(PolicyError) as raised:
        parse("rules: []\nrules: []\n", "classify.yaml")

    problem = raised.value.problems[0]
    assert (problem.code, problem.location.line) == ("E102", 2)
