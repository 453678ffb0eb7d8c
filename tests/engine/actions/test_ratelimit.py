"""rate_limit through a real nginx in front of a real app under PM2."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine.actions.base import Outcome
from engine.actions.ratelimit import RateLimit, RateLimitSettings, render
from engine.runtime import Runtime
from tests.engine.actions.conftest import StartApp, nginx_settings
from tests.support.actions import patient_poll, request_for, spec_for
from tests.support.realhost import Nginx, Pm2

STRICT = {"locations": ["/upload"], "rate": "1r/m", "burst": 0}


def limiter(server: Nginx, runtime: Runtime) -> RateLimit:
    return RateLimit(nginx_settings(server), runtime, poll=patient_poll())


def limit_spec(server: Nginx, **settings: Any) -> Any:
    merged = {"snippet_dir": str(server.prefix / "conf"), **STRICT, **settings}
    return spec_for("rate_limit", settings=merged)


def snippet_files(server: Nginx) -> list[Path]:
    return sorted(server.prefix.glob("conf/*.d/incident-policy-*.conf"))


def burst(server: Nginx, path: str = "/upload/file", count: int = 6) -> list[int]:
    return [server.post(path, b"payload") for _ in range(count)]


def settle(server: Nginx, old_workers: list[int]) -> None:
    """Wait until the workers of the previous configuration have exited.

    A reload is graceful: for a moment an old worker may still accept a
    connection under the previous configuration.
    """
    for _ in range(100):
        if not set(old_workers) & set(server.worker_pids()):
            return
        time.sleep(0.1)
    raise AssertionError(f"old nginx workers {old_workers} did not exit")


def nginx_test_passes(server: Nginx) -> bool:
    done = subprocess.run(server.argv("-t"), capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def served(own_nginx: Nginx, pm2: Pm2, start_app: StartApp) -> Nginx:
    """The private nginx with the web app answering behind it."""
    name = start_app("web.js", prefix="web", env={"PORT": str(own_nginx.app_port)})
    pm2.wait_for(name, "online")
    for _ in range(100):
        if own_nginx.post("/upload/probe", b"x") == 201:
            return own_nginx
        time.sleep(0.1)
    raise AssertionError("the web app never answered behind nginx")


def test_render_limits_only_the_locations_and_omits_a_zero_burst() -> None:
    options = RateLimitSettings(
        snippet_dir="/etc/nginx/ip", locations=["/upload", "/v1.2/files"], burst=0
    )

    snippets = render("rate_limit", options, "inc_01\n}")

    assert '"~^/upload" $binary_remote_addr;' in snippets.http
    assert '"~^/v1\\.2/files" $binary_remote_addr;' in snippets.http
    assert "burst=" not in snippets.server
    assert "incident inc_01)" in snippets.http
    assert str(snippets.http_path) == (
        "/etc/nginx/ip/http.d/incident-policy-rate-limit.conf"
    )


def test_rate_limit_rejects_a_burst_then_undo_lets_requests_pass(
    served: Nginx, runtime: Runtime
) -> None:
    executor = limiter(served, runtime)
    spec = limit_spec(served)
    request = request_for("rate_limit", "uploads")
    assert set(burst(served)) == {201}

    result = executor.run(request, spec, dry_run=False)

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert executor.verify(request, result, {}).ok
    settle(served, result.detail["workers_before"])
    limited = burst(served)
    assert 429 in limited
    assert set(limited) <= {201, 429}
    assert set(burst(served, "/other")) == {200}

    limiting_workers = served.worker_pids()
    undone = executor.undo(request, spec, result.undo_data)

    assert undone.outcome is Outcome.SUCCEEDED, undone.message
    assert snippet_files(served) == []
    settle(served, limiting_workers)
    assert set(burst(served)) == {201}


def test_a_setting_nginx_rejects_is_refused_and_the_previous_limit_restored(
    served: Nginx, runtime: Runtime
) -> None:
    executor = limiter(served, runtime)
    request = request_for("rate_limit", "uploads")
    applied = executor.run(request, limit_spec(served), dry_run=False)
    assert executor.verify(request, applied, {}).ok
    settle(served, applied.detail["workers_before"])
    before = {path: path.read_text() for path in snippet_files(served)}

    result = executor.run(
        request, limit_spec(served, key="$no_such_variable"), dry_run=False
    )

    assert applied.outcome is Outcome.SUCCEEDED
    assert result.outcome is Outcome.REFUSED
    assert result.refusal is not None
    assert result.refusal.code == "rate_limit_rejected"
    assert 'unknown "no_such_variable" variable' in result.refusal.message
    assert {path: path.read_text() for path in snippet_files(served)} == before
    assert nginx_test_passes(served)
    assert 429 in burst(served)


def test_a_rejected_first_limit_leaves_no_file_behind(
    own_nginx: Nginx, runtime: Runtime
) -> None:
    workers = own_nginx.worker_pids()

    result = limiter(own_nginx, runtime).run(
        request_for("rate_limit", "uploads"),
        limit_spec(own_nginx, zone_size="1k"),
        dry_run=False,
    )

    assert result.refusal is not None
    assert result.refusal.code == "rate_limit_rejected"
    assert "too small" in result.refusal.message
    assert snippet_files(own_nginx) == []
    assert own_nginx.worker_pids() == workers
    assert nginx_test_passes(own_nginx)


def test_snippets_nginx_does_not_include_are_refused_and_removed(
    own_nginx: Nginx, runtime: Runtime, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "not-included"
    for sub in ("http.d", "server.d"):
        (elsewhere / sub).mkdir(parents=True)
    spec = limit_spec(own_nginx, snippet_dir=str(elsewhere))

    result = limiter(own_nginx, runtime).run(
        request_for("rate_limit", "uploads"), spec, dry_run=False
    )

    assert result.refusal is not None
    assert result.refusal.code == "snippet_not_included"
    assert sorted(elsewhere.rglob("*")) == [
        elsewhere / "http.d",
        elsewhere / "server.d",
    ]
    assert "reload" not in [step.argv[-1] for step in result.steps]


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        ({"snippet_dir": ""}, "not_configured"),
        ({"snippet_dir": "relative/conf"}, "not_configured"),
        ({"locations": ["/upload; deny all"]}, "invalid_settings"),
        ({"rate": "10r/s; evil"}, "invalid_settings"),
        ({"key": "$remote_addr}"}, "invalid_settings"),
        ({"zones": "typo"}, "invalid_settings"),
    ],
)
def test_unusable_settings_are_refused_before_anything_is_written(
    own_nginx: Nginx, runtime: Runtime, settings: dict[str, Any], code: str
) -> None:
    result = limiter(own_nginx, runtime).run(
        request_for("rate_limit", "uploads"),
        limit_spec(own_nginx, **settings),
        dry_run=False,
    )

    assert result.refusal is not None
    assert result.refusal.code == code
    assert result.steps == ()
    assert snippet_files(own_nginx) == []


def test_dry_run_shows_the_snippets_and_writes_nothing(
    own_nginx: Nginx, runtime: Runtime
) -> None:
    workers = own_nginx.worker_pids()

    result = limiter(own_nginx, runtime).run(
        request_for("rate_limit", "uploads"), limit_spec(own_nginx), dry_run=True
    )

    assert result.outcome is Outcome.DRY_RUN
    written = result.detail["snippets"]
    assert any("limit_req_zone" in text for text in written.values())
    assert snippet_files(own_nginx) == []
    assert own_nginx.worker_pids() == workers


def test_undo_touches_only_this_actions_own_files(
    own_nginx: Nginx, runtime: Runtime, tmp_path: Path
) -> None:
    bystander = tmp_path / "keep.conf"
    bystander.write_text("keep me\n")

    undone = limiter(own_nginx, runtime).undo(
        request_for("rate_limit", "uploads"),
        limit_spec(own_nginx),
        {"files": [str(bystander)]},
    )

    assert undone.outcome is Outcome.FAILED
    assert bystander.read_text() == "keep me\n"


def test_undo_when_the_snippets_are_already_gone_changes_nothing(
    own_nginx: Nginx, runtime: Runtime
) -> None:
    executor = limiter(own_nginx, runtime)
    spec = limit_spec(own_nginx)
    applied = executor.run(request_for("rate_limit", "uploads"), spec, dry_run=True)
    files = list(applied.detail["snippets"])
    workers = own_nginx.worker_pids()

    undone = executor.undo(request_for("rate_limit", "uploads"), spec, {"files": files})

    assert undone.outcome is Outcome.SUCCEEDED
    assert "already removed" in undone.message
    assert undone.steps == ()
    assert own_nginx.worker_pids() == workers
