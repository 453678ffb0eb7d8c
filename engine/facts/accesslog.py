"""The nginx access log over the recent window: traffic, errors, uploads.

Lines are read incrementally with ``LogTail`` and folded into one bucket per
second; a snapshot sums the buckets of the last ``window_s`` seconds, so
memory depends on the window, not on the log size. Two line formats are
understood: nginx's ``combined``, and ``timed``, which is ``combined``
followed by ``key=value`` fields (``rt=$request_time``, ``urt=...``, and
optionally ``rl=$request_length`` for upload bytes, or a customer id such as
``cust=$http_x_customer``). Request time gives the p95 latency through a
histogram with 5 % wide bins. Request and upload rates are compared with a
moving baseline kept on the collector. Requests to ``ignore_paths`` (the
``stub_status`` page the nginx collector polls) are not traffic.
"""

from __future__ import annotations

import calendar
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from engine.errors import InputError
from engine.facts.errors import SETTING_INVALID, CollectorError
from engine.facts.features import FeatureMap
from engine.facts.logtail import LogTail
from engine.facts.window import Baseline, SecondBuckets

log = logging.getLogger("engine.facts.accesslog")

LogFormat = Literal["combined", "timed"]
STANDARD_FIELDS = ("remote_addr", "remote_user", "http_referer", "http_user_agent")
UPLOAD_METHODS = frozenset({"POST", "PUT"})
MAX_CUSTOMERS = 100_000  # held over the window; beyond, the count is a floor
BIN_GROWTH = 1.05  # latency histogram: each bin 5 % wider than the last
_LOG_GROWTH = math.log(BIN_GROWTH)

_LINE = re.compile(
    rb"^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] "
    rb'"(?P<request>[^"]*)" (?P<status>\d{3}) (?:\d+|-) '
    rb'"(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)"(?P<extra>.*)$'
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        (
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ),
        start=1,
    )
}


class AccessEntry(NamedTuple):
    """One request; a tuple because millions are made per gigabyte of log."""

    second: int  # Unix time of the request's log line
    method: str | None
    path: str | None
    status: int
    customer: str | None
    latency_ms: float | None
    request_bytes: int | None


class AccessLineParser:
    """Turns one access-log line into an ``AccessEntry`` (None if unreadable)."""

    def __init__(self, customer_field: str = "remote_addr") -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", customer_field):
            raise InputError(
                f"customer_field {customer_field!r} is not a log field name; use "
                f"one of {', '.join(STANDARD_FIELDS)} or the key of a key=value "
                "field of the log format (for example cust)",
                code=SETTING_INVALID,
            )
        self.customer_field = customer_field
        self._standard = customer_field in STANDARD_FIELDS
        self._customer_key = f" {customer_field}=".encode()
        self._last_stamp = b""
        self._last_second = 0

    def parse(self, line: bytes) -> AccessEntry | None:
        match = _LINE.match(line)
        if match is None:
            return None
        second = self._second(match["time"])
        if second is None:
            return None
        extra = match["extra"]
        method, path = _request(match["request"])
        return AccessEntry(
            second,
            method,
            path,
            int(match["status"]),
            self._customer(match, extra),
            _latency_ms(_extra_field(extra, b" rt=")),
            _integer(_extra_field(extra, b" rl=")),
        )

    def _customer(self, match: re.Match[bytes], extra: bytes) -> str | None:
        if self._standard:
            raw = match[self.customer_field]
        else:
            raw = _extra_field(extra, self._customer_key)
        if not raw or raw == b"-":
            return None
        return raw.decode("utf-8", "replace")

    def _second(self, stamp: bytes) -> int | None:
        # Consecutive lines share their second: parse each stamp once.
        if stamp != self._last_stamp:
            parsed = _parse_time_local(stamp)
            if parsed is None:
                return None
            self._last_stamp, self._last_second = stamp, parsed
        return self._last_second


def _parse_time_local(stamp: bytes) -> int | None:
    """``04/Dec/2026:14:58:32 +0000`` to Unix seconds."""
    try:
        text = stamp.decode("ascii")
        day, month, year = int(text[0:2]), _MONTHS[text[3:6]], int(text[7:11])
        hour, minute, sec = int(text[12:14]), int(text[15:17]), int(text[18:20])
        sign = -1 if text[21] == "-" else 1
        offset = sign * (int(text[22:24]) * 3600 + int(text[24:26]) * 60)
    except (KeyError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0)) - offset


def _extra_field(raw: bytes, key: bytes) -> bytes | None:
    """The value of `` key=value`` or `` key="value"`` after the agent."""
    start = raw.find(key)
    if start < 0:
        return None
    start += len(key)
    if raw[start : start + 1] == b'"':
        end = raw.find(b'"', start + 1)
        return raw[start + 1 : end] if end >= 0 else None
    end = raw.find(b" ", start)
    return raw[start:] if end < 0 else raw[start:end]


