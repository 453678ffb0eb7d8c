"""Recording the commands of one executor call and building its result.

An executor opens a ``StepRecorder`` for each ``check``, ``run`` or ``undo``.
Every command goes through ``runtime.commands.run`` as a fixed argument
vector with the action's timeout, and comes back as a ``Step`` for the
record: the tail of its output without terminal colours, and without
standard output when that may hold secrets (``pm2 jlist`` prints every
process environment, ``nginx -T`` the whole configuration). A command that
did not complete (timed out, could not start, or failed where failure is
not an answer) raises ``CommandFailed`` with a sentence for the person
reading the record. The recorder then builds the ``ExecutionResult`` with
the steps, the duration by the injected clock, and one log line.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from engine.actions.base import ExecutionResult, Outcome, Refusal, Step
from engine.errors import ActionError
from engine.runtime import CommandResult, Runtime

log = logging.getLogger("engine.actions")

STEP_OUTPUT_LIMIT = 4000
"""Characters of a command's output kept in the record of its step."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class CommandFailed(ActionError):
    """A command of an executor did not complete, so nothing can be decided."""

    default_code = "E602"

    def __init__(self, message: str) -> None:
        super().__init__(message)


def strip_colours(text: str) -> str:
    return _ANSI.sub("", text)


def render_argv(argv: Sequence[str]) -> str:
    """The argument vector as a person would type it (display only)."""
    return shlex.join(argv)


def describe_failure(result: CommandResult) -> str:
    """One sentence on why a command did not succeed."""
    command = render_argv(result.argv)
    if result.timed_out:
        return f"`{command}` {result.error}"
    if result.error:
        return f"`{command}` could not start: {result.error}"
    last = last_line(result.stderr) or last_line(result.stdout)
    return f"`{command}` exited with status {result.exit_status}: {last}"


def last_line(text: str) -> str:
    lines = [line.strip() for line in strip_colours(text).splitlines()]
    return next((line for line in reversed(lines) if line), "")


def planned_step(argv: Sequence[str]) -> Step:
    """A step that was not run: what a dry run reports."""
    return Step(argv=tuple(argv))


class StepRecorder:
    """The commands of one executor call, in order, and its result."""

    def __init__(
        self,
        runtime: Runtime,
        action: str,
        target: str,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._runtime = runtime
        self._action = action
        self._target = target
        self._env = dict(env) if env else None
        self._started = runtime.clock.now()
        self.steps: list[Step] = []

    def run(
        self, argv: Sequence[str], *, timeout_s: float, keep_stdout: bool = True
    ) -> CommandResult:
        result = self._runtime.commands.run(argv, timeout_s=timeout_s, env=self._env)
        self.steps.append(_step_of(result, keep_stdout=keep_stdout))
        log.debug(
            "action.command",
            extra={
                "action": self._action,
                "target": self._target,
                "argv": list(result.argv),
                "exit_status": result.exit_status,
                "timed_out": result.timed_out,
                "duration_s": result.duration_s,
            },
        )
        return result

    def require(
        self, argv: Sequence[str], *, timeout_s: float, keep_stdout: bool = True
    ) -> CommandResult:
        """Run a command that must succeed; raise ``CommandFailed`` if not."""
        result = self.run(argv, timeout_s=timeout_s, keep_stdout=keep_stdout)
        if not result.ok:
            raise CommandFailed(describe_failure(result))
        return result

    def plan(self, argv: Sequence[str]) -> None:
        self.steps.append(planned_step(argv))

    def refused(
        self, refusal: Refusal, detail: Mapping[str, Any] | None = None
    ) -> ExecutionResult:
        return self._finish(
            Outcome.REFUSED, refusal.message, refusal=refusal, detail=detail
        )

    def failed(
        self,
        message: str,
        detail: Mapping[str, Any] | None = None,
        undo_data: Mapping[str, Any] | None = None,
    ) -> ExecutionResult:
        # A run that failed half-way keeps what its undo needs (jobs it
        # already stopped), so the caller can put things back.
        return self._finish(Outcome.FAILED, message, detail=detail, undo_data=undo_data)

    def dry_run(
        self, message: str, detail: Mapping[str, Any] | None = None
    ) -> ExecutionResult:
        return self._finish(Outcome.DRY_RUN, message, detail=detail)

    def succeeded(
        self,
        message: str,
        detail: Mapping[str, Any] | None = None,
        undo_data: Mapping[str, Any] | None = None,
    ) -> ExecutionResult:
        return self._finish(
            Outcome.SUCCEEDED, message, detail=detail, undo_data=undo_data
        )

    def _finish(
        self,
        outcome: Outcome,
        message: str,
        *,
        refusal: Refusal | None = None,
        detail: Mapping[str, Any] | None = None,
        undo_data: Mapping[str, Any] | None = None,
    ) -> ExecutionResult:
        elapsed = (self._runtime.clock.now() - self._started).total_seconds()
        log.info(
            "action.finished",
            extra={
                "action": self._action,
                "target": self._target,
                "outcome": outcome.value,
                "refusal": refusal.code if refusal else None,
                "steps": len(self.steps),
                "duration_s": elapsed,
            },
        )
        return ExecutionResult(
            outcome=outcome,
            steps=tuple(self.steps),
            duration_s=elapsed,
            message=message,
            refusal=refusal,
            detail=dict(detail or {}),
            undo_data=dict(undo_data or {}),
        )


def _step_of(result: CommandResult, *, keep_stdout: bool) -> Step:
    output = result.stdout + result.stderr if keep_stdout else result.stderr
    if result.error:
        output = f"{output}\n{result.error}" if output else result.error
    tail = strip_colours(output)[-STEP_OUTPUT_LIMIT:]
    return Step(
        argv=result.argv,
        exit_status=result.exit_status,
        output_tail=tail,
        duration_s=result.duration_s,
    )
