"""One action on one target at a time, across threads and processes of a host.

``TargetLocks.acquire(action, target)`` returns a held ``TargetLock``, a
context manager, or raises ``TargetLockBusy`` after the timeout. Two layers
make it hold everywhere on one host: a ``threading.Lock`` per key for the
threads of this process, then an exclusive ``flock`` on a lock file under
``DATA_DIR/locks`` for other processes (service replicas, the command line).
The kernel drops a ``flock`` when its holder dies, so a crash never leaves
a stale lock behind; lock files are left in place, since removing one while
another process waits on it would let two holders in. The holder writes
its process id, description and start time into the file, which the busy
error quotes. Locks between hosts are the database's business, not this
module's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from engine.errors import ActionError
from engine.runtime import Clock
from engine.settings import Settings


class TargetLockBusy(ActionError):
    """Another run of the same action on the same target holds the lock."""

    default_code = "E601"


class TargetLock:
    """A held lock; release it once, by ``release()`` or leaving ``with``."""

    def __init__(self, key: str, thread_lock: threading.Lock, fd: int) -> None:
        self.key = key
        self._thread_lock = thread_lock
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            self._thread_lock.release()

    def __enter__(self) -> TargetLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


class TargetLocks:
    """Lock files for (action, target) pairs under one folder."""

    def __init__(
        self,
        folder: Path,
        clock: Clock,
        *,
        poll_interval_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._folder = folder
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._thread_locks: dict[str, threading.Lock] = {}
        self._registry = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, clock: Clock) -> TargetLocks:
        return cls(settings.data_dir / "locks", clock)

    def path_for(self, action: str, target: str) -> Path:
        # Targets are free text (paths, names with spaces): the file name is
        # a readable prefix plus a digest of the exact pair.
        digest = hashlib.sha256(f"{action}\0{target}".encode()).hexdigest()[:24]
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{action}-{target}")[:64]
        return self._folder / f"{readable}-{digest}.lock"

    def acquire(
        self, action: str, target: str, *, timeout_s: float, holder: str = ""
    ) -> TargetLock:
        key = f"{action}\0{target}"
        started = self._monotonic()
        thread_lock = self._thread_lock(key)
        if not thread_lock.acquire(timeout=max(timeout_s, 0.0)):
            raise self._busy(action, target, timeout_s)
        try:
            remaining = timeout_s - (self._monotonic() - started)
            fd = self._lock_file(self.path_for(action, target), remaining)
        except BaseException:
            thread_lock.release()
            raise
        if fd is None:
            thread_lock.release()
            raise self._busy(action, target, timeout_s)
        self._write_holder(fd, holder)
        return TargetLock(key, thread_lock, fd)

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._registry:
            return self._thread_locks.setdefault(key, threading.Lock())

    def _lock_file(self, path: Path, timeout_s: float) -> int | None:
        self._folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)
        deadline = self._monotonic() + max(timeout_s, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if self._monotonic() >= deadline:
                    os.close(fd)
                    return None
                self._sleep(self._poll_interval_s)

    def _write_holder(self, fd: int, holder: str) -> None:
        record = {
            "pid": os.getpid(),
            "holder": holder,
            "since": self._clock.now().isoformat(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)

    def _busy(self, action: str, target: str, timeout_s: float) -> TargetLockBusy:
        path = self.path_for(action, target)
        return TargetLockBusy(
            f"Action {action!r} on target {target!r} is already running "
            f"({_describe_holder(path)}); waited {timeout_s:g} s. Let that run "
            "finish, or look at its incident before retrying.",
        )


def _describe_holder(path: Path) -> str:
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return f"holder unknown, lock file {path}"
    holder = record.get("holder") or "no description"
    return (
        f"held by process {record.get('pid')} for {holder} since {record.get('since')}"
    )
