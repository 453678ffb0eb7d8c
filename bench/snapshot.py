"""Snapshot collection with the real tools, and reading a 1 GB access log.

Part one starts a private nginx and a private PM2 daemon (as the test
fixtures do: own prefix, own ``PM2_HOME``, loopback only), runs a few apps
and some traffic, then takes 50 snapshots with the default collectors and
prints p50/p99 of the snapshot time, each collector's p50/p99, the peak RSS,
and how far the parallel total is above the slowest collector (the budget is
50 ms). Part two, in a fresh process so its peak RSS is its own, appends a
1 GB access log in eight steps and reads it incrementally after each, and
prints the peak RSS (the budget is 100 MB).

    python -m bench.snapshot [--snapshots 50] [--log-gb 1.0] [--skip-log]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.facts.accesslog import AccessLogCollector
from engine.facts.features import FeatureMap
from engine.facts.observer import HostObserver
from engine.runtime import Runtime
from engine.settings import HealthCheck, Settings
from tests.support.realhost import Nginx, Pm2, program

OVERHEAD_BUDGET_MS = 50.0
LOG_RSS_BUDGET_MB = 100.0
FEATURES = {
    "features": [
        {"name": "uploads", "customer_facing": True, "routes": ["/upload"]},
        {"name": "files", "customer_facing": True, "routes": ["~^/api/v[0-9]+/files"]},
        {"name": "api", "customer_facing": True, "routes": ["/api/"]},
    ]
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentile(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    index = min(int(quantile * len(ordered) + 0.5), len(ordered)) - 1
    return ordered[max(index, 0)]


def start_tools(workdir: Path) -> tuple[Nginx, Pm2]:
    nginx_bin = program("nginx") or "/usr/sbin/nginx"
    pm2_bin = program("pm2")
    if not pm2_bin or not Path(nginx_bin).exists():
        sys.exit("bench.snapshot needs nginx and pm2 installed")
    nginx = Nginx(nginx_bin, workdir / "nginx")
    nginx.start()
    pm2 = Pm2(pm2_bin, workdir / "pm2")
    pm2.start_app("bench-web", "web.js", env={"PORT": str(nginx.app_port)})
    pm2.start_app("bench-healthy", "healthy.js")
    pm2.start_app("bench-crash", "crash.js")
    pm2.wait_for("bench-web", "online")
    return nginx, pm2


def make_traffic(nginx: Nginx, count: int) -> None:
    for i in range(count):
        if i % 10 == 0:
            nginx.get(f"/down/{i}")
        elif i % 7 == 0:
            nginx.post("/upload/file", b"x" * 1024)
        else:
            nginx.get(f"/api/v1/orders?page={i}")


def snapshot_bench(snapshots: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ip-bench-") as tmp:
        workdir = Path(tmp)
        nginx, pm2 = start_tools(workdir)
        try:
            make_traffic(nginx, 200)
            settings = Settings(
                data_dir=workdir / "data",
                pm2_bin=pm2.binary,
                pm2_home=pm2.home,
                nginx_bin=nginx.binary,
                nginx_conf=nginx.conf,
                nginx_status_url=nginx.status_url,
                nginx_access_log=nginx.access_log,
                nginx_error_log=nginx.error_log,
                access_log_format="timed",
                health_checks=[HealthCheck(name="nginx", url=nginx.status_url)],
            )
            observer = HostObserver(
                settings,
                Runtime.system(),
                features=FeatureMap.from_document(FEATURES),
            )
            return measure(observer, nginx, snapshots)
        finally:
            pm2.kill()
            nginx.stop()


def measure(observer: HostObserver, nginx: Nginx, snapshots: int) -> dict[str, Any]:
    observer.snapshot()  # first read of the logs, first samples
    totals, overheads, failures = [], [], 0
    per_collector: dict[str, list[float]] = {}
    for i in range(snapshots):
        if i % 5 == 0:
            make_traffic(nginx, 5)  # keep the logs moving between snapshots
        started = time.monotonic()
        snap = observer.snapshot()
        total_ms = (time.monotonic() - started) * 1000.0
        totals.append(total_ms)
        overheads.append(total_ms - max(snap.durations_ms.values()))
        for name, ms in snap.durations_ms.items():
            per_collector.setdefault(name, []).append(ms)
        failures += sum(
            1
            for section in snap.facts.values()
            if isinstance(section, dict) and section.get("available") is False
        )
    observer.close()
    return {
        "snapshots": snapshots,
        "p50_ms": statistics.median(totals),
        "p99_ms": percentile(totals, 0.99),
        "max_overhead_ms": max(overheads),
        "p50_overhead_ms": statistics.median(overheads),
        "unavailable_sections": failures,
        "collectors": {
            name: (statistics.median(ms), percentile(ms, 0.99))
            for name, ms in sorted(per_collector.items())
        },
        "peak_rss_mb": peak_rss_mb(),
    }


def log_line(at: datetime, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        path, status = "/api/v1/orders", 502
    elif roll < 0.10:
        path, status = "/upload/photo", 201
    elif roll < 0.30:
        path, status = f"/api/v2/files/{rng.randrange(10_000)}", 200
    else:
        path, status = f"/static/app-{rng.randrange(100)}.js", 200
    method = "POST" if path.startswith("/upload") else "GET"
    client = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return (
        f"{client} - - [{at.strftime('%d/%b/%Y:%H:%M:%S +0000')}] "
        f'"{method} {path} HTTP/1.1" {status} 512 "-" "bench/1.0" '
        f'rt={rng.random() * 0.4:.3f} uct="0.000" urt="0.010" us="{status}"\n'
    )


def log_child(path: Path, total_bytes: int, steps: int) -> dict[str, Any]:
    """Append ``total_bytes`` of log in ``steps``, reading after each step."""
    rng = random.Random(7)
    block = [log_line(datetime(2026, 1, 1, tzinfo=UTC), rng) for _ in range(2000)]
    stamp = "01/Jan/2026:00:00:00 +0000"
    end = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    access = AccessLogCollector(
        path,
        features=FeatureMap.from_document(FEATURES),
        log_format="timed",
        backlog_bytes=None,
        window_s=300.0,
    )
    written, read_s, lines = 0, 0.0, 0
    facts: dict[str, Any] = {}
    with path.open("w") as out:
        for step in range(1, steps + 1):
            while written < total_bytes * step // steps:
                # Spread the lines over the window, so every one is counted.
                at = end - timedelta(seconds=300 * (1 - written / total_bytes))
                text = "".join(block).replace(
                    stamp, at.strftime("%d/%b/%Y:%H:%M:%S +0000")
                )
                out.write(text)
                written += len(text)
                lines += len(block)
            out.flush()
            started = time.monotonic()
            facts = dict(access.collect(end)["http"])
            read_s += time.monotonic() - started
    return {
        "bytes": written,
        "lines": lines,
        "requests_in_window": facts["requests"],
        "read_s": read_s,
        "mb_per_s": written / (1 << 20) / read_s,
        "peak_rss_mb": peak_rss_mb(),
    }


def log_bench(gigabytes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ip-bench-log-") as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.snapshot",
                "--log-child",
                str(Path(tmp) / "access.log"),
                "--log-gb",
                str(gigabytes),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_snapshot_table(result: dict[str, Any]) -> None:
    print(f"\nsnapshot collection, real tools, {result['snapshots']} snapshots")
    print(f"  {'collector':<14}{'p50 ms':>10}{'p99 ms':>10}")
    for name, (p50, p99) in result["collectors"].items():
        print(f"  {name:<14}{p50:>10.1f}{p99:>10.1f}")
    print(f"  {'snapshot':<14}{result['p50_ms']:>10.1f}{result['p99_ms']:>10.1f}")
    verdict = "ok" if result["max_overhead_ms"] <= OVERHEAD_BUDGET_MS else "OVER"
    print(
        f"  parallel total above slowest collector: p50 "
        f"{result['p50_overhead_ms']:.1f} ms, max {result['max_overhead_ms']:.1f} ms "
        f"(budget {OVERHEAD_BUDGET_MS:.0f} ms: {verdict})"
    )
    print(
        f"  unavailable sections over all snapshots: {result['unavailable_sections']}"
    )
    print(f"  peak RSS of the process: {result['peak_rss_mb']:.1f} MB")


def print_log_table(result: dict[str, Any]) -> None:
    verdict = "ok" if result["peak_rss_mb"] < LOG_RSS_BUDGET_MB else "OVER"
    print(f"\naccess log read incrementally ({result['bytes'] / 1e9:.2f} GB)")
    counted = result["requests_in_window"]
    print(f"  lines {result['lines']:,}, counted in the window {counted:,}")
    print(f"  read time {result['read_s']:.1f} s ({result['mb_per_s']:.0f} MB/s)")
    print(
        f"  peak RSS {result['peak_rss_mb']:.1f} MB "
        f"(budget {LOG_RSS_BUDGET_MB:.0f} MB: {verdict})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot")
    parser.add_argument("--snapshots", type=int, default=50)
    parser.add_argument("--log-gb", type=float, default=1.0)
    parser.add_argument("--skip-log", action="store_true")
    parser.add_argument("--log-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.log_child:
        total = int(args.log_gb * (1 << 30))
        print(json.dumps(log_child(args.log_child, total, steps=8)))
        return
    print_snapshot_table(snapshot_bench(args.snapshots))
    if not args.skip_log:
        print_log_table(log_bench(args.log_gb))


if __name__ == "__main__":
    main()
