"""PM2's processes from ``pm2 jlist``, with restart rates across snapshots.

``pm2 jlist`` prints a JSON list, sometimes after a banner (when it had to
start the daemon) or warning lines; the parser looks for the first line that
opens a JSON list and decodes from there, so ANSI colours and ``[PM2]``
prefixes before it do not matter. The output holds each process's whole
environment twice, secrets included: parsing keeps only the fields named in
``Pm2Process`` and drops everything else at once, so no environment variable
reaches a snapshot, a log line or the database.

PM2's ``restart_time`` counts restarts since the process was created. The
collector keeps, per process, the counter's samples over the restart window
and reports the increase (``restarts_recent``; a counter that went down was
reset). A process is in a restart loop when PM2 has given up on it
(``errored``), is backing off (``waiting restart``), or restarted at least
``restart_loop`` times in the window. The first snapshot has no history:
``restarts_recent`` is null until a second one.

``pm2 jlist`` starts a daemon when none runs; with ``pm2_home`` set, the
collector checks the daemon's pid file first and reports a stopped daemon
instead of starting one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from engine.facts.deploys import Deploy
from engine.facts.errors import CollectorError
from engine.facts.window import CounterWindow
from engine.runtime import CommandRunner

log = logging.getLogger("engine.facts.pm2")

MB = float(1 << 20)
MAX_LISTED = 256
LOOP_STATUSES = frozenset({"errored", "waiting restart"})
_LIST_START = re.compile(r"^[ \t]*\[[ \t\r\n]*[\{\]]", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Pm2Process:
    """The only fields kept from PM2's description of a process."""

    name: str
    pm_id: int | None
    status: str
    pid: int | None
    memory_bytes: int | None
    cpu_percent: float | None
    restarts: int | None
    unstable_restarts: int | None
    started_at_ms: int | None
    exit_code: int | None
    version: str | None
    memory_limit_bytes: int | None

    @property
    def key(self) -> str:
        return f"{self.name}#{self.pm_id}"


def parse_jlist(output: str) -> list[Pm2Process]:
    """The processes in ``pm2 jlist`` output, banner or not."""
    decoder = json.JSONDecoder()
    for start in _LIST_START.finditer(output):
        try:
            listed, _ = decoder.raw_decode(output, start.start() + start[0].index("["))
        except json.JSONDecodeError:
            continue
        if isinstance(listed, list):
            return [_process(item) for item in listed if isinstance(item, dict)]
    raise CollectorError(
        "pm2 jlist printed no JSON list (" + _excerpt(output) + "); run "
        "`pm2 jlist` as the service's user to see what PM2 says"
    )


def _process(item: Mapping[str, Any]) -> Pm2Process:
    env = _mapping(item.get("pm2_env"))
    monit = _mapping(item.get("monit"))
    pid = _int(item.get("pid"))
    return Pm2Process(
        name=str(item.get("name") or env.get("name") or "?"),
        pm_id=_int(item.get("pm_id", env.get("pm_id"))),
        status=str(env.get("status") or "unknown"),
        pid=pid or None,  # PM2 writes 0 for a process that is not running
        memory_bytes=_int(monit.get("memory")) if pid else None,
        cpu_percent=_float(monit.get("cpu")) if pid else None,
        restarts=_int(env.get("restart_time")),
        unstable_restarts=_int(env.get("unstable_restarts")),
        started_at_ms=_int(env.get("pm_uptime")),
        exit_code=_int(env.get("exit_code")),
        version=_version(env),
        memory_limit_bytes=_int(env.get("max_memory_restart")),
    )


def _version(env: Mapping[str, Any]) -> str | None:
    # A git revision beats package.json's version; the repository URL is not
    # kept, it can carry credentials.
    versioning = env.get("versioning")
    if isinstance(versioning, dict) and isinstance(versioning.get("revision"), str):
        return str(versioning["revision"])[:64]
    version = env.get("version")
    return str(version)[:64] if version not in (None, "", "N/A") else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _excerpt(output: str) -> str:
    text = " ".join(output.split())
    return repr(text[:160]) if text else "empty output"


