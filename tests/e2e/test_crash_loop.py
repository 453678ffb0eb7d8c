"""A release that crashes at start: no restart, a rollback recommended."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.conftest import Apps
from tests.e2e.host import RealHost, actions_named, process_in, snapshot_of


def test_crash_loop_after_a_deploy_is_a_bad_deploy_rolled_back_not_restarted(
    real_host: Callable[..., RealHost], apps: Apps
) -> None:
    host = real_host()
    app = apps.start("crash", "crash.js", status="errored")
    host.deployed(app, "2.0.0", "1.9.3", minutes_ago=3)
    restarts = apps.restarts(app)

    raised = host.tick_until("watch-restart-loop")
    host.drain()

    view = host.view(raised.incident_id)
    assert view.incident.type == "bad_deploy"
    assert view.incident.severity == "critical"
    assert view.incident.title == "A PM2 process is in a restart loop"
    seen = process_in(snapshot_of(view, "initial"), app)
    assert (seen["status"], seen["restart_loop"]) == ("errored", True)
    chosen = [
        m.rule_id for m in view.rule_matches if m.stage == "classify" and m.selected
    ]
    assert chosen == ["deploy-then-crash-loop"]

    assert actions_named(view, "pm2_restart") == []
    assert apps.restarts(app) == restarts  # PM2 gave up; nobody restarted it
    recommended = {r.key: r for r in view.recommendations}
    assert recommended["rollback-last-deploy"].text == f"Roll back {app} to 1.9.3"
    assert recommended["rollback-last-deploy"].status == "pending"
    assert "inspect-crash-loop" in recommended
    assert not any(r.action == "pm2_restart" for r in view.recommendations)
    assert view.incident.status == "awaiting_approval"
    brief = view.briefs[-1].content
    assert brief["recommendation"].startswith(f"Roll back {app} to 1.9.3")

    # Still looping: the watcher does not repeat itself before its interval,
    # and the incident stays the one open incident.
    assert host.tick("watch-restart-loop") == []
    assert host.view(raised.incident_id).incident.alert_count == 1
