"""nginx executor: reload only a configuration that ``nginx -t`` accepts.

Every command carries the same ``-p PREFIX -c CONF`` the settings give, so
the test, the dump and the signal all address the one nginx the operator
configured. ``check`` runs ``nginx -t``; on failure the refusal quotes the
``[emerg]`` line and says which file and line to fix, and nothing is
signalled, so the running workers keep serving the old configuration. It
then makes sure a master is alive: its pid file comes from the settings or
from the ``pid`` directive in ``nginx -T`` (whose dump is never recorded:
configurations hold secrets). ``run`` notes the master's worker pids and
sends ``nginx -s reload``; ``verify`` waits for new worker processes under
the same live master, the sign that the master really re-read the
configuration, and for the old workers to begin their graceful shutdown
(until then they may still answer under the previous configuration).
``NginxCli`` is shared with the rate-limit executor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Outcome,
    Refusal,
    Verification,
)
from engine.actions.polling import Poll
from engine.actions.steps import (
    CommandFailed,
    StepRecorder,
    describe_failure,
    render_argv,
    strip_colours,
)
from engine.runtime import Runtime
from engine.settings import Settings

_PID_DIRECTIVE = re.compile(r"^\s*pid\s+([^;\s]+)\s*;", re.MULTILINE)
_COMPILED = re.compile(r"--(prefix|pid-path)=(\S+)")
_LOCATION = re.compile(r" in (\S+):(\d+)$")
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) \d+#\d+: ")


@dataclass(frozen=True, slots=True)
class ConfigTest:
    """What ``nginx -t`` said: passed, its first ``[emerg]`` line, warnings."""

    ok: bool
    problem: str = ""
    warnings: tuple[str, ...] = ()

    def refusal(self, before: str = "") -> Refusal:
        found = _LOCATION.search(self.problem)
        place = (
            f"line {found.group(2)} of {found.group(1)}"
            if found
            else "the problem quoted"
        )
        return Refusal(
            code="nginx_config_invalid",
            message=f"{before}`nginx -t` failed: {self.problem}",
            recommendation=f"Fix {place}, run `nginx -t` until it passes, then "
            "reload; nginx keeps serving the previous configuration meanwhile.",
        )


def read_config_test(stderr: str, exit_status: int | None) -> ConfigTest:
    lines = [_unprefix(line) for line in strip_colours(stderr).splitlines()]
    warnings = tuple(line for line in lines if "[warn]" in line)
    if exit_status == 0:
        return ConfigTest(True, warnings=warnings)
    emerg = [line for line in lines if "[emerg]" in line or "[alert]" in line]
    problem = (emerg or [line for line in lines if line] or ["no message"])[0]
    return ConfigTest(False, problem, warnings)


def _unprefix(line: str) -> str:
    # nginx writes "nginx: [emerg] ..." before it opened its error log and
    # "2026/12/04 17:18:12 [emerg] 14444#14444: ..." after: quote both alike.
    return _LOG_PREFIX.sub(r"\1 ", line.strip()).removeprefix("nginx: ")


def nginx_argv(settings: Settings, *extra: str) -> tuple[str, ...]:
    """nginx with the configured ``-p PREFIX -c CONF``, then ``extra``."""
    where: list[str] = []
    if settings.nginx_prefix is not None:
        where += ["-p", str(settings.nginx_prefix)]
    if settings.nginx_conf is not None:
        where += ["-c", str(settings.nginx_conf)]
    return (settings.nginx_bin, *where, *extra)


class NginxCli:
    """nginx's command line for the configured prefix and configuration."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self._settings = settings
        self._binary = settings.nginx_bin
        self._prefix = settings.nginx_prefix
        self._pid_file = settings.nginx_pid_file
        self._runtime = runtime

    def argv(self, *extra: str) -> tuple[str, ...]:
        return nginx_argv(self._settings, *extra)

    def recorder(self, request: ActionRequest) -> StepRecorder:
        return StepRecorder(self._runtime, request.action, request.target)

    def test(self, recorder: StepRecorder, timeout_s: float) -> ConfigTest:
        done = recorder.run(self.argv("-t"), timeout_s=timeout_s)
        if done.exit_status is None:
            raise CommandFailed(describe_failure(done))
        return read_config_test(done.stderr, done.exit_status)

    def dump(self, recorder: StepRecorder, timeout_s: float) -> tuple[ConfigTest, str]:
        """``nginx -T``: the test verdict and every file it read, in full."""
        done = recorder.run(self.argv("-T"), timeout_s=timeout_s, keep_stdout=False)
        if done.exit_status is None:
            raise CommandFailed(describe_failure(done))
        return read_config_test(done.stderr, done.exit_status), done.stdout

    def reload(self, recorder: StepRecorder, timeout_s: float) -> str | None:
        """Send the reload signal; the failure sentence, or None."""
        done = recorder.run(self.argv("-s", "reload"), timeout_s=timeout_s)
        return None if done.ok else describe_failure(done)

    def pid_file(self, recorder: StepRecorder, timeout_s: float) -> Path:
        if self._pid_file is not None:
            return self._pid_file
        _, config = self.dump(recorder, timeout_s)
        directive = _PID_DIRECTIVE.search(config)
        if directive and Path(directive.group(1)).is_absolute():
            return Path(directive.group(1))
        compiled = self._compiled(recorder, timeout_s)
        named = directive.group(1) if directive else compiled.get("pid-path", "")
        path = Path(named or "logs/nginx.pid")
        prefix = self._prefix or Path(compiled.get("prefix", "/usr/local/nginx"))
        return path if path.is_absolute() else prefix / path

    def _compiled(self, recorder: StepRecorder, timeout_s: float) -> dict[str, str]:
        done = recorder.run((self._binary, "-V"), timeout_s=timeout_s)
        return dict(_COMPILED.findall(done.stderr))


