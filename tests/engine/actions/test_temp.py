"""clear_temp on real files: a plain temporary folder and a small tmpfs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.actions.base import ExecutionResult, Outcome
from engine.actions.temp import ClearTemp, Deadline, Sweep, Walker, unlink_candidate
from engine.runtime import Runtime, SystemClock
from tests.support.actions import request_for, spec_for

KIB = 1024


def make_file(path: Path, size: int = KIB, *, age_minutes: float = 180) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"t" * size)
    stamp = time.time() - age_minutes * 60
    os.utime(path, (stamp, stamp))
    return path


def clear(
    folder: Path | None,
    *,
    dry_run: bool = False,
    runtime: Runtime | None = None,
    timeout_s: float = 30.0,
    **settings: Any,
) -> ExecutionResult:
    configured = {"directories": [str(folder)] if folder else [], **settings}
    return ClearTemp(runtime or Runtime.system()).run(
        request_for("clear_temp", "temp"),
        spec_for(
            "clear_temp",
            timeout_s=timeout_s,
            settings={"min_age_minutes": 60, **configured},
        ),
        dry_run=dry_run,
    )


@contextmanager
def held_by_child(path: Path, *, mapped: bool = False) -> Iterator[int]:
    """Another process holds ``path`` open (or only maps it) until the end."""
    code = (
        "import mmap, sys\n"
        "f = open(sys.argv[1], 'rb')\n"
        "if sys.argv[2] == 'map':\n"
        "    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
        "    f.close()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path), "map" if mapped else "open"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        yield child.pid
    finally:
        child.stdin.close()  # the child reads end of input and exits
        child.wait(timeout=10)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test only."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("the mount command is not installed")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


class TickingClock:
    """Moves one second each time it is read: a sweep that never ends."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


def test_old_closed_files_are_removed_and_a_fresh_one_kept(tmp_path: Path) -> None:
    old = [make_file(tmp_path / "tmp" / f"old-{i}.bin") for i in range(3)]
    nested = make_file(tmp_path / "tmp" / "deep" / "er" / "old.bin")
    fresh = make_file(tmp_path / "tmp" / "fresh.bin", age_minutes=1)

    result = clear(tmp_path / "tmp")

    assert result.outcome is Outcome.SUCCEEDED, result.message
    assert not any(path.exists() for path in [*old, nested])
    assert fresh.exists()
    assert result.detail["files_deleted"] == 4
    assert result.detail["bytes_freed"] == 4 * KIB
    assert result.detail["skipped"] == {"fresh": 1}
    assert sorted(result.detail["deleted"]) == sorted(map(str, [*old, nested]))
    assert (tmp_path / "tmp" / "deep" / "er").is_dir()


def test_an_old_file_held_open_by_another_process_is_kept(tmp_path: Path) -> None:
    held = make_file(tmp_path / "tmp" / "held.log")
    closed = make_file(tmp_path / "tmp" / "closed.log")

    with held_by_child(held):
        result = clear(tmp_path / "tmp")

    assert held.exists()
    assert not closed.exists()
    assert result.detail["skipped"] == {"in_use": 1}
    assert result.detail["uninspectable_processes"] == 0


def test_an_old_file_only_mapped_into_memory_is_kept(tmp_path: Path) -> None:
    mapped = make_file(tmp_path / "tmp" / "mapped.dat")

    with held_by_child(mapped, mapped=True):
        result = clear(tmp_path / "tmp")

    assert mapped.exists()
    assert result.detail["skipped"] == {"in_use": 1}


def test_a_symlink_pointing_outside_survives_and_so_does_its_target(
    tmp_path: Path,
) -> None:
    outside = make_file(tmp_path / "precious" / "data.db")
    link = tmp_path / "tmp" / "link-to-data"
    link.parent.mkdir()
    link.symlink_to(outside)
    stamp = time.time() - 3 * 3600
    os.utime(link, (stamp, stamp), follow_symlinks=False)

    result = clear(tmp_path / "tmp")

    assert link.is_symlink()
    assert outside.read_bytes() == b"t" * KIB
    assert result.detail["skipped"] == {"symlink": 1}
    assert result.detail["files_deleted"] == 0


def test_a_directory_symlink_is_not_followed(tmp_path: Path) -> None:
    outside = [make_file(tmp_path / "precious" / f"{i}.bin") for i in range(2)]
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "escape").symlink_to(tmp_path / "precious")

    result = clear(tmp_path / "tmp")

    assert all(path.exists() for path in outside)
    assert result.detail["skipped"] == {"symlink": 1}


def test_a_folder_swapped_for_a_symlink_after_listing_is_not_entered(
    tmp_path: Path,
) -> None:
    make_file(tmp_path / "tmp" / "sub" / "victim.bin")
    precious = make_file(tmp_path / "precious" / "victim.bin")
    sweep = Sweep()
    cutoff = time.time_ns() - 3600 * 10**9
    Walker(cutoff, Deadline(SystemClock(), 60), sweep).walk(str(tmp_path / "tmp"))
    (tmp_path / "tmp" / "sub").rename(tmp_path / "moved-away")
    (tmp_path / "tmp" / "sub").symlink_to(tmp_path / "precious")

    kept = unlink_candidate(sweep.candidates[0])

    assert kept == "changed"
    assert precious.exists()


