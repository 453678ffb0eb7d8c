"""The running policy, reloaded without ever running a bad one.

``PolicyHolder`` owns the policy the service evaluates with. ``reload()``
loads and compiles the rules directory; when anything fails (a file that
does not pass ``check``, a rule the engine cannot evaluate, an unexpected
error), the last good policy keeps running, the failure is logged as
``policy.reload_failed`` with every problem's location, and the status
says so. A reload is triggered by the watcher thread when the directory's
content changes (a content hash, so an editor that writes a file twice
causes at most one extra reload, and touching a file none), by SIGHUP
through ``install_sighup``, or by a direct call (the API). ``status`` is
what the API and ``/metrics`` report: the running version, when it was
loaded, and how the last attempt went.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import IncidentPolicyError, Location, PolicyError, Problem
from engine.policy.compiler import compile_policy
from engine.policy.loader import SUFFIXES, PolicySource, load
from engine.policy.policy import Policy
from engine.runtime import Clock, SystemClock

log = logging.getLogger(__name__)

Compile = Callable[[PolicySource], Policy]
Load = Callable[[Path], PolicySource]


@dataclass(frozen=True)
class ReloadStatus:
    """The running policy and how the last reload attempt went."""

    version: str | None = None  # running policy; None until one loaded
    loaded_at: datetime | None = None  # when the running version was loaded
    ok: bool = False  # did the last attempt succeed
    problems: tuple[Problem, ...] = ()  # of the last attempt (warnings if ok)
    attempts: int = 0
    failures: int = 0
    attempted_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "ok": self.ok,
            "problems": [problem.as_dict() for problem in self.problems],
            "attempts": self.attempts,
            "failures": self.failures,
            "attempted_at": (
                self.attempted_at.isoformat() if self.attempted_at else None
            ),
        }


def fingerprint(directory: Path) -> str:
    """A hash of the names and bytes of every rule file in ``directory``."""
    digest = hashlib.sha256()
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES)
    except OSError:
        return ""
    for path in paths:
        try:
            # Never open a FIFO or a device: reading one blocks the watcher.
            content = path.read_bytes() if path.is_file() else b"\0not a file"
        except OSError:
            content = b"\0unreadable"
        digest.update(path.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


class PolicyHolder:
    """The policy in force for one rules directory."""

    def __init__(
        self,
        directory: Path,
        compile: Compile = compile_policy,
        *,
        load: Load = load,
        clock: Clock | None = None,
    ) -> None:
        self.directory = directory
        self._compile = compile
        self._load = load
        self._clock = clock or SystemClock()
        self._policy: Policy | None = None
        self._status = ReloadStatus()
        self._seen = ""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def current(self) -> Policy:
        """The running policy; ``PolicyError`` when none ever loaded."""
        policy = self._policy
        if policy is None:
            raise PolicyError(
                f"no policy is loaded from {self.directory}: the first load "
                "failed; fix the problems `incident-policy rules check` shows",
                code="E120",
                location=Location(str(self.directory)),
            )
        return policy

    @property
    def status(self) -> ReloadStatus:
        return self._status

    def reload(self) -> ReloadStatus:
        """Load and compile the directory; keep the last good policy on failure."""
        with self._lock:
            self._seen = fingerprint(self.directory)
            attempted = self._clock.now()
            try:
                source = self._load(self.directory)
                self._refuse_vanished(source)
                policy = self._compile(source)
            except IncidentPolicyError as exc:
                return self._failed(attempted, tuple(exc.problems))
            except Exception as exc:  # a bug must not stop the service
                log.exception("policy.reload_crashed")
                return self._failed(attempted, (_unexpected(exc, self.directory),))
            return self._installed(attempted, policy, source)

    def _refuse_vanished(self, source: PolicySource) -> None:
        """A rule file the running policy has must not silently disappear.

        Editors and ``git checkout`` remove and rewrite files; a reload in
        between would run a stage on built-in defaults. Restart the service
        to run without a file on purpose.
        """
        if self._policy is None:
            return
        gone = sorted(set(self._policy.source.files) - set(source.files))
        if gone:
            names = ", ".join(self._policy.source.files[stem].name for stem in gone)
            raise PolicyError(
                f"{names} disappeared from {self.directory}; the running policy "
                "stays: put the file back (or restart the service to run "
                "without it)",
                code="E107",
                location=Location(names),
            )

    def _failed(
        self, attempted: datetime, problems: tuple[Problem, ...]
    ) -> ReloadStatus:
        log.warning(
            "policy.reload_failed",
            extra={
                "directory": str(self.directory),
                "running_version": self._status.version,
                "problems": [problem.render() for problem in problems],
            },
        )
        self._status = replace(
            self._status,
            ok=False,
            problems=problems,
            attempts=self._status.attempts + 1,
            failures=self._status.failures + 1,
            attempted_at=attempted,
        )
        return self._status

    def _installed(
        self, attempted: datetime, policy: Policy, source: PolicySource
    ) -> ReloadStatus:
        changed = self._policy is None or self._policy.version != policy.version
        self._policy = policy
        log.info(
            "policy.reloaded" if changed else "policy.unchanged",
            extra={"version": source.short_version, "warnings": len(source.warnings)},
        )
        self._status = ReloadStatus(
            version=policy.version,
            loaded_at=attempted if changed else self._status.loaded_at,
            ok=True,
            problems=source.warnings,
            attempts=self._status.attempts + 1,
            failures=self._status.failures,
            attempted_at=attempted,
        )
        return self._status

    def changed(self) -> bool:
        """Has the directory's content changed since the last attempt?"""
        return fingerprint(self.directory) != self._seen

    def start_watching(self, interval_s: float) -> None:
        """Poll the directory every ``interval_s`` seconds in a daemon thread."""
        if self._watcher is not None:
            return
        self._stop.clear()
        self._watcher = threading.Thread(
            target=self._watch, args=(interval_s,), name="policy-watcher", daemon=True
        )
        self._watcher.start()

    def _watch(self, interval_s: float) -> None:
        while not self._stop.is_set():
            requested = self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            if requested or self.changed():
                self.reload()

    def request_reload(self) -> None:
        """Reload soon, off the caller's thread (safe in a signal handler)."""
        if self._watcher is not None:
            self._wake.set()
            return
        threading.Thread(target=self.reload, name="policy-reload", daemon=True).start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the watcher thread, if any, and wait for it."""
        watcher, self._watcher = self._watcher, None
        self._stop.set()
        self._wake.set()
        if watcher is not None:
            watcher.join(timeout_s)


def _unexpected(error: Exception, directory: Path) -> Problem:
    return Problem(
        "E199",
        f"reloading failed unexpectedly ({type(error).__name__}: {error}); the "
        "running policy stays in force: report this with the rules directory",
        Location(str(directory)),
    )


def install_sighup(holder: PolicyHolder) -> None:
    """Make SIGHUP reload ``holder`` (call from the main thread, as the CLI)."""

    def on_hangup(signum: int, frame: object) -> None:
        holder.request_reload()

    signal.signal(signal.SIGHUP, on_hangup)