def master_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and psutil.pid_exists(pid) else None


def worker_pids(master: int) -> list[int]:
    try:
        return sorted(child.pid for child in psutil.Process(master).children())
    except psutil.Error:
        return []


def not_running(pid_file: Path) -> Refusal:
    return Refusal(
        code="nginx_not_running",
        message=f"nginx is not running (no live master process in {pid_file}); "
        "a reload needs a running master.",
        recommendation="Start nginx (for example `systemctl start nginx`) "
        "instead of reloading it, after `nginx -t` passes.",
    )


def reload_state(pid_file: Path) -> dict[str, Any]:
    """What verification compares against: the master and its workers."""
    master = master_pid(pid_file)
    workers = worker_pids(master) if master else []
    return {"pid_file": str(pid_file), "master_pid": master, "workers_before": workers}


def verify_reload(poll: Poll, detail: Mapping[str, Any]) -> Verification:
    """New workers under the same live master, the old ones retired.

    A reload is graceful: the master starts new workers, then tells the old
    ones to stop accepting and to finish what they serve. Until an old worker
    has done so it may still answer a new connection under the previous
    configuration, so the reload counts only once each old worker has exited
    or calls itself "shutting down".
    """
    pid_file = Path(str(detail.get("pid_file", "")))
    before = set(detail.get("workers_before", ()))
    expected = detail.get("master_pid")
    seen = poll.until(
        lambda: _workers_now(pid_file),
        lambda now: now[0] == expected and _reloaded(now[1], before),
    )
    master, workers = seen
    facts = {"master_pid": master, "workers_before": sorted(before), "workers": workers}
    if master is None or master != expected:
        return Verification(False, f"The nginx master {expected} is gone.", facts)
    new = sorted(set(workers) - before)
    if not new:
        return Verification(
            False,
            f"No new nginx worker appeared under master {master}: it did not "
            "take the new configuration; see the nginx error log.",
            facts,
        )
    lingering = _accepting(set(workers) & before)
    if lingering:
        return Verification(
            False,
            f"nginx master {master} started new workers {new}, but the old "
            f"workers {lingering} still accept connections under the previous "
            "configuration; see the nginx error log.",
            facts,
        )
    return Verification(
        True, f"nginx master {master} started new workers {new}.", facts
    )


def _reloaded(workers: list[int], before: set[int]) -> bool:
    current = set(workers)
    return bool(current - before) and not _accepting(current & before)


def _accepting(old_workers: set[int]) -> list[int]:
    """The old workers that have not begun their graceful shutdown."""
    return sorted(pid for pid in old_workers if not _retiring(pid))


def _retiring(pid: int) -> bool:
    try:
        title = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        # Gone, or not ours to read: nothing to wait for that we could see.
        return True
    return "shutting down" in title


def _workers_now(pid_file: Path) -> tuple[int | None, list[int]]:
    master = master_pid(pid_file)
    return master, worker_pids(master) if master else []


class NginxReload:
    """``nginx -s reload`` after ``nginx -t`` passes."""

    name = "nginx_reload"

    def __init__(self, settings: Settings, runtime: Runtime, *, poll: Poll) -> None:
        self._cli = NginxCli(settings, runtime)
        self._poll = poll

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        try:
            found = self._inspect(self._cli.recorder(request), spec)
        except CommandFailed as exc:
            return Refusal(
                "check_failed",
                f"The safety check could not run: {exc.message}",
                "Make sure nginx answers on this host, then retry.",
            )
        return found if isinstance(found, Refusal) else None

    def run(
        self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool
    ) -> ExecutionResult:
        recorder = self._cli.recorder(request)
        try:
            found = self._inspect(recorder, spec)
        except CommandFailed as exc:
            return recorder.failed(exc.message)
        if isinstance(found, Refusal):
            return recorder.refused(found)

        argv = self._cli.argv("-s", "reload")
        if dry_run:
            recorder.plan(argv)
            return recorder.dry_run(f"Would run `{render_argv(argv)}`.", found)
        failure = self._cli.reload(recorder, spec.timeout_s)
        if failure:
            return recorder.failed(failure, found)
        return recorder.succeeded(f"Ran `{render_argv(argv)}`.", found)

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        if result.outcome is not Outcome.SUCCEEDED:
            return Verification(False, "Nothing to verify: nginx was not reloaded.")
        return verify_reload(self._poll, result.detail)

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        return self._cli.recorder(request).failed(
            "A reload cannot be undone; put the previous configuration back, "
            "check it with `nginx -t` and reload again."
        )

    def _inspect(
        self, recorder: StepRecorder, spec: ActionSpec
    ) -> dict[str, Any] | Refusal:
        tested = self._cli.test(recorder, spec.timeout_s)
        if not tested.ok:
            return tested.refusal()
        pid_file = self._cli.pid_file(recorder, spec.timeout_s)
        state = reload_state(pid_file)
        if state["master_pid"] is None:
            return not_running(pid_file)
        return {**state, "warnings": list(tested.warnings)}
