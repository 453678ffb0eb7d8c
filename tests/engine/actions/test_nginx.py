"""nginx_reload against real nginx instances and real `nginx -t` captures."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from engine.actions.base import ExecutionResult, Outcome
from engine.actions.nginx import (
    NginxReload,
    read_config_test,
    reload_state,
    verify_reload,
)
from engine.runtime import Runtime
from engine.settings import Settings
from tests.engine.actions.conftest import nginx_settings
from tests.support.actions import no_wait, patient_poll, request_for, spec_for
from tests.support.realhost import Nginx

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nginx"
BROKEN = ["unknown_directive", "missing_semicolon", "unbalanced_brace"]


def reloader(settings: Settings, runtime: Runtime) -> NginxReload:
    return NginxReload(settings, runtime, poll=patient_poll())


def captured(name: str) -> tuple[str, int]:
    """The captured `nginx -t` output of a case and its exit status."""
    text = (FIXTURES / f"nginx_t_{name}.txt").read_text()
    status = int(text.rsplit("rc=", 1)[1])
    return text.rsplit("rc=", 1)[0], status


def flags(result: ExecutionResult) -> list[str]:
    return [step.argv[-1] for step in result.steps]


@pytest.mark.parametrize("case", [f"broken_{name}" for name in BROKEN])
def test_captured_failures_quote_the_emerg_line_and_its_place(case: str) -> None:
    output, status = captured(case)
    first = output.splitlines()[0].removeprefix("nginx: ")

    tested = read_config_test(output, status)
    refusal = tested.refusal()

    assert not tested.ok
    assert tested.problem == first
    line = first.rsplit(":", 1)[1]
    assert f"Fix line {line} of /srv/nginx/conf/{case}.conf" in refusal.recommendation


def test_a_captured_warning_passes_and_is_kept() -> None:
    output, status = captured("warn_conflicting_server_name")

    tested = read_config_test(output, status)

    assert tested.ok
    assert tested.warnings == (
        '[warn] conflicting server name "app.example.test" on 127.0.0.1:18080, ignored',
    )


def test_reload_with_a_good_config_starts_new_workers(
    nginx: Nginx, runtime: Runtime
) -> None:
    before = set(nginx.worker_pids())
    executor = reloader(nginx_settings(nginx), runtime)
    request = request_for("nginx_reload", "nginx")

    assert executor.check(request, spec_for("nginx_reload")) is None
    result = executor.run(request, spec_for("nginx_reload"), dry_run=False)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert flags(result) == ["-t", "-T", "reload"]
    verdict = executor.verify(request, result, {})
    assert verdict.ok, verdict.message
    assert set(verdict.detail["workers"]) - before
    assert nginx.get("/nginx_status") == 200


def test_a_configured_pid_file_spares_the_configuration_dump(
    nginx: Nginx, runtime: Runtime
) -> None:
    pid_file = nginx.prefix / "logs" / "nginx.pid"
    settings = nginx_settings(nginx, nginx_pid_file=pid_file)

    result = reloader(settings, runtime).run(
        request_for("nginx_reload", "nginx"), spec_for("nginx_reload"), dry_run=True
    )

    assert result.outcome is Outcome.DRY_RUN
    assert flags(result) == ["-t", "reload"]
    assert result.detail["master_pid"] == nginx.master_pid()


@pytest.mark.parametrize("name", BROKEN)
def test_reload_is_refused_with_a_broken_config_and_old_workers_still_serve(
    own_nginx: Nginx, runtime: Runtime, name: str
) -> None:
    workers = own_nginx.worker_pids()
    own_nginx.conf.write_text((FIXTURES / f"broken_{name}.conf").read_text())
    output, _ = captured(f"broken_{name}")
    emerg = output.splitlines()[0].removeprefix("nginx: ")
    expected = emerg.replace(f"/srv/nginx/conf/broken_{name}.conf", str(own_nginx.conf))

    result = reloader(nginx_settings(own_nginx), runtime).run(
        request_for("nginx_reload", "nginx"), spec_for("nginx_reload"), dry_run=False
    )

    assert result.outcome is Outcome.REFUSED
    assert result.refusal is not None
    assert result.refusal.code == "nginx_config_invalid"
    assert expected in result.refusal.message
    assert str(own_nginx.conf) in result.refusal.recommendation
    assert flags(result) == ["-t"]
    assert own_nginx.worker_pids() == workers
    assert own_nginx.get("/nginx_status") == 200


def test_reload_is_refused_when_nginx_is_not_running(
    nginx_bin: str, runtime: Runtime, tmp_path: Path
) -> None:
    stopped = Nginx(nginx_bin, tmp_path / "stopped-nginx")
    stopped.write_config()

    result = reloader(nginx_settings(stopped), runtime).run(
        request_for("nginx_reload", "nginx"), spec_for("nginx_reload"), dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "nginx_not_running"
    assert "reload" not in flags(result)


def test_dry_run_reload_names_the_command_and_keeps_the_workers(
    own_nginx: Nginx, runtime: Runtime
) -> None:
    workers = own_nginx.worker_pids()

    result = reloader(nginx_settings(own_nginx), runtime).run(
        request_for("nginx_reload", "nginx"), spec_for("nginx_reload"), dry_run=True
    )

    assert result.outcome is Outcome.DRY_RUN
    assert result.steps[-1].argv == tuple(own_nginx.argv("-s", "reload"))
    assert result.steps[-1].exit_status is None
    assert own_nginx.worker_pids() == workers


def test_verification_fails_when_no_new_worker_appears(
    own_nginx: Nginx, runtime: Runtime
) -> None:
    state = reload_state(own_nginx.prefix / "logs" / "nginx.pid")
    pretended = ExecutionResult(Outcome.SUCCEEDED, detail=state)

    verdict = NginxReload(nginx_settings(own_nginx), runtime, poll=no_wait()).verify(
        request_for("nginx_reload", "nginx"), pretended, {}
    )

    assert not verdict.ok
    assert "No new nginx worker appeared" in verdict.message


def test_a_missing_nginx_binary_fails_the_reload_with_its_reason(
    own_nginx: Nginx, runtime: Runtime, tmp_path: Path
) -> None:
    settings = nginx_settings(own_nginx).model_copy(
        update={"nginx_bin": str(tmp_path / "no-nginx-here")}
    )

    result = reloader(settings, runtime).run(
        request_for("nginx_reload", "nginx"), spec_for("nginx_reload"), dry_run=False
    )

    assert result.outcome is Outcome.FAILED
    assert "could not start" in result.message


def titled_process(title: str) -> subprocess.Popen[bytes]:
    """A process whose command line reads ``title``, as nginx's workers do."""
    child = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 30'])
    for _ in range(100):
        if psutil.Process(child.pid).cmdline()[:1] == [title]:
            return child
        time.sleep(0.02)
    child.kill()
    raise AssertionError(f"process {child.pid} never took the title {title!r}")


@pytest.mark.parametrize(
    ("old_title", "reloaded"),
    [
        ("nginx: worker process", False),
        ("nginx: worker process is shutting down", True),
    ],
)
def test_reload_counts_once_the_old_workers_stop_accepting(
    tmp_path: Path, old_title: str, reloaded: bool
) -> None:
    # This test process plays the master; its children play the workers.
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text(str(os.getpid()))
    children: list[subprocess.Popen[bytes]] = []
    try:
        old = titled_process(old_title)
        children.append(old)
        children.append(titled_process("nginx: worker process"))
        detail = {
            "pid_file": str(pid_file),
            "master_pid": os.getpid(),
            "workers_before": [old.pid],
        }
        verdict = verify_reload(no_wait(), detail)
    finally:
        for child in children:
            child.kill()
            child.wait()

    assert verdict.ok is reloaded
    if not reloaded:
        assert (
            f"the old workers [{old.pid}] still accept connections" in verdict.message
        )
