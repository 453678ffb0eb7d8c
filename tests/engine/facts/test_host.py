from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from engine.facts.cgroup import read_cgroup_memory, read_vmstat_oom_kills
from engine.facts.errors import CollectorError
from engine.facts.host import DiskCollector, HostCollector, mount_usage
from tests.engine.facts.conftest import assert_valid

NOW = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
MB = 1 << 20


def test_host_facts_fit_the_vocabulary() -> None:
    facts = HostCollector().collect(datetime.now(UTC))
    assert_valid(facts)
    assert facts["host"]["cpu_count"] == psutil.cpu_count()
    assert facts["memory"]["total_mb"] == round(psutil.virtual_memory().total / MB, 1)


def test_cpu_percent_needs_two_samples() -> None:
    host = HostCollector()
    assert host.collect(NOW)["host"]["cpu_percent"] is None
    sum(i * i for i in range(300_000))  # let some CPU time pass
    second = host.collect(NOW + timedelta(seconds=5))["host"]["cpu_percent"]
    assert second is not None and 0 <= second <= 100


def test_top_processes_include_this_one_by_rss() -> None:
    top = HostCollector(top=20).collect(NOW)["host"]["top_processes"]
    rss = [p["rss_mb"] for p in top]
    assert rss == sorted(rss, reverse=True)
    mine = psutil.Process().memory_info().rss
    if mine >= min(rss) * MB:
        assert os.getpid() in [p["pid"] for p in top]


def test_memory_growth_and_oom_kills_need_history() -> None:
    host = HostCollector()
    first = host.collect(NOW)["memory"]
    assert first["growth_mb_per_min"] is None
    assert first["oom_kills_recent"] is None
    ballast = bytearray(64 * MB)
    later = host.collect(NOW + timedelta(minutes=1))["memory"]
    assert later["growth_mb_per_min"] is not None
    if read_vmstat_oom_kills() is not None:
        assert later["oom_kills_recent"] is not None
    del ballast


def test_swap_percent_is_null_without_swap() -> None:
    swap = HostCollector().collect(NOW)["swap"]
    if psutil.swap_memory().total == 0:
        assert swap["percent"] is None
    else:
        assert swap["percent"] == psutil.swap_memory().percent


