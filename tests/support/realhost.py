"""A private nginx and a private PM2 daemon for tests that drive the real tools.

Both live under a temporary directory of their own: nginx with its own
prefix, configuration, logs and loopback port; PM2 with its own ``PM2_HOME``,
so the tests never touch a daemon or server the machine already runs. The
session fixtures in ``tests/conftest.py`` start one of each and reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPS = Path(__file__).resolve().parent.parent / "fixtures" / "pm2" / "apps"

NGINX_CONF = """\
{user}worker_processes 1;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format timed '$remote_addr - $remote_user [$time_local] "$request" '
                     '$status $body_bytes_sent "$http_referer" "$http_user_agent" '
                     'rt=$request_time uct="$upstream_connect_time" '
                     'urt="$upstream_response_time" us="$upstream_status"';
    access_log {prefix}/logs/access.log timed;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {prefix}/conf/http.d/*.conf;
    upstream app {{ server 127.0.0.1:{app_port}; }}
    upstream down {{ server 127.0.0.1:{down_port}; }}
    server {{
        listen 127.0.0.1:{port};
        server_name app.test;
        client_max_body_size 10m;
        location = /nginx_status {{ stub_status; allow 127.0.0.1; deny all; }}
        include {prefix}/conf/server.d/*.conf;
        location /down/ {{ proxy_pass http://down; proxy_connect_timeout 1s; }}
        location / {{ proxy_pass http://app; proxy_connect_timeout 1s; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def program(name: str) -> str | None:
    return shutil.which(name)


@dataclass
class Nginx:
    """nginx under its own prefix, listening on a loopback port."""

    binary: str
    prefix: Path
    port: int = field(default_factory=free_port)
    app_port: int = field(default_factory=free_port)
    down_port: int = field(default_factory=free_port)

    @property
    def conf(self) -> Path:
        return self.prefix / "conf" / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/nginx_status"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        for sub in ("conf/http.d", "conf/server.d", "logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        user = "user root root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            NGINX_CONF.format(
                user=user,
                prefix=self.prefix,
                port=self.port,
                app_port=self.app_port,
                down_port=self.down_port,
            )
        )

    def argv(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), *extra]

    def start(self) -> None:
        self.write_config()
        subprocess.run(self.argv(), check=True, capture_output=True, timeout=10)
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.status_url, timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not answer on {self.status_url}")

    def master_pid(self) -> int | None:
        try:
            return int((self.prefix / "logs" / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def worker_pids(self) -> list[int]:
        master = self.master_pid()
        if master is None:
            return []
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(master)],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        # Signal the master we started directly: `nginx -s quit` would parse
        # the config first and fail if a test left a broken one behind.
        workers = self.worker_pids()
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        for leftover in [pid, *workers]:
            if _alive(leftover):
                os.kill(leftover, signal.SIGKILL)

    def get(self, path: str, *, timeout: float = 5.0) -> int:
        return request(self.base_url + path, timeout=timeout)

    def post(self, path: str, body: bytes, *, timeout: float = 5.0) -> int:
        return request(self.base_url + path, data=body, timeout=timeout)


def request(url: str, *, data: bytes | None = None, timeout: float = 5.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with opener.open(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Pm2:
    """A PM2 daemon of our own: ``PM2_HOME`` under a temporary directory."""

    binary: str
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PM2_HOME": str(self.home)}

    def run(
        self, *args: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_app(
        self,
        name: str,
        script: str,
        *,
        env: Mapping[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        app_env = {**self.env, **(env or {})}
        done = subprocess.run(
            [self.binary, "start", str(APPS / script), "--name", name, *extra],
            env=app_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pm2 start {name} failed: {done.stderr[-2000:]}")

    def delete(self, name: str) -> None:
        self.run("delete", name)

    def jlist(self) -> list[dict[str, Any]]:
        out = self.run("jlist", "-s").stdout
        start = out.find("[")
        return list(json.loads(out[start:])) if start >= 0 else []

    def process(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.jlist() if p.get("name") == name), None)

    def wait_for(self, name: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        proc: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            proc = self.process(name)
            if proc and proc.get("pm2_env", {}).get("status") == status:
                return proc
            time.sleep(0.2)
        raise TimeoutError(f"pm2 process {name} not {status} in {timeout} s: {proc}")

    def kill(self) -> None:
        self.run("kill", timeout=30)
