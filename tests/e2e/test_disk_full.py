"""A temp folder fills a small filesystem: only old, closed temp files go."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.e2e.host import RealHost, actions_named, snapshot_of, verified

SIZE_MB = 8
CHUNK = 1 << 20
OLD_S = 3 * 3600.0  # older than the catalog's min_age_minutes (60)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB of our own, unmounted at the end."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    argv = [
        "mount",
        "-t",
        "tmpfs",
        "-o",
        f"size={SIZE_MB}m",
        "e2e-small",
        str(mountpoint),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError as exc:
        done = subprocess.CompletedProcess(argv, 1, "", str(exc))
    if done.returncode != 0:
        need("a tmpfs mount", f"cannot mount a small tmpfs: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=30)


@dataclass
class TempTree:
    """The files of the case: what must go and what must stay."""

    temp: Path
    old: list[Path]
    fresh: Path
    held: Path
    link: Path
    outside: Path


def write(path: Path, size: int, *, old: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if old:
        stamp = time.time() - OLD_S
        os.utime(path, (stamp, stamp))
    return path


def percent_used(mountpoint: Path) -> float:
    stat = os.statvfs(mountpoint)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    return used / (used + stat.f_bavail * stat.f_frsize) * 100.0


def fill(small_fs: Path) -> TempTree:
    temp = small_fs / "tmp"
    outside = write(small_fs / "keep" / "report.pdf", CHUNK // 2, old=True)
    link = temp / "report-link.pdf"
    tree = TempTree(
        temp=temp,
        old=[write(temp / "uploads" / "chunk-0.part", CHUNK, old=True)],
        fresh=write(temp / "fresh.part", CHUNK // 4, old=False),
        held=write(temp / "held.tmp", CHUNK // 4, old=True),
        link=link,
        outside=outside,
    )
    link.symlink_to(outside)
    while percent_used(small_fs) < 97.0:
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        size = min(CHUNK, free - CHUNK // 16)
        tree.old.append(write(temp / f"old-{len(tree.old)}.tmp", size, old=True))
    return tree


def test_disk_full_clears_only_old_closed_temp_files_and_spares_a_symlink_target(
    real_host: Callable[..., RealHost], small_fs: Path
) -> None:
    tree = fill(small_fs)
    host = real_host(disk_mounts=[small_fs], temp_dirs=[tree.temp])
    freed = sum(p.stat().st_size for p in tree.old)

    with tree.held.open("rb"):
        raised = host.tick_until("watch-disk")
        host.drain()

    view = host.view(raised.incident_id)
    assert view.incident.type == "disk_pressure"
    seen = snapshot_of(view, "initial")["disk"]
    assert seen["worst_mount"] == str(small_fs) and seen["max_percent"] >= 95

    [clear] = actions_named(view, "clear_temp")
    assert (clear.target, clear.status, clear.rule_id) == (
        "temp",
        "succeeded",
        "free-temp-space",
    )
    assert clear.command == []  # no command: files are deleted in-process
    assert clear.output_tail.startswith(f"Deleted {len(tree.old)} files")
    assert verified(clear)["ok"] is True
    assert verified(clear)["bytes_freed"] == freed
    [finished] = [
        e
        for e in view.events
        if e.kind == "action.finished" and e.data["action_id"] == clear.id
    ]
    assert sorted(finished.data["detail"]["deleted"]) == sorted(map(str, tree.old))
    assert finished.data["detail"]["bytes_freed"] == freed
    [pause] = actions_named(view, "pause_jobs")
    assert (pause.status, pause.refusal_code) == ("refused", "not_configured")
    assert snapshot_of(view, "verify")["disk"]["max_percent"] < 50
    assert view.incident.status == "monitoring"

    assert [p for p in tree.old if p.exists()] == []
    assert (tree.temp / "uploads").is_dir()
    assert tree.fresh.exists() and tree.held.exists()
    assert tree.link.is_symlink() and tree.outside.exists()
