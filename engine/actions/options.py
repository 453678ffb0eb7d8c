"""Reading an action's own settings (``settings:`` of its catalog entry).

Each executor declares its settings as a small pydantic model that forbids
unknown keys, so a misspelt key is refused instead of silently ignored.
``read_settings`` validates the catalog mapping against that model and
turns a validation failure into a ``Refusal`` (code ``invalid_settings``)
that names the key, the bad value and what is expected.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from engine.actions.base import ActionSpec, Refusal

ModelT = TypeVar("ModelT", bound="ActionSettings")


class ActionSettings(BaseModel):
    """Base of every executor's settings: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_settings(model: type[ModelT], spec: ActionSpec) -> ModelT | Refusal:
    try:
        return model.model_validate(dict(spec.settings))
    except ValidationError as exc:
        return Refusal(
            code="invalid_settings",
            message=f"The settings of action {spec.name!r} are invalid: "
            + "; ".join(_describe(error) for error in exc.errors()),
            recommendation=f"Correct `settings:` of {spec.name!r} in the "
            "action catalog (see docs/actions.md), then reload the policy.",
        )


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"])
    return f"settings.{where} = {error['input']!r}: {error['msg']}"
