"""Values written the way durable_rules' JSON parser reads them.

The engine parses JSON with a small parser of its own and compares what it
parsed without decoding it: strings are compared as their raw escaped text,
a number is an integer (``atoll``, which saturates) unless it has a
fraction, and an exponent is only read after a fraction (``1e+20`` is a
syntax error, ``1.0e+20`` is not). So every rule operand and every fact
value the engine sees is written here, by one encoder:

- numbers always as 64-bit floats with a fraction (``5.0``, ``1.0e+20``);
  the infinities as ``1.0e999``, which the parser's ``atof`` reads as such;
- strings as JSON text without ASCII escaping, identically for rules and
  facts, so equal strings have equal raw text whatever the input's
  ``ensure_ascii`` was; a lone surrogate (not encodable as UTF-8) is
  written as an upper-case escape (``\\uD800`` style), a form the plain encoder
  never produces, so the encoding stays one-to-one;
- ``NOT_A_STRING``, the value of a string slot when the fact is not a
  string: raw text no string encodes to, so it equals no operand.
"""

from __future__ import annotations

import math
from json.encoder import encode_basestring

POSITIVE_INFINITY = "1.0e999"
NEGATIVE_INFINITY = "-1.0e999"
NOT_A_STRING = '"\\uD-"'
MAX_STRING_BYTES = 4096
"""Longest string operand, in encoded bytes.

The engine compares strings with an ``unsigned short`` length, so texts of
64 KiB or more would compare by their first few bytes only. Operands are
capped here, and a fact string longer than the cap, which can equal no
operand, is written as ``NOT_A_STRING``.
"""


def number(value: float) -> str:
    """A float as JSON text the engine reads back to the same double."""
    if math.isinf(value):
        return POSITIVE_INFINITY if value > 0 else NEGATIVE_INFINITY
    text = repr(float(value))
    mantissa, exponent_mark, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + exponent_mark + exponent


def string(value: str) -> str:
    """A string as JSON text, quotes included, one-to-one and never ASCII-escaped."""
    if value.isascii():
        return encode_basestring(value)
    try:
        value.encode()
    except UnicodeEncodeError:
        return _with_surrogates(value)
    return encode_basestring(value)


def _with_surrogates(value: str) -> str:
    parts = []
    for char in value:
        if 0xD800 <= ord(char) <= 0xDFFF:
            parts.append(f"\\u{ord(char):04X}")
        else:
            parts.append(encode_basestring(char)[1:-1])
    return '"' + "".join(parts) + '"'


def fact_string(value: str) -> str:
    """A fact's string for an equality slot: too long to equal any operand
    becomes ``NOT_A_STRING``."""
    text = string(value)
    if len(text) > MAX_STRING_BYTES // 4 and len(text.encode()) > MAX_STRING_BYTES:
        return NOT_A_STRING
    return text


def fits(text: str) -> bool:
    """Is an encoded operand short enough for the engine's comparison?"""
    return len(text.encode()) <= MAX_STRING_BYTES


def boolean(value: bool) -> str:
    return "true" if value else "false"
