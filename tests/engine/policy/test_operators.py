"""The semantics fixes: numbers as 64-bit floats, huge integers not numbers."""

from __future__ import annotations

from engine.policy.operators import SCALAR_PREDICATES, as_number, same


def test_integers_beyond_the_float_range_are_not_numbers() -> None:
    assert as_number(10**400) is None
    assert not SCALAR_PREDICATES["gt"](10**400, 5)
    assert SCALAR_PREDICATES["ne"](10**400, 5)


def test_numbers_compare_as_64_bit_floats() -> None:
    assert same(2**53 + 1, float(2**53))
    assert same(1, 1.0) and not same(True, 1) and not same("5", 5)
    assert not same(float("nan"), float("nan"))


def test_a_pattern_that_is_not_text_never_matches() -> None:
    assert not SCALAR_PREDICATES["matches"]("5", 5)
