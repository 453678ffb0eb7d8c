"""The nginx error log over the recent window: upstream, DNS and write failures.

Lines are read incrementally with ``LogTail`` and sorted into kinds by the
messages nginx writes: an upstream that refused the connection (``111:
Connection refused``), timed out (``upstream timed out``), reset or closed
it early, or had no live server; a name that could not be resolved (``could
not be resolved``, ``host not found``); a log write that failed (``No space
left on device``, ``write() ... was incomplete``). Client-side resets are not
upstream failures and are not counted. Each kind is counted per second and
summed over the window; the failing upstreams are named by the address nginx
logs (``127.0.0.1:8080``, or the upstream block's name). The error log's
times have no zone: they are read in ``tz`` (the host's local zone by
default). Failure rates need the request count of the access log; the
observer derives them once both collectors have run.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from engine.facts.errors import CollectorError
from engine.facts.logtail import LogTail
from engine.facts.window import SecondBuckets

log = logging.getLogger("engine.facts.errorlog")

MAX_NAMES = 256
_LINE = re.compile(
    rb"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(error|crit|alert|emerg)\] (.*)$"
)
_UPSTREAM = re.compile(rb'upstream: "(?:[a-z]+://)?([^/"]+)')
_HOST_NOT_FOUND = re.compile(rb"host not found in upstream \"([^\"]+)\"")


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    second: int
    kind: str  # refused, timed_out, reset, upstream, dns, write
    upstream: str | None
    connecting: bool  # failed while connecting (a network-level failure)


def classify(message: bytes) -> str | None:
    """The kind of failure a message reports, or None for anything else."""
    if b"could not be resolved" in message or b"host not found" in message:
        return "dns"
    if b"No space left on device" in message or (
        b"write() to" in message and b"was incomplete" in message
    ):
        return "write"
    if b"upstream" not in message:
        return None
    if b"Connection refused" in message:
        return "refused"
    if b"timed out" in message:
        return "timed_out"
    if b"reset by peer" in message or b"prematurely closed" in message:
        return "reset"
    if b"no live upstreams" in message or b"while connecting to upstream" in message:
        return "upstream"
    return None


class ErrorLineParser:
    def __init__(self, tz: tzinfo | None = None) -> None:
        self.tz = tz
        self._last_stamp = b""
        self._last_second = 0

    def parse(self, line: bytes) -> ErrorEntry | None:
        match = _LINE.match(line)
        if match is None:
            return None
        message = match[3]
        kind = classify(message)
        if kind is None:
            return None
        second = self._second(match[1])
        if second is None:
            return None
        return ErrorEntry(
            second,
            kind,
            _upstream_name(message),
            b"while connecting to upstream" in message,
        )

    def _second(self, stamp: bytes) -> int | None:
        if stamp != self._last_stamp:
            try:
                moment = datetime.strptime(stamp.decode("ascii"), "%Y/%m/%d %H:%M:%S")
            except ValueError:
                return None
            aware = moment.replace(tzinfo=self.tz) if self.tz else moment.astimezone()
            self._last_stamp, self._last_second = stamp, int(aware.timestamp())
        return self._last_second


def _upstream_name(message: bytes) -> str | None:
    found = _UPSTREAM.search(message) or _HOST_NOT_FOUND.search(message)
    return found[1].decode("utf-8", "replace") if found else None


@dataclass(slots=True)
class _Second:
    kinds: Counter[str] = field(default_factory=Counter)
    connect_failures: int = 0
    upstreams: Counter[str] = field(default_factory=Counter)


class ErrorLogCollector:
    """Writes ``upstream``, ``dns``, ``network``, and ``disk.write_errors``."""

    name: str = "error_log"
    sections: tuple[str, ...] = ("upstream", "dns", "network")

    def __init__(
        self,
        path: Path,
        *,
        window_s: float = 300.0,
        backlog_bytes: int | None = 64 << 20,
        tz: tzinfo | None = None,
    ) -> None:
        self.tail = LogTail(path, backlog_bytes=backlog_bytes)
        self.window_s = window_s
        self._parser = ErrorLineParser(tz)
        self._buckets: SecondBuckets[_Second] = SecondBuckets(_Second)

    def close(self) -> None:
        self.tail.close()

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        cutoff = int(now.timestamp() - self.window_s)
        try:
            self._fold(self.tail.lines(), cutoff)
        except FileNotFoundError as exc:
            raise CollectorError(
                f"error log {self.tail.path} does not exist; set "
                "INCIDENT_POLICY_NGINX_ERROR_LOG to the file nginx writes"
            ) from exc
        self._buckets.evict_before(cutoff + 1)
        return self._facts()

    def _fold(self, lines: Iterable[bytes], cutoff: int) -> None:
        counted = 0
        for line in lines:
            entry = self._parser.parse(line)
            if entry is None or entry.second <= cutoff:
                continue
            counted += 1
            bucket = self._buckets.at(entry.second)
            bucket.kinds[entry.kind] += 1
            bucket.connect_failures += entry.connecting
            if entry.upstream and entry.kind not in ("dns", "write"):
                bucket.upstreams[entry.upstream] += 1
        log.debug("error_log.read", extra={"failures": counted})

    def _facts(self) -> dict[str, dict[str, Any]]:
        kinds: Counter[str] = Counter()
        upstreams: Counter[str] = Counter()
        connect = 0
        for bucket in self._buckets:
            kinds.update(bucket.kinds)
            upstreams.update(bucket.upstreams)
            connect += bucket.connect_failures
        upstream_kinds = ("refused", "timed_out", "reset", "upstream")
        return {
            "upstream": {
                "available": True,
                "failures": sum(kinds[k] for k in upstream_kinds),
                "refused": kinds["refused"],
                "timed_out": kinds["timed_out"],
                "reset": kinds["reset"],
                "failing": [name for name, _ in upstreams.most_common(MAX_NAMES)],
            },
            "dns": {"failures": kinds["dns"]},
            "network": {"connect_failures": connect},
            "disk": {"write_errors": kinds["write"]},
        }
