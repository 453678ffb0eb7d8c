"""The memory limit and usage of the container the service runs in.

Inside a container psutil reports the host's memory, while the kernel kills
processes when the container's own limit is reached. The limit comes from
the cgroup files: version 2 (``memory.max``, ``memory.current``,
``memory.events``) or version 1 (``memory.limit_in_bytes``,
``memory.usage_in_bytes``, ``memory.oom_control``), found through
``/proc/self/cgroup``. Usage is the working set (usage less inactive page
cache), the figure the kernel's OOM decisions and kubelet follow. Both roots
are parameters so the reader can be pointed at a copy of the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UNLIMITED = 1 << 62  # v1 writes "no limit" as a page-rounded 2^63 - 1


@dataclass(frozen=True, slots=True)
class CgroupMemory:
    limit_bytes: int | None  # None: no limit set
    working_set_bytes: int | None
    oom_kills: int | None  # kills in this cgroup since it was created


def read_cgroup_memory(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> CgroupMemory | None:
    """The cgroup's memory facts, or None when no cgroup memory files exist."""
    v1_path, v2_path = _own_paths(proc_cgroup)
    if v1_path is not None:
        found = _directory(root / "memory", v1_path, "memory.limit_in_bytes")
        if found is not None:
            return _read_v1(found)
    if v2_path is not None:
        found = _directory(root, v2_path, "memory.max")
        if found is not None:
            return _read_v2(found)
    return None


def _own_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    v1 = v2 = None
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return None, None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif "memory" in parts[1].split(","):
            v1 = parts[2]
    return v1, v2


def _directory(base: Path, own: str, probe: str) -> Path | None:
    # In a container the cgroup namespace makes the own path the mount root.
    for candidate in (base / own.lstrip("/"), base):
        if (candidate / probe).is_file():
            return candidate
    return None


def _read_v1(directory: Path) -> CgroupMemory:
    limit = _number(directory / "memory.limit_in_bytes")
    usage = _number(directory / "memory.usage_in_bytes")
    inactive = _keyed(directory / "memory.stat", "total_inactive_file")
    return CgroupMemory(
        limit if limit is not None and limit < UNLIMITED else None,
        _working_set(usage, inactive),
        _keyed(directory / "memory.oom_control", "oom_kill"),
    )


def _read_v2(directory: Path) -> CgroupMemory:
    raw = _text(directory / "memory.max")
    limit = int(raw) if raw and raw.isdigit() else None
    usage = _number(directory / "memory.current")
    inactive = _keyed(directory / "memory.stat", "inactive_file")
    return CgroupMemory(
        limit,
        _working_set(usage, inactive),
        _keyed(directory / "memory.events", "oom_kill"),
    )


def _working_set(usage: int | None, inactive: int | None) -> int | None:
    if usage is None:
        return None
    return max(usage - (inactive or 0), 0)


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _number(path: Path) -> int | None:
    raw = _text(path)
    return int(raw) if raw and raw.isdigit() else None


def _keyed(path: Path, key: str) -> int | None:
    """The value of ``key`` in a ``key value`` per line file."""
    raw = _text(path)
    for line in (raw or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def read_vmstat_oom_kills(proc: Path = Path("/proc")) -> int | None:
    """OOM kills on the whole host since boot (``oom_kill`` in vmstat)."""
    return _keyed(proc / "vmstat", "oom_kill")
