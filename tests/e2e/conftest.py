"""End-to-end fixtures: the web app behind nginx, per-test apps, real hosts.

The whole module shares the session's one nginx and one PM2 daemon. The
``web`` app listens on nginx's ``app`` upstream for the whole session, so
``/`` and ``/upload`` answer through nginx; every case starts its own apps
under unique names (``apps``) and deletes them afterwards. ``real_host``
builds a ``RealHost`` in the test's folder on a copy of a SQLite store
migrated once per session.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.store.db import upgrade
from tests.e2e.host import HostPlan, RealHost, poll
from tests.support.databases import sqlite_url
from tests.support.realhost import Nginx, Pm2


@dataclass
class Apps:
    """PM2 apps a test starts, each under a unique name, deleted at the end."""

    pm2: Pm2
    names: list[str] = field(default_factory=list)

    def start(
        self,
        role: str,
        script: str,
        *,
        env: Mapping[str, str] | None = None,
        status: str = "online",
    ) -> str:
        name = f"e2e-{role}-{secrets.token_hex(3)}"
        self.names.append(name)
        self.pm2.start_app(name, script, env=env)
        if status:
            self.pm2.wait_for(name, status, timeout=30)
        return name

    def pid(self, name: str) -> int:
        return int(self._listed(name)["pid"])

    def status(self, name: str) -> str:
        found = self.pm2.process(name)
        return str(found["pm2_env"]["status"]) if found else "absent"

    def restarts(self, name: str) -> int:
        return int(self._listed(name)["pm2_env"]["restart_time"])

    def memory_bytes(self, name: str) -> int:
        return int(self._listed(name)["monit"]["memory"])

    def _listed(self, name: str) -> dict[str, Any]:
        found = self.pm2.process(name)
        assert found is not None, f"PM2 does not list {name}"
        return found

    def delete_all(self) -> None:
        for name in self.names:
            self.pm2.delete(name)


@pytest.fixture(scope="session")
def web(nginx: Nginx, pm2: Pm2) -> Iterator[str]:
    """The app nginx proxies ``/`` to, for the whole session."""
    apps = Apps(pm2)
    name = apps.start("web", "web.js", env={"PORT": str(nginx.app_port)})
    try:
        poll(
            lambda: nginx.get("/health"),
            lambda status: status == 200,
            timeout_s=15,
            what="nginx to serve /health from the web app",
        )
        yield name
    finally:
        apps.delete_all()


@pytest.fixture
def apps(pm2: Pm2) -> Iterator[Apps]:
    started = Apps(pm2)
    try:
        yield started
    finally:
        started.delete_all()


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e-store")
    upgrade(sqlite_url(folder))
    return folder / "store.sqlite3"


@pytest.fixture
def real_host(
    nginx: Nginx, pm2: Pm2, web: str, tmp_path: Path, store_template: Path
) -> Iterator[Callable[..., RealHost]]:
    """Build the test's ``RealHost`` with ``real_host(jobs=[...], ...)``."""
    built: list[RealHost] = []

    def build(**plan: Any) -> RealHost:
        store = tmp_path / "store.sqlite3"
        shutil.copyfile(store_template, store)
        host = RealHost.build(
            nginx, pm2, tmp_path, f"sqlite:///{store}", HostPlan(**plan)
        )
        built.append(host)
        return host

    try:
        yield build
    finally:
        for host in built:
            host.close()