class Pm2Collector:
    name: str = "pm2"
    sections: tuple[str, ...] = ("pm2",)

    def __init__(
        self,
        commands: CommandRunner,
        *,
        pm2_bin: str = "pm2",
        pm2_home: Path | None = None,
        timeout_s: float = 3.0,
        restart_loop: int = 5,
        restart_window_minutes: float = 10.0,
    ) -> None:
        self.commands = commands
        self.pm2_bin = pm2_bin
        self.pm2_home = pm2_home
        self.timeout_s = timeout_s
        self.restart_loop = restart_loop
        self.window_s = restart_window_minutes * 60.0
        self._restarts: dict[str, CounterWindow] = {}
        self._versions: dict[str, set[str]] = {}
        self._deploys: list[Deploy] = []

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        processes = parse_jlist(self._run_jlist())
        at = now.timestamp()
        rows = [self._row(p, at) for p in processes]
        self._forget_gone(at)
        self._notice_versions(processes, now)
        log.debug("pm2.collected", extra={"processes": len(rows)})
        return {"pm2": _summary(rows)}

    def deploys(self) -> Iterable[Deploy]:
        """Version changes seen between snapshots, for the deploys collector."""
        return list(self._deploys)

    def _run_jlist(self) -> str:
        env = {"PM2_HOME": str(self.pm2_home)} if self.pm2_home else None
        self._require_daemon()
        done = self.commands.run(
            [self.pm2_bin, "jlist"], timeout_s=self.timeout_s, env=env
        )
        if not done.ok:
            reason = done.error or f"exit status {done.exit_status}"
            raise CollectorError(
                f"pm2 jlist failed ({reason}: {_excerpt(done.stderr)}); check "
                "INCIDENT_POLICY_PM2_BIN and INCIDENT_POLICY_PM2_HOME"
            )
        return done.stdout

    def _require_daemon(self) -> None:
        if self.pm2_home is None:
            return
        pid_file = self.pm2_home / "pm2.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if not pid or not psutil.pid_exists(pid):
            raise CollectorError(
                f"the PM2 daemon is not running (no live pid in {pid_file}); "
                "pm2 jlist was not run because it would start an empty daemon. "
                "Start PM2 (pm2 resurrect) or fix INCIDENT_POLICY_PM2_HOME"
            )

    def _row(self, proc: Pm2Process, at: float) -> dict[str, Any]:
        recent = self._restarts_recent(proc, at)
        looping = proc.status in LOOP_STATUSES or (
            recent is not None and recent >= self.restart_loop
        )
        return {
            "name": proc.name,
            "pm_id": proc.pm_id,
            "status": proc.status,
            "pid": proc.pid,
            "memory_mb": _mb(proc.memory_bytes),
            "cpu_percent": proc.cpu_percent,
            "restarts": proc.restarts,
            "unstable_restarts": proc.unstable_restarts,
            "restarts_recent": recent,
            "restart_loop": looping,
            "uptime_s": _uptime_s(proc, at),
            "exit_code": proc.exit_code,
            "version": proc.version,
            "memory_limit_mb": _mb(proc.memory_limit_bytes),
        }

    def _restarts_recent(self, proc: Pm2Process, at: float) -> int | None:
        if proc.restarts is None:
            return None
        window = self._restarts.setdefault(proc.key, CounterWindow(self.window_s))
        window.add(at, proc.restarts)
        return window.increase()

    def _forget_gone(self, at: float) -> None:
        for key, window in list(self._restarts.items()):
            if window.last_at is not None and window.last_at < at - self.window_s:
                del self._restarts[key]

    def _notice_versions(self, processes: Sequence[Pm2Process], now: datetime) -> None:
        current: dict[str, set[str]] = {}
        for proc in processes:
            if proc.version:
                current.setdefault(proc.name, set()).add(proc.version)
        for name, versions in current.items():
            before = self._versions.get(name)
            new = versions - before if before else set()
            if before and new:
                self._deploys.append(
                    Deploy(
                        at=now,
                        app=name,
                        version=sorted(new)[0],
                        previous_version=sorted(before)[0],
                        kind="code",
                        source="pm2",
                    )
                )
        self._versions.update(current)
        del self._deploys[:-20]


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


def _uptime_s(proc: Pm2Process, at: float) -> float | None:
    if proc.status != "online" or not proc.started_at_ms:
        return None
    return round(max(at - proc.started_at_ms / 1000.0, 0.0), 1)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    recent = [r["restarts_recent"] for r in rows if r["restarts_recent"] is not None]
    memory = [r["memory_mb"] for r in rows if r["memory_mb"] is not None]
    statuses = [r["status"] for r in rows]
    cut = len(rows) > MAX_LISTED
    return {
        "available": True,
        "error": f"listed the first {MAX_LISTED} of {len(rows)} processes"
        if cut
        else None,
        "total": len(rows),
        "online": statuses.count("online"),
        "errored": statuses.count("errored"),
        "stopped": statuses.count("stopped"),
        "restarts_recent": sum(recent) if recent else None,
        "restart_loops": sum(1 for r in rows if r["restart_loop"]),
        "max_memory_mb": max(memory, default=None),
        "processes": rows[:MAX_LISTED],
    }
