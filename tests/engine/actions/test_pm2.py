"""PM2 executors against a real PM2 daemon and real captures of its output."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from engine.actions.base import ExecutionResult, Outcome
from engine.actions.pm2 import (
    PauseJobs,
    Pm2Restart,
    _restart_refusal,
    cli_misreading,
    parse_jlist,
)
from engine.runtime import Runtime
from engine.settings import Settings
from tests.engine.actions.conftest import StartApp
from tests.support.actions import no_wait, patient_poll, request_for, spec_for
from tests.support.realhost import Pm2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pm2"


def restarter(settings: Settings, runtime: Runtime) -> Pm2Restart:
    return Pm2Restart(settings, runtime, poll=patient_poll())


def pauser(settings: Settings, runtime: Runtime) -> PauseJobs:
    return PauseJobs(settings, runtime, poll=patient_poll())


def argvs(result: ExecutionResult) -> list[tuple[str, ...]]:
    return [step.argv[1:] for step in result.steps]


def test_jlist_after_the_daemon_banner_is_read_from_the_last_json_line() -> None:
    text = (FIXTURES / "jlist_fresh_daemon_stdout_banner_then_json.txt").read_text()
    assert "PM2 Successfully daemonized" in text
    assert parse_jlist(text) == []


def test_captured_crash_loop_and_backoff_are_refused_and_healthy_is_not() -> None:
    listed = parse_jlist((FIXTURES / "jlist_t10s.json").read_text())

    def refusal_code(name: str) -> str | None:
        found = [p for p in listed if p.name == name]
        refusal = _restart_refusal(found, [], loop_restarts=3)
        return refusal.code if refusal else None

    assert refusal_code("worker-crashloop") == "restart_loop"
    assert refusal_code("jobs-backoff") == "restart_loop"
    assert refusal_code("api-healthy") is None
    assert refusal_code("api-cluster") is None


@pytest.mark.parametrize("name", ["all", "0", "12", "1e3", "0x1f", "-s", "/api/", ""])
def test_names_pm2_would_misread_are_recognised(name: str) -> None:
    assert cli_misreading(name)


@pytest.mark.parametrize("name", ["web", "api-cluster", "jobs.v2", "NaN-worker"])
def test_plain_app_names_are_not_misread(name: str) -> None:
    assert cli_misreading(name) is None


def test_restart_of_a_healthy_app_gets_a_new_pid_and_is_verified(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js")
    before = pm2.wait_for(name, "online")
    executor = restarter(pm2_settings, runtime)
    request = request_for("pm2_restart", name)

    assert executor.check(request, spec_for("pm2_restart")) is None
    result = executor.run(request, spec_for("pm2_restart"), dry_run=False)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert argvs(result) == [("jlist", "-s"), ("restart", name)]
    verdict = executor.verify(request, result, {})
    assert verdict.ok, verdict.message
    after = pm2.process(name)
    assert after is not None
    assert after["pid"] != before["pid"]
    assert after["pm2_env"]["restart_time"] == before["pm2_env"]["restart_time"] + 1


def test_cluster_app_is_reloaded_gracefully_with_new_pids(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js", extra=["-i", "2"])
    pm2.wait_for(name, "online")
    before = {p["pid"] for p in pm2.jlist() if p["name"] == name}
    executor = restarter(pm2_settings, runtime)
    request = request_for("pm2_restart", name)

    result = executor.run(request, spec_for("pm2_restart"), dry_run=False)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert argvs(result)[-1] == ("reload", name)
    assert executor.verify(request, result, {}).ok
    after = {p["pid"] for p in pm2.jlist() if p["name"] == name}
    assert len(after) == 2
    assert not after & before


def test_restart_is_refused_for_a_crash_looping_app(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("crash.js", prefix="crashy")
    looping = pm2.wait_for(name, "errored", timeout=60)
    executor = restarter(pm2_settings, runtime)
    request = request_for("pm2_restart", name)

    refusal = executor.check(request, spec_for("pm2_restart"))
    result = executor.run(request, spec_for("pm2_restart"), dry_run=False)

    assert refusal is not None
    assert refusal.code == "restart_loop"
    assert f"Roll back the last deploy of {name}" in refusal.recommendation
    assert "error log" in refusal.recommendation
    assert result.outcome is Outcome.REFUSED
    assert argvs(result) == [("jlist", "-s")]
    later = pm2.process(name)
    assert later is not None
    assert later["pm2_env"]["restart_time"] == looping["pm2_env"]["restart_time"]


def test_restart_is_refused_when_the_snapshot_marks_a_restart_loop(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js")
    before = pm2.wait_for(name, "online")
    facts = {"snapshot": {"pm2": {"processes": [{"name": name, "restart_loop": True}]}}}
    request = request_for("pm2_restart", name, facts)

    result = restarter(pm2_settings, runtime).run(
        request, spec_for("pm2_restart"), dry_run=False
    )

    assert result.outcome is Outcome.REFUSED
    assert result.refusal is not None
    assert result.refusal.code == "restart_loop"
    assert "snapshot" in result.refusal.message
    after = pm2.process(name)
    assert after is not None
    assert after["pid"] == before["pid"]


def test_restart_is_refused_when_restarts_climbed_since_the_snapshot(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js")
    seen = pm2.wait_for(name, "online")
    entry = {"name": name, "pm_id": seen["pm_id"], "restarts": 0}
    for _ in range(2):
        pm2.run("restart", name)
    request = request_for(
        "pm2_restart", name, {"snapshot": {"pm2": {"processes": [entry]}}}
    )
    spec = spec_for("pm2_restart", settings={"loop_restarts": 2})

    refusal = restarter(pm2_settings, runtime).check(request, spec)

    assert refusal is not None
    assert refusal.code == "restart_loop"
    assert "restarted 2 times since the incident snapshot" in refusal.message


def test_restart_is_refused_for_a_name_pm2_does_not_list(
    pm2_settings: Settings, runtime: Runtime
) -> None:
    request = request_for("pm2_restart", "no-such-app-7f3a")

    result = restarter(pm2_settings, runtime).run(
        request, spec_for("pm2_restart"), dry_run=False
    )

    assert result.outcome is Outcome.REFUSED
    assert result.refusal is not None
    assert result.refusal.code == "not_listed"
    assert "'no-such-app-7f3a'" in result.refusal.message
    assert argvs(result) == [("jlist", "-s")]


@pytest.mark.parametrize("name", ["all", "0", "/.*/"])
def test_restart_is_refused_for_a_name_pm2_would_misread(
    pm2_settings: Settings, runtime: Runtime, start_app: StartApp, name: str
) -> None:
    start_app("healthy.js")
    result = restarter(pm2_settings, runtime).run(
        request_for("pm2_restart", name), spec_for("pm2_restart"), dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "ambiguous_target"
    assert all(step.argv[1] == "jlist" for step in result.steps)


def test_restart_is_refused_for_an_app_stopped_on_purpose(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js")
    pm2.wait_for(name, "online")
    pm2.run("stop", name)

    result = restarter(pm2_settings, runtime).run(
        request_for("pm2_restart", name), spec_for("pm2_restart"), dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "not_running"
    assert pm2.wait_for(name, "stopped")


def test_dry_run_restart_names_the_command_and_changes_nothing(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js")
    before = pm2.wait_for(name, "online")

    result = restarter(pm2_settings, runtime).run(
        request_for("pm2_restart", name), spec_for("pm2_restart"), dry_run=True
    )

    assert result.outcome is Outcome.DRY_RUN
    assert result.steps[-1].argv == (pm2.binary, "restart", name)
    assert result.steps[-1].exit_status is None
    after = pm2.process(name)
    assert after is not None
    assert after["pid"] == before["pid"]
    assert after["pm2_env"]["restart_time"] == before["pm2_env"]["restart_time"]


def test_verification_fails_when_the_process_was_not_restarted(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js")
    seen = pm2.wait_for(name, "online")
    state = {"pid": seen["pid"], "restarts": seen["pm2_env"]["restart_time"]}
    pretended = ExecutionResult(
        Outcome.SUCCEEDED, detail={"before": {str(seen["pm_id"]): state}}
    )

    verdict = Pm2Restart(pm2_settings, runtime, poll=no_wait()).verify(
        request_for("pm2_restart", name), pretended, {}
    )

    assert not verdict.ok
    assert f"still runs as pid {seen['pid']}" in verdict.message


def test_nothing_is_asked_of_pm2_when_no_daemon_runs_for_the_home(
    pm2_bin: str, runtime: Runtime, tmp_path: Path
) -> None:
    home = tmp_path / "empty-pm2-home"
    home.mkdir()
    settings = Settings(pm2_bin=pm2_bin, pm2_home=home, data_dir=tmp_path)

    result = restarter(settings, runtime).run(
        request_for("pm2_restart", "web"), spec_for("pm2_restart"), dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "pm2_not_running"
    assert result.steps == ()
    assert not (home / "pm2.pid").exists()


def test_a_hung_pm2_daemon_makes_the_restart_fail_with_timed_out(
    pm2_bin: str, runtime: Runtime, tmp_path: Path
) -> None:
    daemon = Pm2(pm2_bin, tmp_path / "hung-pm2-home")
    daemon.start_app("hung-web", "healthy.js")
    daemon_pid = int((daemon.home / "pm2.pid").read_text())
    settings = Settings(pm2_bin=pm2_bin, pm2_home=daemon.home, data_dir=tmp_path)
    os.kill(daemon_pid, signal.SIGSTOP)
    try:
        result = restarter(settings, runtime).run(
            request_for("pm2_restart", "hung-web"),
            spec_for("pm2_restart", timeout_s=2),
            dry_run=False,
        )
    finally:
        os.kill(daemon_pid, signal.SIGCONT)
        daemon.kill()

    assert result.outcome is Outcome.FAILED
    assert "timed out after 2 s" in result.message
    assert result.steps[0].exit_status is None


def test_pause_stops_the_configured_jobs_and_undo_starts_them_again(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    jobs = [start_app("healthy.js", prefix="job") for _ in range(2)]
    for name in jobs:
        pm2.wait_for(name, "online")
    executor = pauser(pm2_settings, runtime)
    spec = spec_for("pause_jobs", settings={"processes": jobs})
    request = request_for("pause_jobs", "jobs")

    result = executor.run(request, spec, dry_run=False)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert argvs(result)[1:] == [("stop", jobs[0]), ("stop", jobs[1])]
    assert executor.verify(request, result, {}).ok
    assert all(pm2.wait_for(name, "stopped") for name in jobs)

    undone = executor.undo(request, spec, result.undo_data)

    assert undone.outcome is Outcome.SUCCEEDED, undone.message
    assert all(pm2.wait_for(name, "online") for name in jobs)


def test_pause_leaves_a_job_that_was_already_stopped_stopped_after_undo(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    running, resting = (start_app("healthy.js", prefix="job") for _ in range(2))
    pm2.wait_for(resting, "online")
    pm2.run("stop", resting)
    executor = pauser(pm2_settings, runtime)
    spec = spec_for("pause_jobs", settings={"processes": [running, resting]})
    request = request_for("pause_jobs", "jobs")

    result = executor.run(request, spec, dry_run=False)
    executor.undo(request, spec, result.undo_data)

    assert result.detail["stopped"] == [running]
    assert result.detail["left_alone"] == [resting]
    assert pm2.wait_for(running, "online")
    assert pm2.wait_for(resting, "stopped")


def test_pause_is_refused_without_configured_job_processes(
    pm2_settings: Settings, runtime: Runtime
) -> None:
    result = pauser(pm2_settings, runtime).run(
        request_for("pause_jobs", "jobs"), spec_for("pause_jobs"), dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "not_configured"
    assert result.steps == ()


def test_pause_is_refused_for_an_unlisted_job_and_stops_nothing(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    listed = start_app("healthy.js", prefix="job")
    pm2.wait_for(listed, "online")
    spec = spec_for("pause_jobs", settings={"processes": [listed, "ghost-job-9c1"]})

    result = pauser(pm2_settings, runtime).run(
        request_for("pause_jobs", "jobs"), spec, dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "not_listed"
    assert "ghost-job-9c1" in result.refusal.message
    assert pm2.wait_for(listed, "online")


def test_dry_run_pause_names_the_commands_and_stops_nothing(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    job = start_app("healthy.js", prefix="job")
    before = pm2.wait_for(job, "online")
    spec = spec_for("pause_jobs", settings={"processes": [job]})

    result = pauser(pm2_settings, runtime).run(
        request_for("pause_jobs", "jobs"), spec, dry_run=True
    )

    assert result.outcome is Outcome.DRY_RUN
    assert result.steps[-1].argv == (pm2.binary, "stop", job)
    after = pm2.process(job)
    assert after is not None
    assert (after["pid"], after["pm2_env"]["status"]) == (before["pid"], "online")


def test_undo_never_starts_a_name_pm2_no_longer_lists(
    pm2_settings: Settings, runtime: Runtime
) -> None:
    spec = spec_for("pause_jobs", settings={"processes": ["ghost-job-9c1"]})

    undone = pauser(pm2_settings, runtime).undo(
        request_for("pause_jobs", "jobs"), spec, {"stopped": ["ghost-job-9c1"]}
    )

    assert undone.outcome is Outcome.SUCCEEDED
    assert undone.detail["skipped"] == {"ghost-job-9c1": "PM2 no longer lists it"}
    assert argvs(undone) == [("jlist", "-s")]


def test_jlist_output_is_not_kept_in_the_record(
    pm2: Pm2, pm2_settings: Settings, runtime: Runtime, start_app: StartApp
) -> None:
    name = start_app("healthy.js", env={"APP_SECRET_TOKEN": "s3cr3t-value"})
    pm2.wait_for(name, "online")

    result = restarter(pm2_settings, runtime).run(
        request_for("pm2_restart", name), spec_for("pm2_restart"), dry_run=True
    )

    recorded = json.dumps([step.output_tail for step in result.steps])
    assert "s3cr3t-value" not in recorded
