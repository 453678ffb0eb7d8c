"""The running policy as the API sees it: current, status, reload.

Routes and the service only need three things from whatever holds the
policy: the ``current`` compiled ``Policy``, the ``status`` of the last load
(version, when, whether it worked, the problems if not) and ``reload()``.
``PolicyControl`` names that protocol: the service runs the engine's
``PolicyHolder`` (``engine.policy.holder``) with the durable_rules
compiler, and tests may pass one built on the Python backend, or any other
object with these three members.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from engine.errors import Problem
from engine.policy.policy import Policy


class PolicyStatus(Protocol):
    @property
    def version(self) -> str | None: ...
    @property
    def loaded_at(self) -> datetime | None: ...
    @property
    def ok(self) -> bool: ...
    @property
    def problems(self) -> Sequence[Problem]: ...


class PolicyControl(Protocol):
    @property
    def current(self) -> Policy: ...
    @property
    def status(self) -> PolicyStatus: ...
    def reload(self) -> PolicyStatus: ...
