"""clear_temp executor: delete old, closed files inside configured folders only.

Only the folders under ``settings.directories`` are ever touched; with none
configured the action is refused and nothing is deleted. A folder must be an
absolute path, not a symbolic link and not a system root such as ``/etc``.
The walk works on directory descriptors: each folder is opened with
``O_DIRECTORY | O_NOFOLLOW`` relative to its parent's descriptor and checked
to be the very folder that was listed, so a folder swapped for a symbolic
link during the walk is never entered and the walk cannot leave the
configured tree. Symbolic links are skipped entirely (neither followed nor
deleted), as are other file systems mounted inside, non-regular files,
files with a second hard link (deleting one name frees nothing), and files
modified less than ``min_age_minutes`` ago. The remaining candidates are
taken oldest first; any file some process holds open or maps (see
``inuse``) is kept, and the sweep stops before the bytes freed would pass
``byte_budget_mb``. Each deletion re-opens the path from the configured
folder the same way, re-checks the file is unchanged, then unlinks the name
relative to its folder's descriptor. A dry run reports what would go.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Outcome,
    Refusal,
    Verification,
)
from engine.actions.inuse import OpenFiles, OpenFilesUnknown, open_files
from engine.actions.options import ActionSettings, read_settings
from engine.actions.steps import StepRecorder
from engine.runtime import Clock, Runtime

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 32
LISTED_PATHS = 200
"""Deleted paths kept in the record; the counts cover every file."""

SYSTEM_ROOTS = frozenset(
    [
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/usr",
        "/var",
    ]
)


class ClearTempSettings(ActionSettings):
    directories: list[str] = Field(default_factory=list, max_length=64)
    min_age_minutes: float = Field(default=60.0, ge=1)
    byte_budget_mb: float = Field(default=1024.0, gt=0)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An old regular file, identified as it was when listed."""

    root: str
    parts: tuple[str, ...]  # folders below ``root``, then the file name
    device: int
    inode: int
    size: int
    mtime_ns: int

    @property
    def path(self) -> str:
        return os.path.join(self.root, *self.parts)

    def same_file(self, info: os.stat_result) -> bool:
        now = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        return stat.S_ISREG(info.st_mode) and now == (
            self.device,
            self.inode,
            self.size,
            self.mtime_ns,
        )


@dataclass
class Sweep:
    """The tally of one clear_temp call."""

    candidates: list[Candidate] = field(default_factory=list)
    deleted: list[Candidate] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    freed: int = 0
    budget_reached: bool = False
    timed_out: bool = False

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count


class Deadline:
    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._start = clock.now()
        self._seconds = seconds

    def passed(self) -> bool:
        return (self._clock.now() - self._start).total_seconds() > self._seconds


class Walker:
    """Lists the old regular files below one configured folder."""

    def __init__(self, cutoff_ns: int, deadline: Deadline, sweep: Sweep) -> None:
        self._cutoff_ns = cutoff_ns
        self._deadline = deadline
        self._sweep = sweep

    def walk(self, root: str) -> None:
        try:
            fd = os.open(root, OPEN_DIR)
        except FileNotFoundError:
            self._sweep.skip("missing_directory")
            return
        except OSError:
            self._sweep.skip("unreadable_directory")  # swapped for a symlink
            return
        try:
            self._scan(fd, os.fstat(fd).st_dev, root, (), 0)
        finally:
            os.close(fd)

    def _scan(
        self, fd: int, device: int, root: str, parts: tuple[str, ...], depth: int
    ) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                if self._deadline.passed():
                    self._sweep.timed_out = True
                    return
                self._visit(fd, device, root, parts, entry, depth)

    def _visit(
        self,
        fd: int,
        device: int,
        root: str,
        parts: tuple[str, ...],
        entry: os.DirEntry[str],
        depth: int,
    ) -> None:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            self._sweep.skip("symlink")
        elif stat.S_ISDIR(mode):
            self._descend(fd, device, root, (*parts, entry.name), info, depth)
        elif not stat.S_ISREG(mode):
            self._sweep.skip("not_regular")
        elif info.st_mtime_ns > self._cutoff_ns:
            self._sweep.skip("fresh")
        elif info.st_nlink > 1:
            self._sweep.skip("linked")
        else:
            self._sweep.candidates.append(
                Candidate(
                    root,
                    (*parts, entry.name),
                    info.st_dev,
                    info.st_ino,
                    info.st_size,
                    info.st_mtime_ns,
                )
            )

    def _descend(
        self,
        fd: int,
        device: int,
        root: str,
        parts: tuple[str, ...],
        listed: os.stat_result,
        depth: int,
    ) -> None:
        if listed.st_dev != device:
            self._sweep.skip("other_device")
            return
        if depth >= MAX_DEPTH:
            self._sweep.skip("too_deep")
            return
        try:
            child = os.open(parts[-1], OPEN_DIR, dir_fd=fd)
        except OSError:
            self._sweep.skip("changed")  # gone, or swapped for a symlink
            return
        try:
            opened = os.fstat(child)
            if (opened.st_dev, opened.st_ino) != (listed.st_dev, listed.st_ino):
                self._sweep.skip("changed")
                return
            self._scan(child, device, root, parts, depth + 1)
        finally:
            os.close(child)


