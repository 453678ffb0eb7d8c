"""The project's exceptions, and the problem record they carry.

Every error a person can meet is an ``IncidentPolicyError``. It carries one or
more ``Problem`` records: a stable ``code`` (``E###`` for errors, ``W###`` for
warnings), a ``Location`` (file, line, column, rule id, field path) and a
sentence that says what is wrong and how to fix it. The command line prints
problems as ``file:line:column: rule-id: code: message``; the API returns the
same code and text in its error body.

Hierarchy::

    IncidentPolicyError
    ├── PolicyError          a rule file or policy directory is unusable
    ├── EngineLimitError     the policy exceeds what the rule engine evaluates
    ├── FactsError           a facts document does not fit the vocabulary
    ├── InputError           an alert, request or command argument is bad
    ├── NotFoundError        a named incident, rule or record does not exist
    ├── ConflictError        the request conflicts with the record's state
    ├── ActionError          an action was refused or failed to run
    └── StoreError           the database is unreachable or not migrated
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a problem is: any part may be unknown."""

    file: str = ""
    line: int = 0
    column: int = 0
    rule_id: str = ""
    field: str = ""

    def render(self) -> str:
        place = self.file or "<input>"
        if self.line:
            place += f":{self.line}:{self.column or 1}"
        return place


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str
    location: Location = field(default_factory=Location)

    @property
    def severity(self) -> Severity:
        return Severity.WARNING if self.code.startswith("W") else Severity.ERROR

    def render(self) -> str:
        rule = self.location.rule_id or "-"
        return f"{self.location.render()}: {rule}: {self.code}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": loc.file,
            "line": loc.line,
            "column": loc.column,
            "rule_id": loc.rule_id,
            "field": loc.field,
        }


class IncidentPolicyError(Exception):
    """Base of every error this project raises on purpose."""

    default_code = "E000"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        location: Location | None = None,
        problems: Iterable[Problem] = (),
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.location = location or Location()
        listed = tuple(problems)
        self.problems: Sequence[Problem] = listed or (
            Problem(self.code, message, self.location),
        )

    @property
    def message(self) -> str:
        return str(self.args[0])

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class PolicyError(IncidentPolicyError):
    default_code = "E100"


class EngineLimitError(PolicyError):
    default_code = "E300"


class FactsError(IncidentPolicyError):
    default_code = "E410"


class InputError(IncidentPolicyError):
    default_code = "E500"


class NotFoundError(IncidentPolicyError):
    default_code = "E404"


class ConflictError(IncidentPolicyError):
    default_code = "E409"


class ActionError(IncidentPolicyError):
    default_code = "E600"


class StoreError(IncidentPolicyError):
    default_code = "E700"
