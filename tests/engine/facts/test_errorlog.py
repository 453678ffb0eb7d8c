from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.facts.errorlog import ErrorLineParser, ErrorLogCollector, classify
from tests.engine.facts.conftest import FIXTURES, assert_valid, eventually
from tests.support.realhost import Nginx

ERROR_LOG = FIXTURES / "nginx" / "error.log"
DISK_FULL = FIXTURES / "nginx" / "error_log_disk_full.txt"
CAPTURED_AT = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)


def lines_with(path: Path, *needles: str) -> int:
    return sum(
        all(n in line for n in needles) for line in path.read_text().splitlines()
    )


def collect(path: Path, now: datetime = CAPTURED_AT) -> dict[str, dict[str, object]]:
    errors = ErrorLogCollector(path, tz=UTC)
    return {k: dict(v) for k, v in errors.collect(now).items()}


def test_captured_upstream_failures_are_sorted_by_kind() -> None:
    facts = collect(ERROR_LOG)
    upstream = facts["upstream"]
    refused = lines_with(ERROR_LOG, "Connection refused", "upstream")
    timed_out = lines_with(ERROR_LOG, "upstream timed out")
    assert upstream["refused"] == refused
    assert upstream["timed_out"] == timed_out
    assert upstream["failures"] == refused + timed_out
    assert upstream["failing"] == ["127.0.0.1:18999", "127.0.0.1:18998"]
    assert facts["network"]["connect_failures"] == refused
    assert_valid(facts)


def test_client_reset_is_not_an_upstream_failure() -> None:
    client_reset = next(
        x for x in ERROR_LOG.read_bytes().splitlines() if b"reset by peer" in x
    )
    assert classify(client_reset) is None
    assert collect(ERROR_LOG)["upstream"]["reset"] == 0


def test_upstream_reset_and_early_close_count_as_reset() -> None:
    assert (
        classify(
            b"recv() failed (104: Connection reset by peer) while reading response "
            b'header from upstream, upstream: "http://127.0.0.1:3000/"'
        )
        == "reset"
    )
    assert classify(b"upstream prematurely closed connection while reading") == "reset"


def test_dns_failures_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(
        "2026/12/04 14:59:00 [error] 7#7: *1 api.example.test could not be "
        'resolved (3: Host not found), client: 127.0.0.1, upstream: "http://api"\n'
        '2026/12/04 14:59:01 [emerg] 7#7: host not found in upstream "db:5432" '
        "in /etc/nginx/nginx.conf:20\n"
    )
    facts = collect(log)
    assert facts["dns"]["failures"] == 2
    assert facts["upstream"]["failures"] == 0


def test_disk_full_write_errors_are_counted() -> None:
    facts = collect(DISK_FULL)
    assert facts["disk"]["write_errors"] == lines_with(DISK_FULL, "was incomplete")
    assert facts["disk"]["write_errors"] > 0


def test_failures_outside_the_window_are_not_counted() -> None:
    facts = collect(ERROR_LOG, CAPTURED_AT + timedelta(hours=2))
    assert facts["upstream"]["failures"] == 0
    assert facts["upstream"]["failing"] == []


def test_error_log_time_is_read_in_the_given_zone() -> None:
    parser = ErrorLineParser(UTC)
    entry = parser.parse(
        b"2026/12/04 14:58:32 [error] 1#1: *1 connect() failed (111: Connection "
        b"refused) while connecting to upstream"
    )
    assert entry is not None
    assert entry.second == int(
        datetime(2026, 12, 4, 14, 58, 32, tzinfo=UTC).timestamp()
    )


def test_real_nginx_logs_refused_upstream(nginx: Nginx) -> None:
    errors = ErrorLogCollector(nginx.error_log, backlog_bytes=0)
    errors.collect(datetime.now(UTC))
    codes = [nginx.get(f"/down/refused-{i}") for i in range(3)]
    facts = eventually(
        lambda: errors.collect(datetime.now(UTC)),
        lambda f: f["upstream"]["refused"] >= 3,
    )
    assert codes == [502, 502, 502]
    assert facts["upstream"]["refused"] == 3
    assert f"127.0.0.1:{nginx.down_port}" in facts["upstream"]["failing"]
    assert_valid(facts)
