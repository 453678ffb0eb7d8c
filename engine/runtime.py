"""What the engine takes from the outside world: time, ids and commands.

The clock, the id generator and the command runner are injected everywhere
they are needed, so tests and replays are deterministic and no module calls
``datetime.now()`` or ``subprocess`` on its own. ``Runtime`` bundles the
three; ``Runtime.system()`` is the real one.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

OUTPUT_LIMIT = 64 * 1024


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told; for tests and replays."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware start time")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class IdGenerator(Protocol):
    def new(self, prefix: str) -> str: ...


class SortableIds:
    """Ids of 48 bits of milliseconds and 80 random bits, in hex, prefixed.

    Ids sort by creation time (to the millisecond), which keeps database
    indexes append-mostly and makes a listing of ids readable as a timeline.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def new(self, prefix: str) -> str:
        millis = int(self._clock.now().timestamp() * 1000) & (2**48 - 1)
        return f"{prefix}_{millis:012x}{secrets.randbits(80):020x}"


class SequentialIds:
    """Predictable ids (``inc_000001``) for tests and dry-run replays."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        with self._lock:
            count = self._counts.get(prefix, 0) + 1
            self._counts[prefix] = count
        return f"{prefix}_{count:06d}"


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out and not self.error


class CommandRunner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult: ...


def _tail(data: bytes) -> str:
    return data[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")


class SubprocessRunner:
    """Runs a fixed argument vector, never through a shell, with a timeout.

    Output is kept in full up to the caller (``pm2 jlist`` can print
    hundreds of kilobytes); only the stored tail of an action's output is cut.
    """

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        args = tuple(argv)
        started = time.monotonic()
        full_env = {**os.environ, **(env or {})}
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                timeout=timeout_s,
                env=full_env,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            return CommandResult(
                args,
                None,
                _tail(exc.stdout or b""),
                _tail(exc.stderr or b""),
                time.monotonic() - started,
                timed_out=True,
                error=f"timed out after {timeout_s:g} s",
            )
        except OSError as exc:
            return CommandResult(
                args, None, "", "", time.monotonic() - started, error=str(exc)
            )
        return CommandResult(
            args,
            done.returncode,
            done.stdout.decode("utf-8", errors="replace"),
            _tail(done.stderr),
            time.monotonic() - started,
        )


@dataclass(frozen=True, slots=True)
class Runtime:
    clock: Clock = field(default_factory=SystemClock)
    ids: IdGenerator = field(default_factory=lambda: SortableIds(SystemClock()))
    commands: CommandRunner = field(default_factory=SubprocessRunner)

    @classmethod
    def system(cls) -> Runtime:
        clock = SystemClock()
        return cls(clock=clock, ids=SortableIds(clock), commands=SubprocessRunner())
