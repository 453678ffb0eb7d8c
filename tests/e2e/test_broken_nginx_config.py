"""A broken nginx config on disk: the reload is refused, old workers serve on."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.host import RealHost, snapshot_of, stabilizing
from tests.support.realhost import Nginx

BROKEN = "proxy_pass_header_x on;\n"


@pytest.fixture
def broken_conf(nginx: Nginx) -> Iterator[Path]:
    """A server snippet nginx -t rejects, removed whatever the test does."""
    path = nginx.prefix / "conf" / "server.d" / f"e2e-{secrets.token_hex(3)}.conf"
    path.write_text(BROKEN)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def test_broken_nginx_config_refuses_the_reload_and_keeps_old_workers_serving(
    real_host: Callable[..., RealHost], nginx: Nginx, broken_conf: Path
) -> None:
    host = real_host()
    host.deployed("nginx", "cfg-42", "cfg-41", kind="config", minutes_ago=1)
    workers = nginx.worker_pids()

    opened = host.post(
        kind="health_check_failure",
        source="blackbox",
        name="FrontPageDown",
        severity="critical",
        labels={"service": "nginx", "check": "front-page"},
    )
    host.drain()

    view = host.view(opened.incident_id)
    assert view.incident.title == "Health check failed: front-page"
    seen = snapshot_of(view, "initial")["nginx"]
    assert (seen["running"], seen["config_ok"]) == (True, False)
    assert view.incident.type == "bad_deploy"

    [reload] = stabilizing(view)
    assert (reload.action, reload.target, reload.rule_id) == (
        "nginx_reload",
        "nginx",
        "reload-stalled-nginx",
    )
    assert (reload.status, reload.refusal_code) == ("refused", "nginx_config_invalid")
    problem = f'unknown directive "proxy_pass_header_x" in {broken_conf}:1'
    refusal = reload.refusal_message or ""
    assert problem in refusal and f"Fix line 1 of {broken_conf}" in refusal
    assert reload.command == [
        [nginx.binary, "-p", str(nginx.prefix), "-c", str(nginx.conf), "-t"]
    ]
    assert reload.exit_status == 1

    assert nginx.worker_pids() == workers
    assert nginx.get("/health") == 200
    assert [s.purpose for s in view.snapshots] == ["initial"]
    rollback = next(r for r in view.recommendations if r.key == "rollback-last-deploy")
    assert rollback.text == "Roll back nginx to cfg-41"
    assert view.incident.status == "awaiting_approval"