def _request(raw: bytes) -> tuple[str | None, str | None]:
    parts = raw.split(b" ")
    if len(parts) < 2:
        return None, None  # "GARBAGE", or an empty request line
    return parts[0].decode("ascii", "replace"), parts[1].decode("utf-8", "replace")


def _latency_ms(raw: bytes | None) -> float | None:
    if raw is None or raw == b"-":
        return None
    try:
        return float(raw) * 1000.0
    except ValueError:
        return None


def _integer(raw: bytes | None) -> int | None:
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def latency_bin(ms: float) -> int:
    return int(math.log1p(max(ms, 0.0)) / _LOG_GROWTH)


def bin_upper_ms(index: int) -> float:
    return math.expm1((index + 1) * _LOG_GROWTH)


@dataclass(slots=True)
class _Second:
    requests: int = 0
    errors: int = 0
    status: dict[int, int] = field(default_factory=dict)  # 502, 503, 504 only
    latency_bins: dict[int, int] = field(default_factory=dict)
    inbound_bytes: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    uploads_without_bytes: int = 0
    features: dict[str, list[int]] = field(default_factory=dict)  # [req, err]
    customers: set[str] = field(default_factory=set)  # that saw a 5xx


class AccessLogCollector:
    name: str = "access_log"
    sections: tuple[str, ...] = ("http", "uploads")

    def __init__(
        self,
        path: Path,
        *,
        features: FeatureMap,
        log_format: LogFormat = "combined",
        customer_field: str = "remote_addr",
        upload_pattern: str = r"^/(upload|uploads|api/upload)",
        window_s: float = 300.0,
        baseline_tau_s: float = 3600.0,
        backlog_bytes: int | None = 64 << 20,
        ignore_paths: Iterable[str] = (),
    ) -> None:
        self.tail = LogTail(path, backlog_bytes=backlog_bytes)
        self.features = features
        self.log_format = log_format
        self.window_s = window_s
        self._parser = AccessLineParser(customer_field)
        self._upload = _compile_upload(upload_pattern)
        self._ignore = frozenset(ignore_paths)
        self._buckets: SecondBuckets[_Second] = SecondBuckets(_Second)
        self._saw_request_length = False
        self._unparsed = 0
        self._parsed = 0
        self._customers_held = 0  # across buckets, bounded by MAX_CUSTOMERS
        self._baselines = {
            "requests": Baseline(baseline_tau_s, floor=1.0 / window_s),
            "uploads": Baseline(baseline_tau_s, floor=1.0 / window_s),
            "upload_bytes": Baseline(baseline_tau_s, floor=1024.0 / window_s),
            "inbound": Baseline(baseline_tau_s, floor=1024.0 / window_s),
        }

    def close(self) -> None:
        self.tail.close()

    def collect(self, now: datetime) -> Mapping[str, Mapping[str, Any]]:
        cutoff = int(now.timestamp() - self.window_s)
        # Forget first, so customers that left the window free their places.
        for old in self._buckets.evict_before(cutoff + 1):
            self._customers_held -= len(old.customers)
        self._read(cutoff)
        totals = self._sum()
        at = now.timestamp()
        return {"http": self._http(totals, at), "uploads": self._uploads(totals, at)}

    def _read(self, cutoff: int) -> None:
        try:
            lines = self.tail.lines()
            read, parsed = self._fold(lines, cutoff)
        except FileNotFoundError as exc:
            raise CollectorError(
                f"access log {self.tail.path} does not exist; set "
                "INCIDENT_POLICY_NGINX_ACCESS_LOG to the file nginx writes"
            ) from exc
        self._parsed += parsed
        # A format mismatch shows as a run of unreadable lines, in this read or
        # since the start when nginx writes only a few lines per snapshot.
        if parsed == 0 and (read >= 20 or (self._parsed == 0 and self._unparsed >= 20)):
            raise CollectorError(
                f"none of the {read} new lines of {self.tail.path} is in the "
                f"{self.log_format!r} format; set INCIDENT_POLICY_ACCESS_LOG_FORMAT "
                "to match nginx's log_format"
            )
        log.debug("access_log.read", extra={"lines": read, "parsed": parsed})

    def _fold(self, lines: Iterable[bytes], cutoff: int) -> tuple[int, int]:
        read = parsed = 0
        for line in lines:
            read += 1
            entry = self._parser.parse(line)
            if entry is None:
                self._unparsed += 1
                continue
            parsed += 1
            if entry.second > cutoff and entry.path not in self._ignore:
                self._add(self._buckets.at(entry.second), entry)
        return read, parsed

    def _add(self, bucket: _Second, entry: AccessEntry) -> None:
        bucket.requests += 1
        failed = entry.status >= 500
        if failed:
            bucket.errors += 1
            if entry.status in (502, 503, 504):
                bucket.status[entry.status] = bucket.status.get(entry.status, 0) + 1
            if entry.customer is not None:
                self._add_customer(bucket, entry.customer)
        if entry.latency_ms is not None:
            index = latency_bin(entry.latency_ms)
            bucket.latency_bins[index] = bucket.latency_bins.get(index, 0) + 1
        if entry.request_bytes is not None:
            self._saw_request_length = True
            bucket.inbound_bytes += entry.request_bytes
        if entry.path is not None:
            self._add_feature(bucket, entry.path, failed)
            if entry.method in UPLOAD_METHODS and self._upload.search(entry.path):
                self._add_upload(bucket, entry)

    def _add_customer(self, bucket: _Second, customer: str) -> None:
        if customer in bucket.customers or self._customers_held >= MAX_CUSTOMERS:
            return
        bucket.customers.add(customer)
        self._customers_held += 1

    def _add_feature(self, bucket: _Second, path: str, failed: bool) -> None:
        feature = self.features.feature_of(path)
        if feature is None:
            return
        counts = bucket.features.setdefault(feature.name, [0, 0])
        counts[0] += 1
        counts[1] += failed

    @staticmethod
    def _add_upload(bucket: _Second, entry: AccessEntry) -> None:
        bucket.uploads += 1
        if entry.request_bytes is None:
            bucket.uploads_without_bytes += 1
        else:
            bucket.upload_bytes += entry.request_bytes

    def _sum(self) -> _Second:
        total = _Second()
        for bucket in self._buckets:
            total.requests += bucket.requests
            total.errors += bucket.errors
            total.inbound_bytes += bucket.inbound_bytes
            total.uploads += bucket.uploads
            total.upload_bytes += bucket.upload_bytes
            total.uploads_without_bytes += bucket.uploads_without_bytes
            _merge_counts(total.status, bucket.status)
            _merge_counts(total.latency_bins, bucket.latency_bins)
            for name, (requests, errors) in bucket.features.items():
                counts = total.features.setdefault(name, [0, 0])
                counts[0] += requests
                counts[1] += errors
            if len(total.customers) < MAX_CUSTOMERS:
                total.customers |= bucket.customers
        return total

    def _http(self, totals: _Second, at: float) -> dict[str, Any]:
        requests = totals.requests
        rate = requests / self.window_s
        bad_gateway = totals.status.get(502, 0) + totals.status.get(504, 0)
        return {
            "available": True,
            "window_s": self.window_s,
            "requests": requests,
            "request_rate": rate,
            "request_rate_vs_baseline": self._compare("requests", rate, at),
            "errors_5xx": totals.errors,
            "error_rate": _share(totals.errors, requests),
            "status_502": totals.status.get(502, 0),
            "status_503": totals.status.get(503, 0),
            "status_504": totals.status.get(504, 0),
            "bad_gateway_rate": _share(bad_gateway, requests),
            "p95_latency_ms": _percentile_ms(totals.latency_bins, 0.95),
            "customers_with_errors": min(len(totals.customers), MAX_CUSTOMERS),
            "features": self._features(totals),
        }

    def _features(self, totals: _Second) -> list[dict[str, Any]]:
        listed = []
        for feature in self.features.features:
            requests, errors = totals.features.get(feature.name, (0, 0))
            listed.append(
                {
                    "name": feature.name,
                    "customer_facing": feature.customer_facing,
                    "requests": requests,
                    "errors": errors,
                    "error_rate": _share(errors, requests),
                }
            )
        return listed

    def _uploads(self, totals: _Second, at: float) -> dict[str, Any]:
        rate = totals.uploads / self.window_s
        bytes_rate = self._bytes_rate(totals.upload_bytes, totals.uploads_without_bytes)
        inbound = self._bytes_rate(totals.inbound_bytes, 0)
        return {
            "available": True,
            "requests": totals.uploads,
            "rate": rate,
            "bytes_rate": bytes_rate,
            "rate_vs_baseline": self._compare("uploads", rate, at),
            "bytes_vs_baseline": self._compare("upload_bytes", bytes_rate, at),
            "inbound_vs_baseline": self._compare("inbound", inbound, at),
        }

    def _bytes_rate(self, total: int, unknown: int) -> float | None:
        # Without $request_length in the format, byte counts are not observed.
        if not self._saw_request_length or unknown:
            return None
        return total / self.window_s

    def _compare(self, name: str, value: float | None, at: float) -> float | None:
        if value is None:
            return None
        return self._baselines[name].compare_and_update(value, at)


def _compile_upload(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InputError(
            f"upload_path_pattern {pattern!r} is not a valid regular expression "
            f"({exc}); fix INCIDENT_POLICY_UPLOAD_PATH_PATTERN",
            code=SETTING_INVALID,
        ) from exc


def _merge_counts(into: dict[int, int], counts: Mapping[int, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _percentile_ms(bins: Mapping[int, int], quantile: float) -> float | None:
    total = sum(bins.values())
    if not total:
        return None
    rank = quantile * total
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return round(bin_upper_ms(index), 1)
    return None
