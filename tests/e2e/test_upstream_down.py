"""An upstream that refuses: 502s are a dependency outage, not our apps' fault."""

from __future__ import annotations

from collections.abc import Callable

from engine.settings import HealthCheck
from tests.e2e.conftest import Apps
from tests.e2e.host import (
    RealHost,
    actions_named,
    poll,
    process_in,
    snapshot_of,
    stabilizing,
    verified,
)
from tests.support.realhost import Nginx

REQUESTS = 30


def test_upstream_down_pauses_jobs_restarts_nothing_and_resumes_on_resolve(
    real_host: Callable[..., RealHost], apps: Apps, nginx: Nginx, web: str
) -> None:
    jobs = apps.start("jobs", "healthy.js")
    host = real_host(jobs=[jobs])
    web_pid = apps.pid(web)

    answers = [nginx.get(f"/down/orders/{n}") for n in range(REQUESTS)]
    assert set(answers) == {502}
    raised = host.tick_until("watch-error-rate")
    host.drain()

    view = host.view(raised.incident_id)
    assert view.incident.type == "dependency_outage"
    seen = snapshot_of(view, "initial")
    assert seen["http"]["status_502"] == REQUESTS
    assert seen["upstream"]["refused"] == REQUESTS
    assert seen["upstream"]["failing"] == [f"127.0.0.1:{nginx.down_port}"]
    partners = next(f for f in seen["http"]["features"] if f["name"] == "partners")
    assert (partners["requests"], partners["error_rate"]) == (REQUESTS, 1.0)
    assert view.impacts[-1].level == "major"

    [pause] = stabilizing(view)
    assert (pause.action, pause.target, pause.status) == (
        "pause_jobs",
        "jobs",
        "succeeded",
    )
    pm2 = host.settings.pm2_bin
    assert pause.command == [[pm2, "jlist", "-s"], [pm2, "stop", jobs]]
    assert verified(pause)["ok"] is True
    assert process_in(snapshot_of(view, "verify"), jobs)["status"] == "stopped"
    assert apps.status(jobs) == "stopped"
    assert actions_named(view, "pm2_restart") == []
    assert apps.status(web) == "online" and apps.pid(web) == web_pid
    keys = {r.key for r in view.recommendations}
    assert "contact-provider" in keys and "pause-background-jobs" not in keys

    host.resolve(raised.incident_id, "partner API down", "dependency")

    resumed = host.view(raised.incident_id)
    [undo] = [a for a in resumed.actions if a.origin == "undo"]
    assert (undo.action, undo.status, undo.undo_of) == (
        "pause_jobs",
        "succeeded",
        pause.id,
    )
    assert [pm2, "start", jobs] in undo.command
    poll(
        lambda: apps.status(jobs), "online".__eq__, timeout_s=10, what=f"{jobs} online"
    )


def test_failing_health_check_is_raised_by_the_watcher_as_a_dependency_outage(
    real_host: Callable[..., RealHost], apps: Apps, nginx: Nginx, web: str
) -> None:
    partner = f"http://127.0.0.1:{nginx.down_port}/health"
    check = HealthCheck(name="partner-api", url=partner, timeout_s=2)
    host = real_host(health_checks=[check])
    web_pid = apps.pid(web)

    raised = host.tick_until("watch-health-checks")
    host.drain()

    view = host.view(raised.incident_id)
    assert view.incident.title == "Health check failed: DependencyDown"
    assert view.incident.severity == "critical"
    assert view.incident.type == "dependency_outage"
    seen = snapshot_of(view, "initial")["dependencies"]
    assert (seen["failing"], seen["failing_names"]) == (1, ["partner-api"])
    assert stabilizing(view) == []  # no request failed yet: nothing to pause
    assert view.incident.status == "awaiting_approval"
    assert "contact-provider" in {r.key for r in view.recommendations}
    assert apps.status(web) == "online" and apps.pid(web) == web_pid
