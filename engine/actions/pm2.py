"""PM2 executors: restart one process; pause and resume the background jobs.

Both speak to PM2 only through its command line, as fixed argument vectors
under the configured ``PM2_HOME``: ``pm2 jlist -s`` to see the processes
(``-s`` silences the banner PM2 prints when it starts a daemon; the JSON is
read from the last line that parses, and never kept in the record because
it holds every process environment), then ``pm2 restart|reload|stop|start
NAME`` to act. Before acting they refuse what would make things worse or
hit the wrong thing: no daemon running under that home (asking would start
an empty one), a name PM2 does not list, a name PM2's command line reads as
something else (``all``, an id, a regex, an option) and, for a restart, a
process in a restart loop or stopped on purpose. ``Pm2Restart`` reloads a
cluster-mode app gracefully and verifies new pids online. ``PauseJobs``
stops the configured job processes; its undo starts exactly those it
stopped, and only while PM2 still lists them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from pydantic import Field

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Outcome,
    Refusal,
    Verification,
)
from engine.actions.options import ActionSettings, read_settings
from engine.actions.polling import Poll
from engine.actions.steps import (
    CommandFailed,
    StepRecorder,
    describe_failure,
    render_argv,
)
from engine.runtime import Runtime
from engine.settings import Settings

LOOP_STATUSES = frozenset({"errored", "waiting restart"})
RESTING_STATUSES = frozenset({"stopped", "errored"})
VERIFY_TIMEOUT_S = 30.0
"""Timeout of each ``pm2 jlist`` a verification or an undo runs."""


@dataclass(frozen=True, slots=True)
class Pm2Process:
    """One entry of ``pm2 jlist``: a cluster app has one per instance."""

    name: str
    pm_id: int
    pid: int
    status: str
    restarts: int
    exec_mode: str
    error_log: str

    @classmethod
    def from_jlist(cls, item: Mapping[str, Any]) -> Pm2Process:
        env = item.get("pm2_env") or {}
        return cls(
            name=str(item.get("name", "")),
            pm_id=_as_int(item.get("pm_id")),
            pid=_as_int(item.get("pid")),
            status=str(env.get("status", "unknown")),
            restarts=_as_int(env.get("restart_time")),
            exec_mode=str(env.get("exec_mode", "")),
            error_log=str(env.get("pm_err_log_path", "")),
        )

    def state(self) -> dict[str, Any]:
        return {"pid": self.pid, "status": self.status, "restarts": self.restarts}


def _as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def parse_jlist(stdout: str) -> list[Pm2Process]:
    """The processes in ``pm2 jlist`` output, whatever PM2 printed before."""
    for line in reversed(stdout.splitlines()):
        text = line.strip()
        if not text.startswith("["):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(data, list):
            return [Pm2Process.from_jlist(i) for i in data if isinstance(i, dict)]
    raise CommandFailed(
        "`pm2 jlist` printed no process list; run `pm2 jlist` under the "
        "configured PM2_HOME and check that it prints JSON."
    )


def cli_misreading(name: str) -> str | None:
    """What PM2's command line would take ``name`` for, if not one app name."""
    if not name or name.strip() != name:
        return "a name with surrounding spaces (or no name at all)"
    if name == "all":
        return "every process (`all`)"
    if name.startswith("-"):
        return "a command-line option"
    if len(name) > 1 and name.startswith("/") and name.endswith("/"):
        return "a regular expression over all names"
    if _numeric(name):
        return "a process id"
    return None


def _numeric(name: str) -> bool:
    # PM2 tests names with JavaScript's isNaN: "1e3", "0x1f" and "inf" are ids.
    for parse in (float, lambda text: int(text, 0)):
        try:
            parse(name)
        except ValueError:
            continue
        return True
    return False


