"""Values written for the engine's parser: read back exactly, one-to-one."""

from __future__ import annotations

import json

import pytest

from engine.policy import wire
from engine.policy.durable import EngineRuleset


@pytest.mark.parametrize("value", [5.0, -0.5, 1e20, 1.5e-7, 2.0**53 + 2, 1e300])
def test_numbers_are_read_back_by_the_engine_as_the_same_double(value: float) -> None:
    text = wire.number(value)
    rules = {"eq": {"all": [{"m": {"$eq": {"n": "@"}}}]}}
    ruleset = EngineRuleset(json.dumps(rules).replace('"@"', text), "tests.wire")
    assert ruleset.matches(f'"n":{text}') == ["eq"]
    assert ruleset.matches(f'"n":{wire.number(value * 1.5 + 1)}') == []
    assert float(text) == value


def test_infinities_order_below_and_above_every_number() -> None:
    rules = {
        "low": {"all": [{"m": {"$lt": {"n": "@low"}}}]},
        "high": {"all": [{"m": {"$gt": {"n": "@high"}}}]},
    }
    text = json.dumps(rules).replace('"@low"', wire.number(-1.0e308))
    text = text.replace('"@high"', wire.number(1.0e308))
    ruleset = EngineRuleset(text, "tests.infinity")
    assert ruleset.matches(f'"n":{wire.NEGATIVE_INFINITY}') == ["low"]
    assert ruleset.matches(f'"n":{wire.POSITIVE_INFINITY}') == ["high"]


def test_string_encoding_is_one_to_one_even_with_lone_surrogates() -> None:
    texts = ["", "a", 'q"', "\\", "é", "\U00010000", "\ud800\udc00", "\ud800", "\n"]
    encoded = [wire.string(text) for text in texts]
    assert len(set(encoded)) == len(texts)
    assert wire.NOT_A_STRING not in encoded
    for text in encoded:
        text.encode()  # the C call needs valid UTF-8


def test_a_fact_string_too_long_to_equal_any_operand_is_not_a_string() -> None:
    assert wire.fact_string("x" * 5000) == wire.NOT_A_STRING
    assert wire.fact_string("é" * 1000) == wire.string("é" * 1000)
    assert not wire.fits(wire.string("é" * 3000))