def unlink_candidate(candidate: Candidate) -> str | None:
    """Delete one listed file; the reason it was kept, or None."""
    root_fd = os.open(candidate.root, OPEN_DIR)
    try:
        folder = _open_below(root_fd, candidate.parts[:-1])
        try:
            name = candidate.parts[-1]
            if not candidate.same_file(
                os.stat(name, dir_fd=folder, follow_symlinks=False)
            ):
                return "changed"
            os.unlink(name, dir_fd=folder)
        finally:
            if folder != root_fd:
                os.close(folder)
    except FileNotFoundError:
        return "vanished"
    except OSError as exc:
        # ELOOP: a folder on the way was swapped for a symbolic link.
        swapped = exc.errno in (errno.ELOOP, errno.ENOTDIR)
        return "changed" if swapped else "not_permitted"
    finally:
        os.close(root_fd)
    return None


def _open_below(root_fd: int, folders: Sequence[str]) -> int:
    device = os.fstat(root_fd).st_dev
    current = root_fd
    for name in folders:
        child = os.open(name, OPEN_DIR, dir_fd=current)
        if current != root_fd:
            os.close(current)
        current = child
        if os.fstat(current).st_dev != device:
            os.close(current)
            raise FileNotFoundError(name)
    return current


def sweep_directories(
    directories: Sequence[str],
    *,
    cutoff_ns: int,
    budget_bytes: int,
    deadline: Deadline,
    dry_run: bool,
) -> tuple[Sweep, OpenFiles]:
    sweep = Sweep()
    for root in directories:
        Walker(cutoff_ns, deadline, sweep).walk(root)
    in_use = open_files()
    ordered = sorted(_unique(sweep.candidates), key=lambda c: (c.mtime_ns, c.path))
    for index, candidate in enumerate(ordered):
        if sweep.timed_out or deadline.passed():
            sweep.timed_out = True
            break
        if (candidate.device, candidate.inode) in in_use.held:
            sweep.skip("in_use")
            continue
        if sweep.freed + candidate.size > budget_bytes:
            sweep.budget_reached = True
            sweep.skip("budget", len(ordered) - index)
            break
        kept = None if dry_run else unlink_candidate(candidate)
        if kept:
            sweep.skip(kept)
            continue
        sweep.deleted.append(candidate)
        sweep.freed += candidate.size
    return sweep, in_use


def _unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    # Nested configured folders list the same file twice.
    seen: dict[tuple[int, int], Candidate] = {}
    for candidate in candidates:
        seen.setdefault((candidate.device, candidate.inode), candidate)
    return list(seen.values())