def write_cgroup_v2(root: Path, limit: str, current: int, oom: int) -> Path:
    own = root / "sys" / "kubepods" / "pod1"
    own.mkdir(parents=True)
    (own / "memory.max").write_text(limit + "\n")
    (own / "memory.current").write_text(f"{current}\n")
    (own / "memory.stat").write_text(
        f"anon 1\ninactive_file {10 * MB}\nactive_file 2\n"
    )
    (own / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 2\noom_kill {oom}\n")
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/kubepods/pod1\n")
    return root


def test_cgroup_v2_limit_working_set_and_oom_kills(tmp_path: Path) -> None:
    root = write_cgroup_v2(tmp_path, str(512 * MB), 300 * MB, 4)
    memory = read_cgroup_memory(root / "sys", root / "proc" / "self" / "cgroup")
    assert memory is not None
    assert memory.limit_bytes == 512 * MB
    assert memory.working_set_bytes == 290 * MB
    assert memory.oom_kills == 4


def test_cgroup_v2_without_limit_says_so(tmp_path: Path) -> None:
    root = write_cgroup_v2(tmp_path, "max", 300 * MB, 0)
    memory = read_cgroup_memory(root / "sys", root / "proc" / "self" / "cgroup")
    assert memory is not None and memory.limit_bytes is None


def test_cgroup_v1_limit_is_read_through_proc_self_cgroup(tmp_path: Path) -> None:
    own = tmp_path / "sys" / "memory" / "docker" / "abc"
    own.mkdir(parents=True)
    (own / "memory.limit_in_bytes").write_text(f"{256 * MB}\n")
    (own / "memory.usage_in_bytes").write_text(f"{200 * MB}\n")
    (own / "memory.stat").write_text(f"cache 5\ntotal_inactive_file {50 * MB}\n")
    (own / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"
    )
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("12:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    memory = read_cgroup_memory(tmp_path / "sys", cgroup)
    assert memory is not None
    assert memory.limit_bytes == 256 * MB
    assert memory.working_set_bytes == 150 * MB
    assert memory.oom_kills == 7


def test_container_limit_appears_in_memory_facts(tmp_path: Path) -> None:
    root = write_cgroup_v2(tmp_path, str(512 * MB), 266 * MB, 1)
    host = HostCollector(cgroup_root=root / "sys", proc_root=root / "proc")
    memory = host.collect(NOW)["memory"]
    assert memory["limit_mb"] == 512.0
    assert memory["limit_percent"] == pytest.approx(256 / 512 * 100)
    events = root / "sys" / "kubepods" / "pod1" / "memory.events"
    events.write_text("oom_kill 3\n")
    later = host.collect(NOW + timedelta(minutes=1))["memory"]
    assert later["oom_kills_recent"] == 2
    assert_valid({"memory": later})


def test_this_machines_cgroup_files_are_read() -> None:
    memory = read_cgroup_memory()
    if memory is None:
        pytest.skip("no cgroup memory controller visible here")
    assert memory.working_set_bytes is None or memory.working_set_bytes > 0


def test_disk_facts_fit_the_vocabulary_for_every_real_mount() -> None:
    facts = DiskCollector().collect(NOW)
    assert_valid(facts)
    mounts = {m["mountpoint"] for m in facts["disk"]["mounts"]}
    assert "/" in mounts


def test_unreadable_mount_alone_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(CollectorError) as raised:
        DiskCollector([tmp_path / "missing"]).collect(NOW)
    assert "INCIDENT_POLICY_DISK_MOUNTS" in raised.value.message


@pytest.fixture
def small_ext4(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB ext4 with 20 % reserved blocks, loop-mounted for the test."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("needs root and mkfs.ext4 to make a real small filesystem")
    image, mountpoint = tmp_path / "disk.img", tmp_path / "mnt"
    mountpoint.mkdir()
    with image.open("wb") as handle:
        handle.truncate(8 * MB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "20", str(image)], check=True)
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"loop mounts are not permitted here: {mounted.stderr!r}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_disk_percent_definitions_differ_by_reserved_blocks(small_ext4: Path) -> None:
    disk = DiskCollector([small_ext4])
    disk.collect(NOW)
    (small_ext4 / "fill").write_bytes(b"\0" * (4 * MB))
    os.sync()
    mount = disk.collect(NOW + timedelta(minutes=2))["disk"]["mounts"][0]
    stat = os.statvfs(small_ext4)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    usable = used + stat.f_bavail * stat.f_frsize
    assert mount["percent"] == pytest.approx(used / usable * 100, abs=0.01)
    assert mount["percent_of_total"] == pytest.approx(
        used / (stat.f_blocks * stat.f_frsize) * 100, abs=0.01
    )
    assert mount["percent"] > mount["percent_of_total"] + 5
    assert mount["percent"] == pytest.approx(
        psutil.disk_usage(str(small_ext4)).percent, abs=0.1
    )
    assert mount["growth_mb_per_min"] == pytest.approx(2.0, abs=0.5)
    expected_minutes = mount["free_mb"] / mount["growth_mb_per_min"]
    assert mount["minutes_to_full"] == pytest.approx(expected_minutes, rel=0.1)
    assert_valid({"disk": {"mounts": [mount]}})


def test_inodes_percent_follows_files_created(small_ext4: Path) -> None:
    before = mount_usage(str(small_ext4)).inodes_percent
    for i in range(200):
        (small_ext4 / f"f{i}").touch()
    after = mount_usage(str(small_ext4)).inodes_percent
    assert before is not None and after is not None and after > before
