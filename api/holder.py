"""The running policy as the API sees it: current, status, reload.

Routes and the service only need three things from whatever holds the
policy: the ``current`` compiled ``Policy``, the ``status`` of the last load
(version, when, whether it worked, the problems if not) and ``reload()``.
``PolicyControl`` names that protocol, so the service runs the engine's
``PolicyHolder`` and tests may pass any holder. ``FixedHolder`` is the
smallest one: it loads a directory with a given compile function, keeps the
last good policy when a reload fails, and does no watching.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from engine.errors import IncidentPolicyError, Problem
from engine.policy.loader import load
from engine.policy.policy import Compile, Policy, compile_python
from engine.runtime import Clock, SystemClock
from engine.telemetry import POLICY_LAST_RELOAD_OK, POLICY_RELOADS

log = logging.getLogger(__name__)


class PolicyStatus(Protocol):
    @property
    def version(self) -> str: ...
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


@dataclass(frozen=True)
class Status:
    version: str
    loaded_at: datetime | None
    ok: bool
    problems: Sequence[Problem] = field(default_factory=tuple)


class FixedHolder:
    """Loads ``directory`` once and again on ``reload()``; keeps the last good."""

    def __init__(
        self,
        directory: Path,
        *,
        compile: Compile = compile_python,
        clock: Clock | None = None,
    ) -> None:
        self.directory = directory
        self._compile = compile
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._policy = compile(load(directory))
        self._status = Status(self._policy.version, self._clock.now(), True)

    @property
    def current(self) -> Policy:
        return self._policy

    @property
    def status(self) -> Status:
        return self._status

    def reload(self) -> Status:
        with self._lock:
            try:
                policy = self._compile(load(self.directory))
            except IncidentPolicyError as exc:
                self._status = Status(
                    self._policy.version, self._status.loaded_at, False, exc.problems
                )
                POLICY_RELOADS.labels("failed").inc()
                POLICY_LAST_RELOAD_OK.set(0)
                log.warning("policy.reload_failed", extra={"code": exc.code})
                return self._status
            self._policy = policy
            self._status = Status(policy.version, self._clock.now(), True)
            POLICY_RELOADS.labels("ok").inc()
            POLICY_LAST_RELOAD_OK.set(1)
            log.info("policy.reloaded", extra={"version": policy.version})
            return self._status
