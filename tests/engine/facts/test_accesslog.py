from __future__ import annotations

import math
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.facts import accesslog
from engine.facts.accesslog import (
    AccessLineParser,
    AccessLogCollector,
    bin_upper_ms,
    latency_bin,
)
from engine.facts.errors import CollectorError
from engine.facts.features import FeatureMap
from tests.engine.facts.conftest import FIXTURES, assert_valid, eventually
from tests.support.realhost import Nginx, Pm2, free_port

TIMED = FIXTURES / "nginx" / "access_timed_upstream.log"
COMBINED = FIXTURES / "nginx" / "access_combined.log"
CAPTURED_AT = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # after the capture's lines
FEATURES = FeatureMap.from_document(
    {
        "features": [
            {"name": "orders", "customer_facing": True, "routes": ["~^/api/v1/orders"]},
            {"name": "uploads", "customer_facing": True, "routes": ["/upload"]},
            {"name": "reports", "customer_facing": False, "routes": ["/slow/"]},
            {"name": "unused", "customer_facing": False, "routes": ["/never"]},
        ]
    }
)


def statuses(path: Path, *, skip: str = "") -> Counter[int]:
    """Status codes counted the simple way: the field after the request."""
    counted: Counter[int] = Counter()
    for line in path.read_text().splitlines():
        request, rest = line.split('"')[1], line.split('"')[2]
        if skip and request.split(" ")[1:2] == [skip]:
            continue
        counted[int(rest.split()[0])] += 1
    return counted


def collector(path: Path, **options: object) -> AccessLogCollector:
    settings: dict[str, object] = {"features": FEATURES, "log_format": "timed"}
    settings.update(options)
    return AccessLogCollector(path, **settings)  # type: ignore[arg-type]


def test_parser_reads_combined_and_timed_lines() -> None:
    parser = AccessLineParser()
    combined = COMBINED.read_bytes().splitlines()[2]
    timed = TIMED.read_bytes().splitlines()[-14]
    plain = parser.parse(combined)
    with_time = parser.parse(timed)
    assert plain is not None and plain.latency_ms is None
    assert plain.customer == "127.0.0.1" and plain.method == "GET"
    assert with_time is not None and with_time.latency_ms is not None
    assert with_time.second == int(
        datetime(2026, 12, 4, 14, 58, 33, tzinfo=UTC).timestamp()
    )


def test_parser_keeps_garbage_request_with_its_status() -> None:
    line = next(x for x in TIMED.read_bytes().splitlines() if b'"GARBAGE"' in x)
    entry = AccessLineParser().parse(line)
    assert entry is not None and entry.status == 400 and entry.path is None


def test_parser_refuses_lines_of_another_format() -> None:
    assert AccessLineParser().parse(b"2026/12/04 14:58:32 [error] nope") is None


def test_unknown_customer_field_name_is_refused() -> None:
    with pytest.raises(InputError) as raised:
        AccessLineParser("X-Customer")
    assert raised.value.code == "E452"


def test_counts_match_the_captured_log() -> None:
    facts = collector(TIMED).collect(CAPTURED_AT)
    http = facts["http"]
    expected = statuses(TIMED)
    total = sum(expected.values())
    errors = sum(n for code, n in expected.items() if code >= 500)
    assert http["requests"] == total
    assert http["errors_5xx"] == errors
    assert http["status_502"] == expected[502]
    assert http["status_504"] == expected[504]
    assert http["error_rate"] == pytest.approx(errors / total)
    assert http["bad_gateway_rate"] == pytest.approx(
        (expected[502] + expected[504]) / total
    )
    assert_valid(facts)


def test_status_page_requests_are_not_traffic() -> None:
    facts = collector(TIMED, ignore_paths=["/nginx_status"]).collect(CAPTURED_AT)
    assert facts["http"]["requests"] == sum(
        statuses(TIMED, skip="/nginx_status").values()
    )


def test_features_count_requests_and_errors_by_route() -> None:
    http = collector(TIMED).collect(CAPTURED_AT)["http"]
    by_name = {f["name"]: f for f in http["features"]}
    orders = [x for x in TIMED.read_text().splitlines() if "/api/v1/orders" in x]
    assert by_name["orders"]["requests"] == len(orders)
    assert by_name["orders"]["errors"] == len(orders)  # all 502 in the capture
    assert by_name["reports"]["error_rate"] == 1.0
    assert by_name["unused"]["requests"] == 0
    assert by_name["unused"]["error_rate"] is None


