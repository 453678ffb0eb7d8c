"""The host as psutil and the kernel see it: CPU, load, memory, swap, disks.

``HostCollector`` writes ``host``, ``memory`` and ``swap``; ``DiskCollector``
writes ``disk``, apart, so that a mount that hangs (a dead NFS server) costs
the disk facts only. Both keep short histories on the instance to derive
rates from successive snapshots: CPU percent from CPU-time deltas, memory
and disk growth per minute over ``window_s``, OOM kills in the window from
the kernel's counter (the container's cgroup counter when there is one, the
host's ``/proc/vmstat`` otherwise), and minutes until each disk is full.

Disk percent is reported both ways, because reserved blocks (5 % of an ext4
filesystem by default) make them differ: ``percent`` is used / (used +
available to unprivileged users), what ``df`` and psutil print and what an
application writing as a normal user runs into; ``percent_of_total`` is
used / size. Sizes are in MB of 2^20 bytes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from engine.facts.cgroup import CgroupMemory, read_cgroup_memory, read_vmstat_oom_kills
from engine.facts.errors import CollectorError
from engine.facts.window import CounterWindow, Trend

log = logging.getLogger("engine.facts.host")

MB = float(1 << 20)
TOP_PROCESSES = 10


class HostCollector:
    name: str = "host"
    sections: tuple[str, ...] = ("host", "memory", "swap")

    def __init__(
        self,
        *,
        window_s: float = 600.0,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        proc_root: Path = Path("/proc"),
        top: int = TOP_PROCESSES,
    ) -> None:
        self.cgroup_root = cgroup_root
        self.proc_root = proc_root
        self.top = top
        self._cpu_before: tuple[float, float] | None = None  # (busy, total)
        self._used = Trend(window_s)
        self._oom = CounterWindow(window_s)

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        at = now.timestamp()
        return {
            "host": self._host(at),
            "memory": self._memory(at),
            "swap": _swap(),
        }

    def _host(self, at: float) -> dict[str, Any]:
        cpus = psutil.cpu_count() or None
        load1, load5, load15 = psutil.getloadavg()
        return {
            "available": True,
            "cpu_percent": self._cpu_percent(),
            "cpu_count": cpus,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "load_per_cpu": load1 / cpus if cpus else None,
            "uptime_s": max(at - psutil.boot_time(), 0.0),
            "top_processes": self._top_processes(),
        }

    def _cpu_percent(self) -> float | None:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        total = sum(times)
        before, self._cpu_before = self._cpu_before, (total - idle, total)
        if before is None or total <= before[1]:
            return None  # no interval to measure over yet
        busy = (total - idle - before[0]) / (total - before[1]) * 100.0
        return round(min(max(busy, 0.0), 100.0), 1)

    def _top_processes(self) -> list[dict[str, Any]]:
        total = psutil.virtual_memory().total
        rows = []
        for proc in psutil.process_iter(["pid", "name", "memory_info"]):
            memory = proc.info.get("memory_info")
            if memory is None:
                continue  # gone, or not ours to read
            rows.append((memory.rss, proc.info["pid"], proc.info.get("name") or ""))
        rows.sort(reverse=True)
        return [
            {
                "pid": pid,
                "name": name,
                "rss_mb": round(rss / MB, 1),
                "memory_percent": round(rss / total * 100.0, 2),
            }
            for rss, pid, name in rows[: self.top]
        ]

    def _memory(self, at: float) -> dict[str, Any]:
        memory = psutil.virtual_memory()
        used_mb = (memory.total - memory.available) / MB
        self._used.add(at, used_mb)
        cgroup = read_cgroup_memory(self.cgroup_root, self.proc_root / "self/cgroup")
        facts: dict[str, Any] = {
            "available": True,
            "total_mb": round(memory.total / MB, 1),
            "used_mb": round(used_mb, 1),
            "available_mb": round(memory.available / MB, 1),
            "percent": memory.percent,
            "growth_mb_per_min": _rounded(self._used.per_minute()),
            "oom_kills_recent": self._oom_kills(at, cgroup),
        }
        facts.update(_limit(cgroup, memory.total))
        return facts

    def _oom_kills(self, at: float, cgroup: CgroupMemory | None) -> int | None:
        counter = cgroup.oom_kills if cgroup else None
        if counter is None:
            counter = read_vmstat_oom_kills(self.proc_root)
        if counter is None:
            return None
        self._oom.add(at, counter)
        return self._oom.increase()


def _limit(cgroup: CgroupMemory | None, host_total: int) -> dict[str, Any]:
    # A limit above the host's memory is no limit at all.
    if cgroup is None or cgroup.limit_bytes is None or cgroup.limit_bytes >= host_total:
        return {"limit_mb": None, "limit_percent": None}
    used = cgroup.working_set_bytes
    percent = None if used is None else min(used / cgroup.limit_bytes * 100.0, 100.0)
    return {
        "limit_mb": round(cgroup.limit_bytes / MB, 1),
        "limit_percent": _rounded(percent),
    }


def _swap() -> dict[str, Any]:
    swap = psutil.swap_memory()
    return {
        "total_mb": round(swap.total / MB, 1),
        "used_mb": round(swap.used / MB, 1),
        # A host without swap has no swap percent, not 0 % of nothing.
        "percent": swap.percent if swap.total else None,
    }


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class MountUsage:
    mountpoint: str
    fstype: str | None
    total: int
    used: int
    free: int  # available to unprivileged users
    inodes_total: int
    inodes_used: int

    @property
    def percent(self) -> float | None:
        usable = self.used + self.free
        return self.used / usable * 100.0 if usable else None

    @property
    def percent_of_total(self) -> float | None:
        return self.used / self.total * 100.0 if self.total else None

    @property
    def inodes_percent(self) -> float | None:
        if not self.inodes_total:
            return None  # filesystems without an inode table (btrfs, vfat)
        return self.inodes_used / self.inodes_total * 100.0


def mount_usage(mountpoint: str, fstype: str | None = None) -> MountUsage:
    stat = os.statvfs(mountpoint)
    total = stat.f_blocks * stat.f_frsize
    return MountUsage(
        mountpoint,
        fstype,
        total,
        total - stat.f_bfree * stat.f_frsize,
        stat.f_bavail * stat.f_frsize,
        stat.f_files,
        stat.f_files - stat.f_ffree,
    )


class DiskCollector:
    name: str = "disk"
    sections: tuple[str, ...] = ("disk",)

    def __init__(self, mounts: Sequence[Path] = (), *, window_s: float = 600.0) -> None:
        self.mounts = tuple(str(m) for m in mounts)
        self.window_s = window_s
        self._growth: dict[str, Trend] = {}

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        started = time.monotonic()
        rows, failures = [], []
        for mountpoint, fstype in self._mountpoints():
            try:
                rows.append(self._row(mount_usage(mountpoint, fstype), now))
            except OSError as exc:
                failures.append(f"{mountpoint}: {exc.strerror or exc}")
        if not rows:
            raise CollectorError(
                "no mount could be read (" + "; ".join(failures) + "); check "
                "INCIDENT_POLICY_DISK_MOUNTS"
            )
        log.debug(
            "disk.collected",
            extra={"mounts": len(rows), "ms": (time.monotonic() - started) * 1000},
        )
        return {"disk": _summary(rows, failures)}

    def _mountpoints(self) -> list[tuple[str, str | None]]:
        if self.mounts:
            return [(m, _fstype_of(m)) for m in self.mounts]
        found: dict[str, str | None] = {
            p.mountpoint: p.fstype for p in psutil.disk_partitions(all=False)
        }
        # In a container "/" is an overlay, which psutil leaves out.
        found.setdefault("/", _fstype_of("/"))
        return sorted(found.items())

    def _row(self, usage: MountUsage, now: datetime) -> dict[str, Any]:
        used_mb = usage.used / MB
        free_mb = usage.free / MB
        trend = self._growth.setdefault(usage.mountpoint, Trend(self.window_s))
        trend.add(now.timestamp(), used_mb)
        growth = trend.per_minute()
        to_full = free_mb / growth if growth and growth > 0 else None
        return {
            "mountpoint": usage.mountpoint,
            "fstype": usage.fstype,
            "total_mb": round(usage.total / MB, 1),
            "used_mb": round(used_mb, 1),
            "free_mb": round(free_mb, 1),
            "percent": _rounded(usage.percent),
            "percent_of_total": _rounded(usage.percent_of_total),
            "inodes_percent": _rounded(usage.inodes_percent),
            "growth_mb_per_min": _rounded(growth),
            "minutes_to_full": _rounded(to_full),
        }


def _fstype_of(mountpoint: str) -> str | None:
    best: tuple[int, str | None] = (-1, None)
    for part in psutil.disk_partitions(all=True):
        inside = _is_within(mountpoint, part.mountpoint)
        if inside and len(part.mountpoint) > best[0]:
            best = (len(part.mountpoint), part.fstype)
    return best[1]


def _is_within(path: str, mountpoint: str) -> bool:
    return path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")


def _summary(rows: list[dict[str, Any]], failures: list[str]) -> dict[str, Any]:
    worst = max(rows, key=lambda r: r["percent"] if r["percent"] is not None else -1)
    inodes = [r["inodes_percent"] for r in rows if r["inodes_percent"] is not None]
    to_full = [r["minutes_to_full"] for r in rows if r["minutes_to_full"] is not None]
    return {
        "available": True,
        "error": "; ".join(failures) or None,
        "max_percent": worst["percent"],
        "max_inodes_percent": max(inodes, default=None),
        "worst_mount": worst["mountpoint"],
        "min_minutes_to_full": min(to_full, default=None),
        "mounts": rows[:64],
    }
