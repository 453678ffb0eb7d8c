"""The private nginx and PM2 the suite drives really run."""

from __future__ import annotations

from tests.support.realhost import Nginx, Pm2, free_port


def test_private_nginx_serves_stub_status(nginx: Nginx) -> None:
    assert nginx.get("/nginx_status") == 200
    assert nginx.worker_pids()


def test_private_pm2_runs_an_app_behind_nginx(pm2: Pm2, nginx: Nginx) -> None:
    pm2.start_app("web-probe", "web.js", env={"PORT": str(free_port())})
    try:
        proc = pm2.wait_for("web-probe", "online")
        assert proc["pid"] > 0
    finally:
        pm2.delete("web-probe")