def snapshot_processes(facts: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """Entries for ``name`` in ``snapshot.pm2.processes`` of a facts mapping.

    Accepts the facts document (``{"snapshot": {...}}``) or its snapshot
    section, since requests carry the first and verifications the second.
    """
    inner = facts.get("snapshot")
    section = inner if isinstance(inner, Mapping) else facts
    pm2 = section.get("pm2")
    listed = pm2.get("processes") if isinstance(pm2, Mapping) else None
    if not isinstance(listed, list):
        return []
    return [p for p in listed if isinstance(p, Mapping) and p.get("name") == name]


class Pm2Cli:
    """The PM2 command line under the configured home."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self._binary = settings.pm2_bin
        self._home = settings.pm2_home
        self._runtime = runtime

    def argv(self, *args: str) -> tuple[str, ...]:
        return (self._binary, *args)

    def recorder(self, request: ActionRequest) -> StepRecorder:
        env = {"PM2_HOME": str(self._home)} if self._home else None
        return StepRecorder(self._runtime, request.action, request.target, env=env)

    def daemon_refusal(self) -> Refusal | None:
        """Refuse when no daemon runs: any pm2 command would start one."""
        if self._home is None:
            return None
        pid_file = self._home / "pm2.pid"
        if _live_pid(pid_file) is not None:
            return None
        return Refusal(
            code="pm2_not_running",
            message=f"No PM2 daemon runs for PM2_HOME {self._home} (no live "
            f"process id in {pid_file}); asking PM2 would start an empty one.",
            recommendation="Set INCIDENT_POLICY_PM2_HOME to the home of the PM2 "
            "that runs your apps (`pm2 ls` as that user lists them).",
        )

    def processes(self, recorder: StepRecorder, timeout_s: float) -> list[Pm2Process]:
        done = recorder.require(
            self.argv("jlist", "-s"), timeout_s=timeout_s, keep_stdout=False
        )
        return parse_jlist(done.stdout)


def _live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and psutil.pid_exists(pid) else None


def find_listed(
    processes: Sequence[Pm2Process], name: str
) -> list[Pm2Process] | Refusal:
    misread = cli_misreading(name)
    if misread:
        return Refusal(
            code="ambiguous_target",
            message=f"{name!r} cannot be passed to PM2's command line: PM2 "
            f"would read it as {misread}.",
            recommendation="Give the app a plain name in its ecosystem file "
            "and use that name as the target.",
        )
    found = [p for p in processes if p.name == name]
    if found:
        return found
    listed = ", ".join(sorted({p.name for p in processes})[:20]) or "nothing"
    return Refusal(
        code="not_listed",
        message=f"PM2 does not list a process named {name!r} (it lists: {listed}).",
        recommendation="Check the target name in the rule or approval; only "
        "processes that PM2 lists can be acted on.",
    )


def check_failed(exc: CommandFailed) -> Refusal:
    return Refusal(
        code="check_failed",
        message=f"The safety check could not run: {exc.message}",
        recommendation="Make sure the tool answers on this host, then retry.",
    )


class RestartSettings(ActionSettings):
    loop_restarts: int = Field(default=3, ge=1)
    """Restarts since the incident snapshot that mean a restart loop."""


class Pm2Restart:
    """``pm2 restart NAME`` (``pm2 reload NAME`` for cluster mode)."""

    name = "pm2_restart"

    def __init__(self, settings: Settings, runtime: Runtime, *, poll: Poll) -> None:
        self._cli = Pm2Cli(settings, runtime)
        self._poll = poll

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        try:
            found = self._inspect(self._cli.recorder(request), request, spec)
        except CommandFailed as exc:
            return check_failed(exc)
        return found if isinstance(found, Refusal) else None

    def run(
        self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool
    ) -> ExecutionResult:
        recorder = self._cli.recorder(request)
        try:
            found = self._inspect(recorder, request, spec)
        except CommandFailed as exc:
            return recorder.failed(exc.message)
        if isinstance(found, Refusal):
            return recorder.refused(found)

        cluster = any(p.exec_mode == "cluster_mode" for p in found)
        verb = "reload" if cluster else "restart"
        argv = self._cli.argv(verb, request.target)
        detail = {"verb": verb, "before": {str(p.pm_id): p.state() for p in found}}
        if dry_run:
            recorder.plan(argv)
            return recorder.dry_run(f"Would run `{render_argv(argv)}`.", detail)

        done = recorder.run(argv, timeout_s=spec.timeout_s)
        if not done.ok:
            return recorder.failed(describe_failure(done), detail)
        return recorder.succeeded(f"Ran `{render_argv(argv)}`.", detail)

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        if result.outcome is not Outcome.SUCCEEDED:
            return Verification(False, "Nothing to verify: the restart did not run.")
        name = request.target
        if any(p.get("restart_loop") is True for p in snapshot_processes(after, name)):
            return Verification(
                False, f"{name} restarted, but the fresh snapshot shows a restart loop."
            )
        before = result.detail.get("before", {})
        try:
            now = self._poll.until(
                lambda: self._instances(request, name),
                lambda seen: not _not_restarted(seen, before),
            )
        except CommandFailed as exc:
            return Verification(False, f"Could not read PM2's list: {exc.message}")
        return _restart_verdict(name, now, before)

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        return self._cli.recorder(request).failed(
            "A restart cannot be undone; if the new process misbehaves, roll "
            "back its deploy."
        )

    def _inspect(
        self, recorder: StepRecorder, request: ActionRequest, spec: ActionSpec
    ) -> list[Pm2Process] | Refusal:
        options = read_settings(RestartSettings, spec)
        if isinstance(options, Refusal):
            return options
        refusal = self._cli.daemon_refusal()
        if refusal:
            return refusal
        found = find_listed(
            self._cli.processes(recorder, spec.timeout_s), request.target
        )
        if isinstance(found, Refusal):
            return found
        seen = snapshot_processes(request.facts, request.target)
        return _restart_refusal(found, seen, options.loop_restarts) or found

    def _instances(self, request: ActionRequest, name: str) -> list[Pm2Process]:
        listed = self._cli.processes(self._cli.recorder(request), VERIFY_TIMEOUT_S)
        return [p for p in listed if p.name == name]


def _restart_refusal(
    found: Sequence[Pm2Process],
    seen: Sequence[Mapping[str, Any]],
    loop_restarts: int,
) -> Refusal | None:
    name = found[0].name
    reason = _loop_reason(found, seen, loop_restarts)
    if reason:
        return Refusal(
            code="restart_loop",
            message=f"{name} is in a restart loop ({reason}); restarting it "
            "only adds load.",
            recommendation=f"Roll back the last deploy of {name}, or inspect its "
            f"error log ({found[0].error_log or 'pm2 logs ' + name}) for the "
            "cause of the crashes.",
        )
    if all(p.status == "stopped" for p in found):
        return Refusal(
            code="not_running",
            message=f"{name} is stopped; a restart would start it again, and "
            "it may have been stopped on purpose (by a person or pause_jobs).",
            recommendation=f"If it should run, start it with `pm2 start {name}`.",
        )
    return None


def _loop_reason(
    found: Sequence[Pm2Process],
    seen: Sequence[Mapping[str, Any]],
    loop_restarts: int,
) -> str | None:
    looping = sorted({p.status for p in found} & LOOP_STATUSES)
    if looping:
        return f"PM2 reports it {looping[0]!r}"
    if any(entry.get("restart_loop") is True for entry in seen):
        return "the incident snapshot marks it as restart-looping"
    climbed = _restarts_since(found, seen)
    if climbed >= loop_restarts:
        return f"it restarted {climbed} times since the incident snapshot"
    return None


def _restarts_since(
    found: Sequence[Pm2Process], seen: Sequence[Mapping[str, Any]]
) -> int:
    by_id = {entry.get("pm_id"): entry.get("restarts") for entry in seen}
    if len(found) == 1 and len(seen) == 1:
        by_id = {found[0].pm_id: seen[0].get("restarts")}
    climbs = [
        p.restarts - earlier
        for p in found
        if isinstance(earlier := by_id.get(p.pm_id), int)
    ]
    return max(climbs, default=0)


def _not_restarted(
    now: Sequence[Pm2Process], before: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The instances that do not (yet) show a restart, as sentences."""
    by_id = {str(p.pm_id): p for p in now}
    problems = []
    for pm_id, earlier in before.items():
        current = by_id.get(pm_id)
        if current is None:
            problems.append(f"instance {pm_id} is no longer listed")
        elif current.status != "online":
            problems.append(f"instance {pm_id} is {current.status}")
        elif current.pid == earlier.get("pid") and current.restarts <= earlier.get(
            "restarts", -1
        ):
            problems.append(f"instance {pm_id} still runs as pid {current.pid}")
    return problems if before else ["nothing was recorded before the restart"]


def _restart_verdict(
    name: str, now: Sequence[Pm2Process], before: Mapping[str, Mapping[str, Any]]
) -> Verification:
    problems = _not_restarted(now, before)
    detail = {"after": {str(p.pm_id): p.state() for p in now}, "before": before}
    if problems:
        return Verification(
            False, f"{name} did not come back: " + "; ".join(problems), detail
        )
    pids = ", ".join(str(p.pid) for p in now)
    return Verification(True, f"{name} is online with new pid(s) {pids}.", detail)


class PauseSettings(ActionSettings):
    processes: list[str] = Field(default_factory=list)
    """PM2 names of the background job processes."""


class PauseJobs:
    """``pm2 stop NAME`` for each configured job; undo is ``pm2 start NAME``."""

    name = "pause_jobs"

    def __init__(self, settings: Settings, runtime: Runtime, *, poll: Poll) -> None:
        self._cli = Pm2Cli(settings, runtime)
        self._poll = poll

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        try:
            found = self._inspect(self._cli.recorder(request), spec)
        except CommandFailed as exc:
            return check_failed(exc)
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

        to_stop = [name for name, procs in found.items() if not _resting(procs)]
        resting = [name for name in found if name not in to_stop]
        if dry_run:
            for name in to_stop:
                recorder.plan(self._cli.argv("stop", name))
            detail = {"would_stop": to_stop, "left_alone": resting}
            return recorder.dry_run(_pause_sentence("Would stop", to_stop), detail)
        return self._stop(recorder, spec, to_stop, resting)

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        if result.outcome is not Outcome.SUCCEEDED:
            return Verification(False, "Nothing to verify: the jobs were not paused.")
        names = _names(result.undo_data.get("stopped"))
        try:
            listed = self._poll.until(
                lambda: self._cli.processes(
                    self._cli.recorder(request), VERIFY_TIMEOUT_S
                ),
                lambda seen: not _still_running(seen, names),
            )
        except CommandFailed as exc:
            return Verification(False, f"Could not read PM2's list: {exc.message}")
        running = _still_running(listed, names)
        if running:
            return Verification(False, "Still running: " + ", ".join(running) + ".")
        return Verification(True, _pause_sentence("Stopped", names), {"stopped": names})

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        recorder = self._cli.recorder(request)
        refusal = self._cli.daemon_refusal()
        if refusal:
            return recorder.refused(refusal)
        try:
            listed = self._cli.processes(recorder, spec.timeout_s)
        except CommandFailed as exc:
            return recorder.failed(exc.message)
        return self._start(recorder, spec, listed, _names(undo_data.get("stopped")))

    def _inspect(
        self, recorder: StepRecorder, spec: ActionSpec
    ) -> dict[str, list[Pm2Process]] | Refusal:
        options = read_settings(PauseSettings, spec)
        if isinstance(options, Refusal):
            return options
        if not options.processes:
            return Refusal(
                code="not_configured",
                message=f"No job processes are configured for {spec.name!r}, "
                "so there is nothing to pause.",
                recommendation=f"List the PM2 names of your job processes under "
                f"`settings.processes` of {spec.name!r} in the action catalog.",
            )
        refusal = self._cli.daemon_refusal()
        if refusal:
            return refusal
        return _find_all(
            self._cli.processes(recorder, spec.timeout_s), options.processes
        )

    def _stop(
        self,
        recorder: StepRecorder,
        spec: ActionSpec,
        to_stop: Sequence[str],
        resting: Sequence[str],
    ) -> ExecutionResult:
        stopped: list[str] = []
        for name in to_stop:
            done = recorder.run(self._cli.argv("stop", name), timeout_s=spec.timeout_s)
            if not done.ok:
                detail = {"stopped": stopped, "left_alone": resting}
                undo = {"stopped": stopped}
                return recorder.failed(describe_failure(done), detail, undo)
            stopped.append(name)
        detail = {"stopped": stopped, "left_alone": resting}
        return recorder.succeeded(
            _pause_sentence("Stopped", stopped), detail, undo_data={"stopped": stopped}
        )

    def _start(
        self,
        recorder: StepRecorder,
        spec: ActionSpec,
        listed: Sequence[Pm2Process],
        names: Sequence[str],
    ) -> ExecutionResult:
        started: list[str] = []
        skipped: dict[str, str] = {}
        for name in names:
            reason = _start_obstacle(listed, name)
            if reason:
                skipped[name] = reason
                continue
            done = recorder.run(self._cli.argv("start", name), timeout_s=spec.timeout_s)
            if not done.ok:
                detail = {"started": started, "skipped": skipped}
                return recorder.failed(describe_failure(done), detail)
            started.append(name)
        detail = {"started": started, "skipped": skipped}
        return recorder.succeeded(_pause_sentence("Started", started), detail)


def _find_all(
    processes: Sequence[Pm2Process], names: Iterable[str]
) -> dict[str, list[Pm2Process]] | Refusal:
    found: dict[str, list[Pm2Process]] = {}
    for name in names:
        listed = find_listed(processes, name)
        if isinstance(listed, Refusal):
            return listed
        found[name] = listed
    return found


def _resting(processes: Sequence[Pm2Process]) -> bool:
    return all(p.status in RESTING_STATUSES for p in processes)


def _still_running(listed: Sequence[Pm2Process], names: Sequence[str]) -> list[str]:
    return [
        n for n in names if any(p.status != "stopped" for p in listed if p.name == n)
    ]


def _start_obstacle(listed: Sequence[Pm2Process], name: str) -> str | None:
    # `pm2 start NAME` of a name PM2 does not list would start a script file
    # of that name from the working directory: never ask for it.
    if cli_misreading(name):
        return "PM2's command line would misread the name"
    procs = [p for p in listed if p.name == name]
    if not procs:
        return "PM2 no longer lists it"
    if not all(p.status == "stopped" for p in procs):
        return "it is already running"
    return None


def _names(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _pause_sentence(verb: str, names: Sequence[str]) -> str:
    return f"{verb} {', '.join(names)}." if names else f"{verb} nothing: no job runs."
