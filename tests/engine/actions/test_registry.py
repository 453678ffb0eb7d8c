"""The executor registry and the recording executor the flow's tests use."""

from __future__ import annotations

from pathlib import Path

from engine.actions.base import Outcome, Refusal
from engine.actions.registry import (
    EXECUTOR_NAMES,
    RecordingExecutor,
    build_executors,
    recording_executors,
)
from engine.runtime import Runtime
from engine.settings import Settings
from tests.support.actions import request_for, spec_for


def test_every_catalog_executor_name_has_a_real_executor(tmp_path: Path) -> None:
    executors = build_executors(Settings(data_dir=tmp_path), Runtime.system())

    assert sorted(executors) == sorted(EXECUTOR_NAMES)
    for name, executor in executors.items():
        assert executor.name == name
        for method in ("check", "run", "verify", "undo"):
            assert callable(getattr(executor, method))


def test_recording_executor_records_requests_and_the_argv_of_a_real_run() -> None:
    settings = Settings(pm2_bin="/usr/local/bin/pm2")
    recorder = recording_executors(settings)["pm2_restart"]
    request = request_for("pm2_restart", "web")

    dry = recorder.run(request, spec_for("pm2_restart"), dry_run=True)
    real = recorder.run(request, spec_for("pm2_restart"), dry_run=False)

    assert dry.outcome is Outcome.DRY_RUN
    assert real.outcome is Outcome.SUCCEEDED
    assert [call.dry_run for call in recorder.calls] == [True, False]
    assert recorder.runs()[0].request == request
    assert recorder.runs()[0].argv == (("/usr/local/bin/pm2", "restart", "web"),)


def test_recording_executor_answers_as_scripted() -> None:
    refusal = Refusal("restart_loop", "web is crash-looping", "roll back")
    scripted = recording_executors(
        pm2_restart=RecordingExecutor("pm2_restart", refusal=refusal),
        nginx_reload=RecordingExecutor("nginx_reload", verified=False),
    )
    request = request_for("pm2_restart", "web")
    spec = spec_for("pm2_restart")

    refused = scripted["pm2_restart"].run(request, spec, dry_run=False)
    reloaded = scripted["nginx_reload"].run(request, spec, dry_run=False)
    verdict = scripted["nginx_reload"].verify(request, reloaded, {})

    assert scripted["pm2_restart"].check(request, spec) == refusal
    assert refused.outcome is Outcome.REFUSED
    assert not verdict.ok
    assert [c.method for c in scripted["nginx_reload"].calls] == ["run", "verify"]


def test_recorded_pause_names_each_configured_job() -> None:
    recorder = recording_executors(Settings(pm2_bin="pm2"))["pause_jobs"]
    spec = spec_for("pause_jobs", settings={"processes": ["jobs", "thumbs"]})

    result = recorder.run(request_for("pause_jobs", "jobs"), spec, dry_run=False)

    assert [step.argv for step in result.steps] == [
        ("pm2", "stop", "jobs"),
        ("pm2", "stop", "thumbs"),
    ]
