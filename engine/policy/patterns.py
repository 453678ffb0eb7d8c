"""Regular expressions of the ``matches`` operator: RE2, whole string, linear.

A pattern is RE2 syntax (the dialect of Prometheus and Go) and must match
the whole string, as a Prometheus label matcher does; ``.`` also matches a
newline. RE2 runs in time linear in the input, so no pattern and no fact
can make an evaluation hang, which Python's backtracking ``re`` cannot
promise. The explaining evaluator and the durable_rules backend both call
``fullmatch`` here, so they agree by construction; durable_rules' own
regular expression automaton is never used (docs/engine.md says why).
Compiled patterns are cached per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

MAX_PATTERN_MEMORY = 8 << 20  # bytes RE2 may spend compiling one pattern


class PatternError(ValueError):
    """RE2 refused a pattern; the message says why."""


def _options() -> re2.Options:
    options = re2.Options()
    options.dot_nl = True
    options.log_errors = False
    options.never_capture = True
    options.max_mem = MAX_PATTERN_MEMORY
    return options


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern; ``PatternError`` when RE2 cannot compile it."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        raise PatternError(text) from None


def problem(pattern: str) -> str | None:
    """Why ``pattern`` is unusable, or None when it compiles."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        return str(exc)
    return None


def _utf8(value: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:
        # A lone surrogate (JSON can carry one) is not text: it is matched
        # as U+FFFD, the replacement character, rather than failing.
        return "".join(
            "\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in value
        ).encode()


def fullmatch(pattern: str, value: str) -> bool:
    """Does ``pattern`` match all of ``value``?"""
    return compile_pattern(pattern).fullmatch(_utf8(value)) is not None
