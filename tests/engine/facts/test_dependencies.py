from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from engine.facts.dependencies import DependencyCollector
from engine.settings import HealthCheck
from tests.engine.facts.conftest import assert_valid
from tests.support.realhost import free_port


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        code = {"/ok": 200, "/moved": 302, "/broken": 503}.get(self.path, 200)
        try:
            self.send_response(code)
            self.send_header("Location", "/ok")
            self.end_headers()
            self.wfile.write(b"x")
        except OSError:
            return  # the client gave up first (the timeout case)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_each_check_reports_status_latency_or_reason(server: str) -> None:
    checks = [
        HealthCheck(name="ok", url=f"{server}/ok"),
        HealthCheck(name="moved", url=f"{server}/moved"),
        HealthCheck(name="broken", url=f"{server}/broken"),
        HealthCheck(name="slow", url=f"{server}/slow", timeout_s=0.2),
        HealthCheck(name="closed", url=f"http://127.0.0.1:{free_port()}/"),
    ]
    facts = DependencyCollector(checks).collect(datetime.now(UTC))
    by_name = {c["name"]: c for c in facts["dependencies"]["checks"]}
    assert by_name["ok"]["ok"] and by_name["ok"]["latency_ms"] is not None
    assert by_name["moved"]["ok"] and by_name["moved"]["status"] == 302
    assert not by_name["broken"]["ok"] and by_name["broken"]["status"] == 503
    assert not by_name["slow"]["ok"] and "Timeout" in by_name["slow"]["error"]
    assert not by_name["closed"]["ok"] and by_name["closed"]["status"] is None
    assert facts["dependencies"]["failing_names"] == ["broken", "slow", "closed"]
    assert facts["dependencies"]["failing"] == 3
    assert_valid(facts)


def test_no_checks_configured_is_an_empty_success() -> None:
    facts = DependencyCollector([]).collect(datetime.now(UTC))
    assert facts["dependencies"]["total"] == 0
    assert facts["dependencies"]["checks"] == []