def test_p95_latency_comes_from_request_time() -> None:
    http = collector(TIMED).collect(CAPTURED_AT)["http"]
    times = sorted(
        float(x.split("rt=")[1].split()[0]) * 1000
        for x in TIMED.read_text().splitlines()
    )
    true_p95 = times[math.ceil(0.95 * len(times)) - 1]  # nearest rank
    assert http["p95_latency_ms"] >= true_p95
    assert http["p95_latency_ms"] == round(bin_upper_ms(latency_bin(true_p95)), 1)


def test_combined_format_has_no_latency() -> None:
    http = collector(COMBINED, log_format="combined").collect(CAPTURED_AT)["http"]
    assert http["requests"] == sum(statuses(COMBINED).values())
    assert http["p95_latency_ms"] is None


def test_lines_older_than_the_window_are_not_counted() -> None:
    later = CAPTURED_AT + timedelta(hours=1)
    facts = collector(TIMED).collect(later)
    assert facts["http"]["requests"] == 0
    assert facts["http"]["error_rate"] is None


def test_window_forgets_seconds_as_time_passes(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(TIMED.read_bytes())
    access = collector(log, window_s=60)
    just_after = datetime(2026, 12, 4, 14, 59, tzinfo=UTC)
    assert access.collect(just_after)["http"]["requests"] > 0
    assert access.collect(just_after + timedelta(minutes=5))["http"]["requests"] == 0


def test_distinct_customers_seeing_errors_by_configured_field(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = [
        line(f"/api/v1/orders/{i}", 502, extra=f'cust="c{i % 3}"') for i in range(9)
    ] + [line("/", 200, extra='cust="happy"')]
    log.write_text("\n".join(lines) + "\n")
    by_cust = collector(log, customer_field="cust").collect(CAPTURED_AT)["http"]
    by_addr = collector(log).collect(CAPTURED_AT)["http"]
    assert by_cust["customers_with_errors"] == 3
    assert by_addr["customers_with_errors"] == 1


def test_upload_bytes_need_request_length_in_the_format(tmp_path: Path) -> None:
    with_rl = tmp_path / "rl.log"
    with_rl.write_text(
        "\n".join(
            line("/upload", 201, method="POST", extra="rl=1000") for _ in range(5)
        )
        + "\n"
    )
    without = tmp_path / "plain.log"
    without.write_text(line("/upload", 201, method="POST") + "\n")
    uploads = collector(with_rl, window_s=100).collect(CAPTURED_AT)["uploads"]
    assert uploads["requests"] == 5
    assert uploads["rate"] == pytest.approx(5 / 100)
    assert uploads["bytes_rate"] == pytest.approx(5000 / 100)
    plain = collector(without).collect(CAPTURED_AT)["uploads"]
    assert plain["requests"] == 1 and plain["bytes_rate"] is None
    assert_valid({"uploads": uploads})


def test_get_on_an_upload_path_is_not_an_upload(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(line("/upload", 200, method="GET") + "\n")
    assert collector(log).collect(CAPTURED_AT)["uploads"]["requests"] == 0


def test_rates_are_compared_with_the_moving_baseline(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    access = collector(log, window_s=60)
    now = CAPTURED_AT
    log.write_text(quiet_minute(now, 10))
    first = access.collect(now)
    assert first["http"]["request_rate_vs_baseline"] is None  # no baseline yet
    for _ in range(3):
        now += timedelta(minutes=1)
        append(log, quiet_minute(now, 10))
        steady = access.collect(now)
    assert steady["http"]["request_rate_vs_baseline"] == pytest.approx(1.0)
    now += timedelta(minutes=1)
    append(log, quiet_minute(now, 50, upload=True))
    surge = access.collect(now)
    assert surge["http"]["request_rate_vs_baseline"] > 4
    assert surge["uploads"]["rate_vs_baseline"] > 4


def test_a_log_in_another_format_is_a_failure_with_the_fix(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes((FIXTURES / "nginx" / "error.log").read_bytes())
    with pytest.raises(CollectorError) as raised:
        collector(log).collect(CAPTURED_AT)
    assert "INCIDENT_POLICY_ACCESS_LOG_FORMAT" in raised.value.message


def test_missing_log_is_a_failure_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(CollectorError) as raised:
        collector(tmp_path / "none.log").collect(CAPTURED_AT)
    assert "INCIDENT_POLICY_NGINX_ACCESS_LOG" in raised.value.message


def test_real_nginx_log_counts_bad_gateways_per_feature(nginx: Nginx) -> None:
    tag = secrets.token_hex(4)
    features = FeatureMap.from_document(
        {
            "features": [
                {"name": "probe", "customer_facing": True, "routes": [f"/down/{tag}"]}
            ]
        }
    )
    access = AccessLogCollector(
        nginx.access_log, features=features, log_format="timed", backlog_bytes=None
    )
    codes = [nginx.get(f"/down/{tag}/{i}") for i in range(4)]
    facts = eventually(
        lambda: access.collect(datetime.now(UTC)),
        lambda f: f["http"]["features"][0]["requests"] >= len(codes),
    )
    probe = facts["http"]["features"][0]
    assert probe["requests"] == len(codes)
    assert probe["errors"] == codes.count(502)
    assert facts["http"]["status_502"] >= codes.count(502)
    assert facts["http"]["p95_latency_ms"] is not None
    assert_valid(facts)


def test_real_uploads_through_nginx_are_counted(nginx: Nginx, pm2: Pm2) -> None:
    pm2.start_app("collect-web", "web.js", env={"PORT": str(nginx.app_port)})
    try:
        pm2.wait_for("collect-web", "online")
        access = AccessLogCollector(
            nginx.access_log,
            features=FeatureMap.empty(),
            log_format="timed",
            upload_pattern=r"^/upload/collect",
            backlog_bytes=0,
        )
        access.collect(datetime.now(UTC))
        codes = [nginx.post("/upload/collect", b"x" * 2048) for _ in range(3)]
        uploads = eventually(
            lambda: access.collect(datetime.now(UTC))["uploads"],
            lambda u: u["requests"] >= 3,
        )
        assert codes == [201, 201, 201]
        assert uploads["requests"] == 3
        assert uploads["bytes_rate"] is None  # the timed format lacks rl=
    finally:
        pm2.delete("collect-web")


def line(
    path: str,
    status: int,
    *,
    method: str = "GET",
    extra: str = "",
    at: datetime = CAPTURED_AT,
) -> str:
    stamp = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
    tail = f" rt=0.010 {extra}" if extra else " rt=0.010"
    return (
        f'127.0.0.1 - - [{stamp}] "{method} {path} HTTP/1.1" {status} 12 "-" '
        f'"test/1.0"{tail}'
    )


def quiet_minute(end: datetime, count: int, *, upload: bool = False) -> str:
    rows = [
        line(
            "/upload" if upload else "/",
            200,
            method="POST" if upload else "GET",
            at=end - timedelta(seconds=59 * i / count),
        )
        for i in range(count)
    ]
    return "\n".join(rows) + "\n"


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_free_port_helper_is_loopback() -> None:
    assert free_port() > 0


def test_format_mismatch_is_reported_even_when_lines_trickle_in(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    access = collector(log)
    raised = None
    for _ in range(5):
        append(log, "".join(f"{i} not an access line\n" for i in range(5)))
        try:
            access.collect(CAPTURED_AT)
        except CollectorError as exc:
            raised = exc
    assert raised is not None and "log_format" in raised.message


def test_customers_held_are_capped_across_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accesslog, "MAX_CUSTOMERS", 5)
    log = tmp_path / "access.log"
    access = collector(log, customer_field="cust", window_s=60)
    first = CAPTURED_AT
    log.write_text(
        "".join(
            line("/", 500, extra=f"cust=c{i}", at=first - timedelta(seconds=i)) + "\n"
            for i in range(10)
        )
    )
    assert access.collect(first)["http"]["customers_with_errors"] == 5
    later = first + timedelta(minutes=5)
    append(log, line("/", 500, extra="cust=new", at=later) + "\n")
    assert access.collect(later)["http"]["customers_with_errors"] == 1
