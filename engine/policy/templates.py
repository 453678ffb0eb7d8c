"""Text templates in rule files, rendered in a sandbox.

Titles, dedup keys, brief sentences, recommendation texts and customer
message drafts are Jinja2 templates written by SREs. They run in Jinja's
``SandboxedEnvironment`` (no attribute access to Python internals, no file or
network access) with autoescaping off (the output is plain text, never HTML)
and ``ChainableUndefined``, so a missing fact renders as an empty string
instead of failing the stage. Templates are compiled once per policy version.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import Location, PolicyError


def _minutes(value: Any) -> str:
    """Render a number of minutes as a person says it: 45 min, 3 h 20 min."""
    if not isinstance(value, int | float):
        return "an unknown time"
    minutes = max(0, round(value))
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _percent(value: Any, digits: int = 0) -> str:
    """A 0-1 share as a percentage: 0.351 -> 35 %."""
    if not isinstance(value, int | float):
        return "an unknown share"
    return f"{value * 100:.{digits}f} %"


@cache
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        autoescape=False,
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["minutes"] = _minutes
    env.filters["percent"] = _percent
    return env


def compile_template(text: str, location: Location) -> Template:
    try:
        return environment().from_string(text)
    except TemplateSyntaxError as exc:
        where = Location(
            location.file,
            location.line + max(exc.lineno - 1, 0),
            location.column,
            location.rule_id,
            location.field,
        )
        raise PolicyError(
            f"template syntax error: {exc.message}; fix the Jinja expression "
            "(variables look like {{ snapshot.memory.percent }})",
            code="E210",
            location=where,
        ) from exc


def render(template: Template, context: Mapping[str, Any]) -> str:
    """Render to one line: all whitespace runs become one space."""
    return " ".join(template.render(context).split())


def render_text(template: Template, context: Mapping[str, Any]) -> str:
    """Render keeping paragraphs: lines are joined, blank lines kept."""
    paragraphs = template.render(context).split("\n\n")
    joined = (" ".join(p.split()) for p in paragraphs)
    return "\n\n".join(p for p in joined if p)
