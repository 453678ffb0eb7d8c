"""Reading rule files: positions, duplicates, and input that must not explode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import PolicyError
from engine.policy.source import parse, read

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


@pytest.mark.parametrize("character", ["\x07", "\x00", "\ud800"])
def test_a_character_yaml_refuses_is_e101_with_its_place(character: str) -> None:
    text = f"defaults:\n  a: 1\nrules:\n  - id: r{character}\n"

    with pytest.raises(PolicyError) as raised:
        parse(text, "classify.yaml")

    assert raised.value.code == "E101"
    location = raised.value.location
    assert (location.file, location.line, location.column) == ("classify.yaml", 4, 10)
    assert "a character YAML does not allow" in raised.value.message


def test_a_rule_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "classify.yaml"
    os.mkfifo(fifo)

    with pytest.raises(PolicyError) as raised:
        read(fifo, "classify.yaml")  # would block if it were opened

    assert raised.value.code == "E101"
    assert raised.value.message == (
        "classify.yaml is not a regular file; a rule file must be one"
    )
