"""nginx itself: master alive, workers, ``nginx -t`` verdict, ``stub_status``.

The master is found through its pid file (the ``pid`` directive of the
configuration, or ``nginx_pid_file``) and checked with psutil, so a stale
pid file does not pass for a running server. ``nginx -t`` runs through the
injected command runner; it prints to stderr, and a ``[warn]`` still passes
(exit status 0). When it fails only for lack of permission (the service does
not run as root) the verdict is unknown, not a broken configuration. The
``stub_status`` page is fetched over HTTP with httpx, without proxies.
Each part that cannot be observed leaves its facts null and adds a sentence
to ``error``; the section is unavailable only when nothing could be seen.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from engine.facts.errors import CollectorError
from engine.runtime import CommandRunner

log = logging.getLogger("engine.facts.nginx")

DEFAULT_PID_FILE = Path("/run/nginx.pid")
MAX_MESSAGES = 64
_PID_DIRECTIVE = re.compile(r"^[ \t]*pid[ \t]+([^;#\s]+)[ \t]*;", re.MULTILINE)
_STUB = re.compile(
    r"Active connections:\s*(\d+).*?\n\s*(\d+)\s+(\d+)\s+(\d+).*?"
    r"Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class StubStatus:
    active: int
    accepts: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int


def parse_stub_status(text: str) -> StubStatus | None:
    match = _STUB.search(text)
    if match is None:
        return None
    return StubStatus(*(int(group) for group in match.groups()))


@dataclass(frozen=True, slots=True)
class ConfigVerdict:
    ok: bool | None  # None: the test could not say (could not run, no permission)
    messages: tuple[str, ...]


def config_verdict(exit_status: int | None, stderr: str) -> ConfigVerdict:
    """Read ``nginx -t``: exit status 0 passes, warnings or not."""
    messages = tuple(
        line.removeprefix("nginx: ").strip()[:256]
        for line in stderr.splitlines()
        if line.strip()
    )[:MAX_MESSAGES]
    if exit_status is None:
        return ConfigVerdict(None, messages)
    if exit_status != 0 and "Permission denied" in stderr:
        return ConfigVerdict(None, messages)
    return ConfigVerdict(exit_status == 0, messages)


def pid_file_of(conf: Path | None, prefix: Path | None = None) -> Path:
    """The ``pid`` directive of the main configuration file.

    A relative path is nginx's prefix's (``-p``), as nginx itself reads it.
    """
    if conf is not None:
        try:
            found = _PID_DIRECTIVE.search(conf.read_text(errors="replace"))
        except OSError:
            found = None
        if found:
            path = Path(found[1])
            return prefix / path if prefix is not None else path
    return DEFAULT_PID_FILE


@dataclass
class _Facts:
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class NginxCollector:
    name: str = "nginx"
    sections: tuple[str, ...] = ("nginx",)

    def __init__(
        self,
        commands: CommandRunner,
        *,
        nginx_bin: str = "nginx",
        nginx_conf: Path | None = None,
        nginx_prefix: Path | None = None,
        pid_file: Path | None = None,
        status_url: str = "http://127.0.0.1/nginx_status",
        timeout_s: float = 3.0,
    ) -> None:
        self.commands = commands
        self.nginx_bin = nginx_bin
        self.nginx_conf = nginx_conf
        self.nginx_prefix = nginx_prefix
        self.pid_file = pid_file
        self.status_url = status_url
        self.timeout_s = timeout_s
        self._client = httpx.Client(trust_env=False, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        facts = _Facts()
        self._master(facts)
        self._config_test(facts)
        self._stub_status(facts)
        if not facts.values.get("running") and len(facts.problems) >= 2:
            raise CollectorError("; ".join(facts.problems))
        log.debug("nginx.collected", extra={"problems": len(facts.problems)})
        return {
            "nginx": {
                "available": True,
                "error": "; ".join(facts.problems) or None,
                **facts.values,
            }
        }

    def _master(self, facts: _Facts) -> None:
        pid_file = self.pid_file or pid_file_of(self.nginx_conf, self.nginx_prefix)
        master = _live_master(pid_file)
        facts.values["running"] = master is not None
        facts.values["workers"] = _workers(master) if master else 0

    def _config_test(self, facts: _Facts) -> None:
        # The same -p and -c the actions use: relative paths in the
        # configuration (logs, pid, temp folders) are the prefix's.
        argv = [self.nginx_bin]
        if self.nginx_prefix is not None:
            argv += ["-p", str(self.nginx_prefix)]
        if self.nginx_conf is not None:
            argv += ["-c", str(self.nginx_conf)]
        argv.append("-t")
        done = self.commands.run(argv, timeout_s=self.timeout_s)
        verdict = config_verdict(done.exit_status, done.stderr)
        facts.values["config_ok"] = verdict.ok
        facts.values["config_messages"] = list(verdict.messages)
        if verdict.ok is None:
            facts.problems.append(
                f"nginx -t gave no verdict ({done.error or 'permission denied'})"
            )

    def _stub_status(self, facts: _Facts) -> None:
        status = self._fetch_stub_status(facts)
        facts.values["connections_active"] = status.active if status else None
        facts.values["connections_waiting"] = status.waiting if status else None
        facts.values["requests_total"] = status.requests if status else None

    def _fetch_stub_status(self, facts: _Facts) -> StubStatus | None:
        try:
            response = self._client.get(self.status_url)
        except httpx.HTTPError as exc:
            facts.problems.append(f"stub_status at {self.status_url}: {exc}")
            return None
        status = parse_stub_status(response.text) if response.is_success else None
        if status is None:
            facts.problems.append(
                f"stub_status at {self.status_url} answered {response.status_code} "
                "without stub_status counters; check INCIDENT_POLICY_NGINX_STATUS_URL"
            )
        return status


def _live_master(pid_file: Path) -> psutil.Process | None:
    try:
        pid = int(pid_file.read_text().strip())
        master = psutil.Process(pid)
        name = master.name()
    except (OSError, ValueError, psutil.Error):
        return None
    # A pid file left behind can name a process that is no longer nginx.
    return master if "nginx" in name else None


def _workers(master: psutil.Process) -> int | None:
    try:
        children = master.children()
    except psutil.Error:
        return None
    count = 0
    for child in children:
        try:
            count += "worker process" in " ".join(child.cmdline())
        except psutil.Error:
            continue
    return count
