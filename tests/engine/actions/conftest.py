"""Fixtures for the executor tests: real PM2 apps, a private nginx each.

Apps get unique names and are deleted after their test, so the session PM2
daemon stays clean for other tests. ``own_nginx`` is an nginx instance of
the test's own (its own prefix, loopback port and upstream port) for tests
that break or rewrite the configuration; the session ``nginx`` is only
reloaded, never changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.runtime import Runtime
from engine.settings import Settings
from tests.support.realhost import Nginx, Pm2

StartApp = Callable[..., str]


@pytest.fixture
def runtime() -> Runtime:
    return Runtime.system()


@pytest.fixture
def pm2_settings(pm2: Pm2, tmp_path: Path) -> Settings:
    return Settings(pm2_bin=pm2.binary, pm2_home=pm2.home, data_dir=tmp_path)


@pytest.fixture
def start_app(pm2: Pm2) -> Iterator[StartApp]:
    """Start a fixture app under a unique name; deleted after the test."""
    names: list[str] = []

    def start(script: str, *, prefix: str = "app", **kwargs: object) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        pm2.start_app(name, script, **kwargs)  # type: ignore[arg-type]
        return name

    yield start
    for name in names:
        pm2.delete(name)


def nginx_settings(server: Nginx, **extra: object) -> Settings:
    return Settings(
        nginx_bin=server.binary,
        nginx_prefix=server.prefix,
        nginx_conf=server.conf,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def own_nginx(nginx_bin: str, tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(nginx_bin, tmp_path / "nginx")
    server.start()
    good = server.conf.read_text()
    try:
        yield server
    finally:
        # `nginx -s quit` reads the configuration to find the master: a test
        # that left it broken would otherwise leave the workers behind.
        server.conf.write_text(good)
        for snippet in server.prefix.glob("conf/*.d/incident-policy-*.conf"):
            snippet.unlink()
        server.stop()