def test_the_sweep_stops_at_the_byte_budget_oldest_first(tmp_path: Path) -> None:
    files = [
        make_file(tmp_path / "tmp" / f"{i}.bin", 300 * KIB, age_minutes=600 - i)
        for i in range(5)
    ]

    result = clear(tmp_path / "tmp", byte_budget_mb=1)

    assert [path.exists() for path in files] == [False, False, False, True, True]
    assert result.detail["bytes_freed"] == 900 * KIB
    assert result.detail["bytes_freed"] <= result.detail["budget_bytes"]
    assert result.detail["budget_reached"] is True
    assert result.detail["skipped"] == {"budget": 2}


def test_nothing_is_deleted_without_a_configured_directory(tmp_path: Path) -> None:
    old = make_file(tmp_path / "tmp" / "old.bin")

    result = clear(None)

    assert result.outcome is Outcome.REFUSED
    assert result.refusal is not None
    assert result.refusal.code == "not_configured"
    assert old.exists()


@pytest.mark.parametrize("directory", ["/etc", "/", "relative/tmp", "/tmp/../etc"])
def test_system_and_relative_folders_are_refused(directory: str) -> None:
    result = ClearTemp(Runtime.system()).run(
        request_for("clear_temp", "temp"),
        spec_for("clear_temp", settings={"directories": [directory]}),
        dry_run=False,
    )

    assert result.refusal is not None
    assert result.refusal.code == "unsafe_directory"
    assert repr(directory) in result.refusal.message


def test_a_configured_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = make_file(tmp_path / "real" / "old.bin")
    (tmp_path / "tmp").symlink_to(tmp_path / "real")

    result = clear(tmp_path / "tmp")

    assert result.refusal is not None
    assert result.refusal.code == "unsafe_directory"
    assert target.exists()


def test_a_misspelt_setting_is_refused(tmp_path: Path) -> None:
    old = make_file(tmp_path / "tmp" / "old.bin")

    result = clear(tmp_path / "tmp", min_age_minute=1)

    assert result.refusal is not None
    assert result.refusal.code == "invalid_settings"
    assert "min_age_minute" in result.refusal.message
    assert old.exists()


def test_dry_run_lists_what_would_go_and_deletes_nothing(tmp_path: Path) -> None:
    old = make_file(tmp_path / "tmp" / "old.bin")

    result = clear(tmp_path / "tmp", dry_run=True)

    assert result.outcome is Outcome.DRY_RUN
    assert result.detail["would_delete"] == [str(old)]
    assert result.detail["bytes_to_free"] == KIB
    assert old.exists()


def test_hard_links_fifos_and_fresh_files_are_kept(tmp_path: Path) -> None:
    linked = make_file(tmp_path / "tmp" / "linked.bin")
    os.link(linked, tmp_path / "elsewhere.bin")
    os.mkfifo(tmp_path / "tmp" / "pipe")

    result = clear(tmp_path / "tmp")

    assert linked.exists()
    assert (tmp_path / "tmp" / "pipe").exists()
    assert result.detail["skipped"] == {"linked": 1, "not_regular": 1}


def test_a_sweep_past_its_timeout_fails_with_timed_out(tmp_path: Path) -> None:
    for i in range(5):
        make_file(tmp_path / "tmp" / f"{i}.bin")
    ticking = Runtime(clock=TickingClock())

    result = clear(tmp_path / "tmp", runtime=ticking, timeout_s=3)

    assert result.outcome is Outcome.FAILED
    assert "timed out after 3 s" in result.message
    assert list((tmp_path / "tmp").iterdir()), "the sweep stopped before the end"


def test_verification_reports_the_space_freed(tmp_path: Path) -> None:
    make_file(tmp_path / "tmp" / "old.bin", 4 * KIB)
    executor = ClearTemp(Runtime.system())
    result = clear(tmp_path / "tmp")

    verdict = executor.verify(request_for("clear_temp", "temp"), result, {})
    nothing = executor.verify(
        request_for("clear_temp", "temp"), clear(tmp_path / "tmp"), {}
    )

    assert verdict.ok
    assert verdict.detail["bytes_freed"] == 4 * KIB
    assert not nothing.ok


def test_undo_says_deleted_files_cannot_come_back(tmp_path: Path) -> None:
    undone = ClearTemp(Runtime.system()).undo(
        request_for("clear_temp", "temp"), spec_for("clear_temp"), {}
    )

    assert undone.outcome is Outcome.FAILED
    assert "cannot be restored" in undone.message


def test_on_a_full_small_filesystem_the_freed_space_is_really_free(
    small_fs: Path,
) -> None:
    old = [make_file(small_fs / f"old-{i}.bin", 256 * KIB) for i in range(12)]
    fresh = make_file(small_fs / "fresh.bin", 256 * KIB, age_minutes=0)
    before = psutil.disk_usage(str(small_fs)).free

    with held_by_child(old[0]):
        result = clear(small_fs)

    after = psutil.disk_usage(str(small_fs)).free
    assert result.detail["files_deleted"] == 11
    assert after - before == result.detail["bytes_freed"] == 11 * 256 * KIB
    assert old[0].exists()
    assert fresh.exists()


def test_a_filesystem_mounted_inside_the_folder_is_not_entered(
    tmp_path: Path, small_fs: Path
) -> None:
    # small_fs is mounted at tmp_path / "small-fs": configure its parent.
    inside = make_file(small_fs / "other-device.bin")
    local = make_file(tmp_path / "local.bin")

    result = clear(tmp_path)

    assert inside.exists()
    assert not local.exists()
    assert result.detail["skipped"]["other_device"] == 1