class ClearTemp:
    """Delete old, closed regular files in the configured folders."""

    name = "clear_temp"

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        found = self._options(spec)
        return found if isinstance(found, Refusal) else None

    def run(
        self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool
    ) -> ExecutionResult:
        recorder = StepRecorder(self._runtime, request.action, request.target)
        options = self._options(spec)
        if isinstance(options, Refusal):
            return recorder.refused(options)
        now = self._runtime.clock.now()
        try:
            sweep, in_use = sweep_directories(
                options.directories,
                cutoff_ns=_cutoff_ns(now, options.min_age_minutes),
                budget_bytes=int(options.byte_budget_mb * 1024 * 1024),
                deadline=Deadline(self._runtime.clock, spec.timeout_s),
                dry_run=dry_run,
            )
        except OpenFilesUnknown as exc:
            return recorder.refused(_open_files_refusal(exc))
        detail = _detail(options, sweep, in_use, dry_run=dry_run)
        return _finish(recorder, spec, sweep, detail, dry_run=dry_run)

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        if result.outcome is not Outcome.SUCCEEDED:
            return Verification(False, "Nothing to verify: no file was deleted.")
        freed = int(result.detail.get("bytes_freed", 0))
        paths = [str(p) for p in result.detail.get("deleted", [])]
        back = [p for p in paths if os.path.lexists(p)]
        facts = {"bytes_freed": freed, "recreated": back}
        if freed <= 0:
            return Verification(False, "No space was freed.", facts)
        return Verification(True, f"Freed {_size(freed)}.", facts)

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        recorder = StepRecorder(self._runtime, request.action, request.target)
        return recorder.failed("Deleted files cannot be restored.")

    def _options(self, spec: ActionSpec) -> ClearTempSettings | Refusal:
        options = read_settings(ClearTempSettings, spec)
        if isinstance(options, Refusal):
            return options
        if not options.directories:
            return Refusal(
                code="not_configured",
                message=f"No directory is configured for {spec.name!r}, so "
                "nothing is deleted.",
                recommendation=f"List the folders that hold only temporary files "
                f"under `settings.directories` of {spec.name!r} in the action "
                "catalog.",
            )
        for directory in options.directories:
            refusal = _unsafe(directory)
            if refusal:
                return refusal
        return options


def _unsafe(directory: str) -> Refusal | None:
    path = Path(directory)
    problem = ""
    if not path.is_absolute() or ".." in path.parts:
        problem = "is not an absolute path without `..`"
    elif os.path.normpath(directory) in SYSTEM_ROOTS:
        problem = "is a system folder, never a temporary one"
    elif path.is_symlink():
        problem = f"is a symbolic link (to {os.readlink(path)})"
    if not problem:
        return None
    return Refusal(
        code="unsafe_directory",
        message=f"The configured directory {directory!r} {problem}; nothing was "
        "deleted.",
        recommendation="Configure the real, absolute folder that holds only "
        "temporary files (for example /srv/app/tmp).",
    )


def _open_files_refusal(exc: OpenFilesUnknown) -> Refusal:
    return Refusal(
        code="open_files_unknown",
        message=exc.message,
        recommendation="Without knowing which files are in use nothing is "
        "deleted; free space by hand.",
    )


def _cutoff_ns(now: datetime, min_age_minutes: float) -> int:
    return int((now.timestamp() - min_age_minutes * 60) * 1_000_000_000)


def _detail(
    options: ClearTempSettings, sweep: Sweep, in_use: OpenFiles, *, dry_run: bool
) -> dict[str, Any]:
    listed = [c.path for c in sweep.deleted[:LISTED_PATHS]]
    return {
        "directories": list(options.directories),
        "min_age_minutes": options.min_age_minutes,
        "budget_bytes": int(options.byte_budget_mb * 1024 * 1024),
        "files_to_delete" if dry_run else "files_deleted": len(sweep.deleted),
        "bytes_to_free" if dry_run else "bytes_freed": sweep.freed,
        "would_delete" if dry_run else "deleted": listed,
        "all_listed": len(sweep.deleted) <= LISTED_PATHS,
        "skipped": dict(sweep.skipped),
        "budget_reached": sweep.budget_reached,
        "uninspectable_processes": in_use.uninspectable,
    }


def _finish(
    recorder: StepRecorder,
    spec: ActionSpec,
    sweep: Sweep,
    detail: Mapping[str, Any],
    *,
    dry_run: bool,
) -> ExecutionResult:
    count, size = len(sweep.deleted), _size(sweep.freed)
    if dry_run:
        return recorder.dry_run(f"Would delete {count} files ({size}).", detail)
    if sweep.timed_out:
        return recorder.failed(
            f"Clearing temporary files timed out after {spec.timeout_s:g} s; "
            f"{count} files ({size}) were deleted before it stopped.",
            detail,
        )
    return recorder.succeeded(f"Deleted {count} files ({size}).", detail)


def _size(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count} bytes"
    return f"{count / (1024 * 1024):.1f} MiB"
