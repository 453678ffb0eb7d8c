"""Recording commands: real processes, timeouts, colours and secrets."""

from __future__ import annotations

import shutil

import pytest

from engine.actions.base import Outcome
from engine.actions.steps import CommandFailed, StepRecorder, describe_failure
from engine.runtime import Runtime


def recorder() -> StepRecorder:
    return StepRecorder(Runtime.system(), "demo", "target")


def program(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def test_a_hung_command_is_cut_at_its_timeout_and_said_so() -> None:
    steps = recorder()

    with pytest.raises(CommandFailed) as failed:
        steps.require([program("sleep"), "30"], timeout_s=0.3)

    assert "timed out after 0.3 s" in failed.value.message
    assert steps.steps[0].exit_status is None
    assert "timed out" in steps.steps[0].output_tail


def test_a_missing_program_is_a_failure_that_names_it() -> None:
    steps = recorder()

    result = steps.run(["/nonexistent/tool", "--flag"], timeout_s=5)

    assert not result.ok
    assert describe_failure(result).startswith("`/nonexistent/tool --flag` could not")


def test_the_output_tail_has_no_terminal_colours() -> None:
    steps = recorder()

    steps.run([program("printf"), "\\033[32m[PM2]\\033[39m done"], timeout_s=5)

    assert steps.steps[0].output_tail == "[PM2] done"


def test_standard_output_is_left_out_when_it_may_hold_secrets() -> None:
    steps = recorder()

    steps.run([program("echo"), "API_KEY=hunter2"], timeout_s=5, keep_stdout=False)

    assert "hunter2" not in steps.steps[0].output_tail


def test_the_result_carries_ran_and_planned_steps_in_order() -> None:
    steps = recorder()
    true = program("true")
    steps.run([true], timeout_s=5)
    steps.plan(["pm2", "restart", "web"])

    result = steps.succeeded("done", {"pids": [1]})

    assert result.outcome is Outcome.SUCCEEDED
    assert [s.argv for s in result.steps] == [(true,), ("pm2", "restart", "web")]
    assert [s.exit_status for s in result.steps] == [0, None]
    assert result.detail == {"pids": [1]}
