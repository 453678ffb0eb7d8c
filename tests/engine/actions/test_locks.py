"""Target locks between threads and between real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.actions.locks import TargetLockBusy, TargetLocks
from engine.runtime import SystemClock

HOLDER = """
import sys
from pathlib import Path
from engine.actions.locks import TargetLocks
from engine.runtime import SystemClock
locks = TargetLocks(Path(sys.argv[1]), SystemClock())
with locks.acquire("pm2_restart", "web", timeout_s=5, holder="inc_child"):
    print("held", flush=True)
    sys.stdin.read()
"""


def locks_in(folder: Path) -> TargetLocks:
    return TargetLocks(folder, SystemClock(), poll_interval_s=0.01)


@contextmanager
def held_in_child(folder: Path) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "held"
        yield child
    finally:
        if child.poll() is None:
            child.stdin.close()
        child.wait(timeout=10)


def test_a_second_thread_waits_then_gives_up_with_a_clear_error(
    tmp_path: Path,
) -> None:
    locks = locks_in(tmp_path)
    failures: list[TargetLockBusy] = []

    def contend() -> None:
        try:
            locks.acquire("pm2_restart", "web", timeout_s=0.2)
        except TargetLockBusy as exc:
            failures.append(exc)

    with locks.acquire("pm2_restart", "web", timeout_s=1, holder="inc_000001"):
        other = threading.Thread(target=contend)
        other.start()
        other.join()

    assert len(failures) == 1
    assert failures[0].code == "E601"
    assert "'pm2_restart' on target 'web' is already running" in failures[0].message
    assert f"held by process {os.getpid()} for inc_000001" in failures[0].message


def test_the_lock_is_free_again_after_release(tmp_path: Path) -> None:
    locks = locks_in(tmp_path)
    first = locks.acquire("nginx_reload", "nginx", timeout_s=1)
    first.release()

    with locks.acquire("nginx_reload", "nginx", timeout_s=0) as second:
        assert second.held
    assert not first.held and not second.held


def test_other_targets_and_other_actions_do_not_wait(tmp_path: Path) -> None:
    locks = locks_in(tmp_path)

    with locks.acquire("pm2_restart", "web", timeout_s=0):
        with locks.acquire("pm2_restart", "api", timeout_s=0) as other_target:
            assert other_target.held
        with locks.acquire("pause_jobs", "web", timeout_s=0) as other_action:
            assert other_action.held


def test_another_process_holding_the_lock_makes_acquire_fail(tmp_path: Path) -> None:
    locks = locks_in(tmp_path)

    with held_in_child(tmp_path) as child:
        with pytest.raises(TargetLockBusy) as busy:
            locks.acquire("pm2_restart", "web", timeout_s=0.2)
        assert f"held by process {child.pid} for inc_child" in busy.value.message

    with locks.acquire("pm2_restart", "web", timeout_s=1) as after:
        assert after.held


def test_a_holder_that_dies_leaves_no_stale_lock(tmp_path: Path) -> None:
    locks = locks_in(tmp_path)

    with held_in_child(tmp_path) as child:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        with locks.acquire("pm2_restart", "web", timeout_s=1) as taken:
            assert taken.held


def test_lock_files_stay_in_their_folder_whatever_the_target(tmp_path: Path) -> None:
    locks = locks_in(tmp_path / "locks")

    path = locks.path_for("clear_temp", "../../etc/passwd")

    assert path.parent == tmp_path / "locks"
    assert "/" not in path.name
    assert path != locks.path_for("clear_temp", "../../etc/passwd2")
