"""An app that grows without bound: it alone is restarted, and comes back."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.conftest import Apps
from tests.e2e.host import (
    PROCESS_RESTART_MB,
    RealHost,
    poll,
    process_in,
    snapshot_of,
    stabilizing,
    verified,
)

MB = 1 << 20


def test_memory_hog_is_restarted_alone_and_verified_with_a_new_pid(
    real_host: Callable[..., RealHost], apps: Apps
) -> None:
    host = real_host()
    calm = apps.start("calm", "healthy.js")
    hog = apps.start("hog", "highmem.js")
    calm_pid, hog_pid = apps.pid(calm), apps.pid(hog)
    poll(
        lambda: apps.memory_bytes(hog),
        lambda rss: rss >= (PROCESS_RESTART_MB + 10) * MB,
        timeout_s=30,
        what=f"{hog} to pass {PROCESS_RESTART_MB} MB",
    )

    raised = host.tick_until("watch-process-memory")
    host.drain()

    view = host.view(raised.incident_id)
    assert view.incident.type == "memory_exhaustion"
    assert process_in(snapshot_of(view, "initial"), hog)["memory_mb"] >= 150
    [restart] = stabilizing(view)
    assert (restart.action, restart.target, restart.status) == (
        "pm2_restart",
        hog,
        "succeeded",
    )
    assert restart.rule_id == "restart-leaking-process"
    pm2 = host.settings.pm2_bin
    assert restart.command == [[pm2, "jlist", "-s"], [pm2, "restart", hog]]
    assert restart.exit_status == 0
    assert verified(restart)["ok"] is True
    assert verified(restart)["message"].startswith(f"{hog} is online with new pid")

    after = process_in(snapshot_of(view, "verify"), hog)
    assert after["status"] == "online" and after["pid"] != hog_pid
    assert apps.status(hog) == "online" and apps.pid(hog) != hog_pid
    assert apps.status(calm) == "online" and apps.pid(calm) == calm_pid
    assert view.incident.status == "monitoring"
