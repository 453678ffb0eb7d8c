"""Session fixtures: the real programs the suite drives.

Tests that need nginx, PM2 or PostgreSQL skip with the reason when the
program or server is absent. ``.ci/run`` installs and starts all three and
sets ``INCIDENT_POLICY_REQUIRE_ALL=1``, which turns each such skip into a
failure, so in CI nothing is skipped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realhost import Nginx, Pm2, program

REQUIRE_ALL = os.environ.get("INCIDENT_POLICY_REQUIRE_ALL") == "1"


def need(what: str, reason: str) -> None:
    """Skip with ``reason``, or fail when CI says everything must run."""
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    found = program("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if not found:
        need("nginx", "nginx is not installed (apt-get install nginx-light)")
    return str(found)


@pytest.fixture(scope="session")
def pm2_bin() -> str:
    found = program("pm2")
    if not found:
        need("pm2", "pm2 is not installed (npm install -g pm2)")
    return str(found)


@pytest.fixture(scope="session")
def nginx(nginx_bin: str) -> Iterator[Nginx]:
    """One private nginx for the whole session."""
    with tempfile.TemporaryDirectory(prefix="ip-nginx-") as prefix:
        server = Nginx(nginx_bin, Path(prefix))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def pm2(pm2_bin: str) -> Iterator[Pm2]:
    """One private PM2 daemon for the whole session."""
    with tempfile.TemporaryDirectory(prefix="ip-pm2-") as home:
        daemon = Pm2(pm2_bin, Path(home))
        try:
            yield daemon
        finally:
            daemon.kill()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        need(
            "PostgreSQL",
            "TEST_DATABASE_URL is not set (CI uses "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test)",
        )
    return url
