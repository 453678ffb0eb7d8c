"""Rate-limit executor: two nginx snippets that limit requests per client.

The operator's nginx configuration includes ``SNIPPET_DIR/http.d/*.conf``
inside ``http {}`` and ``SNIPPET_DIR/server.d/*.conf`` inside each
``server {}`` to protect. The executor writes ``incident-policy-ACTION.conf``
into both. The http one maps the request URI to the limiting key (empty, so
not counted, outside the configured locations) and declares the
``limit_req_zone``; the server one applies ``limit_req`` with the burst and
the status code. Working at server level leaves the operator's location
blocks untouched. Both files are written atomically (a temporary name the
include glob does not match, then a rename); ``nginx -T`` then tests the
result and proves both files are included. If the test fails or a file is
not included, the previous content is put back and the action refused;
otherwise nginx is reloaded. There is one rate limit per catalog entry: a
second run rewrites the same files, and undo removes them (whichever
incident wrote them), tests, reloads and waits for the new workers. Every
setting is validated against a strict pattern before it reaches the
configuration, so no setting can inject a directive.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Outcome,
    Refusal,
    Verification,
)
from engine.actions.nginx import NginxCli, not_running, reload_state, verify_reload
from engine.actions.options import ActionSettings, read_settings
from engine.actions.polling import Poll
from engine.actions.steps import CommandFailed, StepRecorder
from engine.runtime import Runtime
from engine.settings import Settings

Location = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._~/-]*$")]
Contents = dict[str, str | None]  # path: content, None when absent


class RateLimitSettings(ActionSettings):
    snippet_dir: str = ""
    locations: list[Location] = Field(default_factory=list, max_length=32)
    rate: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,6}r/[sm]$")] = (
        "10r/s"
    )
    burst: int = Field(default=20, ge=0, le=1_000_000)
    nodelay: bool = True
    key: Annotated[str, StringConstraints(pattern=r"^\$[A-Za-z_][A-Za-z0-9_]*$")] = (
        "$binary_remote_addr"
    )
    zone_size: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,5}[km]$")] = (
        "10m"
    )
    status: int = Field(default=429, ge=400, le=599)


@dataclass(frozen=True, slots=True)
class Snippets:
    """The two files of one rate-limit action and their content."""

    http_path: Path
    server_path: Path
    http: str
    server: str

    @property
    def contents(self) -> Contents:
        return {str(self.http_path): self.http, str(self.server_path): self.server}


def render(spec_name: str, options: RateLimitSettings, incident: str) -> Snippets:
    base = re.sub(r"[^a-z0-9_]", "_", spec_name.lower())
    zone = f"incident_policy_{base}"
    # The incident id goes into a comment: keep it to characters that
    # cannot end the comment line.
    incident = re.sub(r"[^A-Za-z0-9_-]", "", incident)
    header = (
        f"# Written by incident-policy (action {base}"
        + (f", incident {incident}" if incident else "")
        + "); its undo removes this file.\n"
    )
    key = options.key
    mapping = ""
    if options.locations:
        key = f"${zone}_key"
        rows = "".join(
            f'    "{_prefix_pattern(loc)}" {options.key};\n'
            for loc in options.locations
        )
        mapping = f'map $uri {key} {{\n    default "";\n{rows}}}\n'
    http = (
        f"{header}{mapping}limit_req_zone {key} "
        f"zone={zone}:{options.zone_size} rate={options.rate};\n"
    )
    burst = f" burst={options.burst}" if options.burst else ""
    nodelay = " nodelay" if options.nodelay else ""
    server = (
        f"{header}limit_req zone={zone}{burst}{nodelay};\n"
        f"limit_req_status {options.status};\n"
    )
    name = f"incident-policy-{base.replace('_', '-')}.conf"
    root = Path(options.snippet_dir)
    return Snippets(root / "http.d" / name, root / "server.d" / name, http, server)


def _prefix_pattern(location: str) -> str:
    # Locations are validated to letters, digits and "._~/-": only the dot
    # means something in a regular expression.
    return "~^" + location.replace(".", "\\.")


def read_contents(paths: list[str]) -> Contents:
    return {path: _read(Path(path)) for path in paths}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def write_contents(contents: Contents) -> None:
    """Put each file in place atomically, or remove it when None."""
    for path, content in contents.items():
        if content is None:
            Path(path).unlink(missing_ok=True)
        else:
            _write_atomically(Path(path), content)


def _write_atomically(path: Path, content: str) -> None:
    # The temporary name starts with a dot and does not end in .conf, so an
    # nginx include of *.conf never reads a half-written file.
    writer = f"{os.getpid()}.{threading.get_ident()}"
    temp = path.with_name(f".{path.name}.{writer}.tmp")
    temp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(temp, flags, 0o644), "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


class RateLimit:
    """Write the rate-limit snippets, test, reload; undo removes them."""

    name = "rate_limit"

    def __init__(self, settings: Settings, runtime: Runtime, *, poll: Poll) -> None:
        self._cli = NginxCli(settings, runtime)
        self._poll = poll

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        try:
            found = self._prepare(self._cli.recorder(request), request, spec)
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
            found = self._prepare(recorder, request, spec)
        except CommandFailed as exc:
            return recorder.failed(exc.message)
        if isinstance(found, Refusal):
            return recorder.refused(found)
        snippets, state = found

        detail = {**state, "snippets": snippets.contents}
        if dry_run:
            recorder.plan(self._cli.argv("-T"))
            recorder.plan(self._cli.argv("-s", "reload"))
            return recorder.dry_run(
                "Would write " + " and ".join(snippets.contents) + ", test, reload.",
                detail,
            )
        return self._apply(recorder, spec, snippets, detail)

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        if result.outcome is not Outcome.SUCCEEDED:
            return Verification(False, "Nothing to verify: no rate limit was applied.")
        written = result.detail.get("snippets", {})
        if read_contents(list(written)) != written:
            return Verification(False, "The rate-limit snippets changed on disk.")
        return verify_reload(self._poll, result.detail)

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        recorder = self._cli.recorder(request)
        found = self._options(spec)
        if isinstance(found, Refusal):
            return recorder.refused(found)
        files = _own_files(undo_data.get("files"), render(spec.name, found, ""))
        if not files:
            return recorder.failed(
                "The undo data names none of this action's snippet files; "
                "remove incident-policy-*.conf from the snippet folders by hand."
            )
        try:
            return self._remove(recorder, spec, files)
        except CommandFailed as exc:
            return recorder.failed(exc.message)

    def _options(self, spec: ActionSpec) -> RateLimitSettings | Refusal:
        options = read_settings(RateLimitSettings, spec)
        if isinstance(options, Refusal):
            return options
        root = Path(options.snippet_dir)
        folders = (root / "http.d", root / "server.d")
        if (
            options.snippet_dir
            and root.is_absolute()
            and all(folder.is_dir() for folder in folders)
        ):
            return options
        return Refusal(
            code="not_configured",
            message=f"No usable snippet folder is configured for {spec.name!r} "
            f"(settings.snippet_dir = {options.snippet_dir!r}): it must be an "
            "absolute path holding http.d/ and server.d/.",
            recommendation="Create SNIPPET_DIR/http.d and SNIPPET_DIR/server.d, "
            "add `include SNIPPET_DIR/http.d/*.conf;` inside http {} and "
            "`include SNIPPET_DIR/server.d/*.conf;` inside the server {} to "
            "protect, and set settings.snippet_dir (see docs/actions.md).",
        )

    def _prepare(
        self, recorder: StepRecorder, request: ActionRequest, spec: ActionSpec
    ) -> tuple[Snippets, dict[str, Any]] | Refusal:
        options = self._options(spec)
        if isinstance(options, Refusal):
            return options
        tested = self._cli.test(recorder, spec.timeout_s)
        if not tested.ok:
            return tested.refusal("Before any change, ")
        pid_file = self._cli.pid_file(recorder, spec.timeout_s)
        state = reload_state(pid_file)
        if state["master_pid"] is None:
            return not_running(pid_file)
        return render(spec.name, options, request.incident_id), state

    def _apply(
        self,
        recorder: StepRecorder,
        spec: ActionSpec,
        snippets: Snippets,
        detail: dict[str, Any],
    ) -> ExecutionResult:
        previous = read_contents(list(snippets.contents))
        write_contents(snippets.contents)
        try:
            refusal = self._test_written(recorder, spec, snippets)
        except CommandFailed as exc:
            write_contents(previous)
            return recorder.failed(exc.message + " The previous files were restored.")
        if refusal:
            write_contents(previous)
            return recorder.refused(refusal, detail)
        failure = self._cli.reload(recorder, spec.timeout_s)
        if failure:
            write_contents(previous)
            return recorder.failed(failure + " The previous files were restored.")
        return recorder.succeeded(
            f"Rate limit {spec.name} applied and nginx reloaded.",
            detail,
            undo_data={"files": list(snippets.contents)},
        )

    def _test_written(
        self, recorder: StepRecorder, spec: ActionSpec, snippets: Snippets
    ) -> Refusal | None:
        tested, config = self._cli.dump(recorder, spec.timeout_s)
        if not tested.ok:
            return Refusal(
                code="rate_limit_rejected",
                message="nginx rejected the rate limit, so the previous files "
                f"were restored: {tested.problem}",
                recommendation=f"Correct `settings:` of {spec.name!r} in the "
                "action catalog (rate, burst, key, zone_size, locations).",
            )
        missing = [
            p for p in snippets.contents if f"# configuration file {p}:" not in config
        ]
        if missing:
            return Refusal(
                code="snippet_not_included",
                message="nginx does not include "
                + " and ".join(missing)
                + ", so the rate limit would do nothing; the previous files "
                "were restored.",
                recommendation="Add `include SNIPPET_DIR/http.d/*.conf;` inside "
                "http {} and `include SNIPPET_DIR/server.d/*.conf;` inside the "
                "server {} to protect.",
            )
        return None

    def _remove(
        self, recorder: StepRecorder, spec: ActionSpec, files: list[str]
    ) -> ExecutionResult:
        current = read_contents(files)
        if all(content is None for content in current.values()):
            return recorder.succeeded(f"Rate limit {spec.name} was already removed.")
        write_contents(dict.fromkeys(files))
        tested = self._cli.test(recorder, spec.timeout_s)
        if not tested.ok:
            write_contents(current)
            return recorder.failed(
                "nginx -t fails without the rate limit, so it was left in "
                f"place: {tested.problem}"
            )
        pid_file = self._cli.pid_file(recorder, spec.timeout_s)
        state = reload_state(pid_file)
        failure = self._cli.reload(recorder, spec.timeout_s)
        if failure:
            write_contents(current)
            return recorder.failed(failure + " The rate limit was left in place.")
        # Undo has no separate verification: wait here until new workers
        # without the limit serve, so "undone" means requests pass again.
        reloaded = verify_reload(self._poll, state)
        detail = {**state, "verification": reloaded.message}
        if not reloaded.ok:
            return recorder.failed(reloaded.message, detail)
        return recorder.succeeded(
            f"Rate limit {spec.name} removed and nginx reloaded.", detail
        )


def _own_files(value: object, snippets: Snippets) -> list[str]:
    """The paths in stored undo data that are this action's own files.

    Undo data comes back from the database; only the two paths this action
    writes are ever touched, whatever else the record says.
    """
    if not isinstance(value, list):
        return []
    return [path for path in snippets.contents if path in value]
