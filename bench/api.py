"""HTTP intake benchmark: the service against two floors of its own stack.

Three servers run one at a time, each a uvicorn process of its own with one
worker on a free loopback port, on SQLite and (when a server is given) on
PostgreSQL:

- ``intake``: the service's ``POST /v1/alerts`` (key, parse, intake rules,
  alert + incident + job committed before the answer). The flow's workers
  and the watcher are off, so only intake is measured.
- ``insert``: a bare FastAPI route that parses the body and commits one
  ``INSERT`` per request into the same database, tuned the same way.
- ``parse``: a bare FastAPI route that only parses the body.

For each: the sustained rate with ``wrk`` (2 threads, 64 connections, every
answer must be 202), then p50/p99 latency at half that rate with an
open-loop async client. Intake is measured twice: every alert a new
incident (``open``) and every alert the same fingerprint (``fold``). Last,
the storm: 10,000 alerts with one fingerprint posted by wrk as fast as the
full service (workers on) takes them; the target is all of them stored
within 10 seconds, first to last, in one incident, with the server's peak
memory under 200 MB. Prints a table and the ratios to the targets.

    python -m bench.api [--postgres URL] [--duration 10] [--storm-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

# At module level: the floor routes' annotations are resolved against it.
from engine.sources.generic import GenericAlertIn

ROOT = Path(__file__).resolve().parent.parent
WRK_THREADS, WRK_CONNECTIONS = 2, 64
STORM_ALERTS, STORM_SECONDS = 10_000, 10.0
LATENCY_SECONDS = 5.0
BODY = '{"kind": "threshold_exceeded", "name": "DiskFull", "fingerprint": "%s"}'


# -- the servers ---------------------------------------------------------------


def floor_app(variant: str, url: str) -> Any:
    """The bare FastAPI routes: parse only, or parse and commit one INSERT."""
    from fastapi import FastAPI
    from sqlalchemy import Column, MetaData, String, Table, Text, insert

    from engine.store.db import make_engine

    app = FastAPI()
    if variant == "parse":

        @app.post("/v1/alerts", status_code=202)
        async def parse_only(body: GenericAlertIn) -> dict[str, str]:
            return {"kind": body.kind}

        return app
    table = Table(
        "bench_floor",
        MetaData(),
        Column("id", String, primary_key=True),
        Column("body", Text),
    )
    engine = make_engine(url)
    table.metadata.create_all(engine)
    # One writer at a time, as a sensible route on SQLite would: without it
    # the thread pool's writers sleep in SQLite's busy handler.
    one_writer = threading.Lock() if engine.dialect.name == "sqlite" else None

    @app.post("/v1/alerts", status_code=202)
    def insert_one(body: GenericAlertIn) -> dict[str, str]:
        row_id = uuid.uuid4().hex
        row = {"id": row_id, "body": body.model_dump_json()}
        if one_writer is None:
            with engine.begin() as conn:
                conn.execute(insert(table).values(row))
            return {"id": row_id}
        with one_writer, engine.begin() as conn:
            conn.execute(insert(table).values(row))
        return {"id": row_id}

    return app


def intake_app(url: str, data_dir: str, worker: bool) -> Any:
    from api.app import create_app
    from api.cli import COMPILE
    from api.service import Service
    from engine.settings import Settings

    settings = Settings(
        data_dir=Path(data_dir),
        rules_dir=ROOT / "rules",
        database_url=url,
        watch=False,
        worker=worker,
    )
    service = Service(settings, compile=COMPILE)
    service.start()
    return create_app(settings, services=service.services)


def serve(variant: str, url: str, port: int, data_dir: str) -> None:
    import uvicorn

    if variant in ("parse", "insert"):
        app = floor_app(variant, url)
    else:
        app = intake_app(url, data_dir, worker=variant == "service")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(variant: str, url: str, data_dir: Path) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "bench.api", "--serve", variant]
    command += ["--url", url, "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(command, cwd=ROOT)
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        wait_ready(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"the {server.url} server exited at start")
        try:
            httpx.get(f"{server.url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("a server did not start in 60 s")


# -- the load ----------------------------------------------------------------------


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local counter = 0
local prefix = ""
function setup(thread)
  thread:set("prefix", tostring(math.random(1, 1000000000)))
end
function request()
  counter = counter + 1
  local fp = "%(fingerprint)s"
  if fp == "" then fp = prefix .. "-" .. counter end
  return wrk.format(nil, "/v1/alerts", nil, string.format('%(body)s', fp))
end
"""


def wrk_rate(server: Server, key: str, fingerprint: str, seconds: float) -> float:
    """Requests per second sustained by wrk; every answer must be 202."""
    script_text = WRK_SCRIPT % {"key": key, "fingerprint": fingerprint, "body": BODY}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s"]
    command += ["-s", script.name, server.url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    os.unlink(script.name)
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"wrk saw refused posts:\n{done.stdout}")
    if "Socket errors" in done.stdout:
        # wrk gives up on an answer after 2 s: the rate is past saturation.
        print(f"    wrk: {done.stdout.split('Socket errors: ')[1].splitlines()[0]}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if found is None:
        raise SystemExit(f"cannot read wrk's output:\n{done.stdout}")
    return float(found.group(1))


STORM_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local post = wrk.format(nil, "/v1/alerts", nil, '%(body)s')
local probe = wrk.format("GET", "/healthz", {}, nil)
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("share", %(share)d)
  -- wrk calls request() once on the first thread's script to check it
  -- before the run; that post is never sent, so that thread makes one more.
  thread:set("quota", %(share)d + (#threads == 1 and 1 or 0))
end
made, accepted, refused = 0, 0, 0
function request()
  made = made + 1
  if made <= quota then return post end
  return probe
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1
  elseif status ~= 200 then refused = refused + 1 end
  if accepted + refused >= share then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local a, r = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("accepted"); r = r + t:get("refused") end
  io.write(string.format("storm accepted=%%d refused=%%d p99_us=%%d\\n",
    a, r, latency:percentile(99.0)))
end
"""


def wrk_storm(
    server: Server, url: str, key: str, fingerprint: str
) -> tuple[int, int, float]:
    """Post STORM_ALERTS alerts with one fingerprint as fast as the service
    takes them: wrk, 64 connections, stopped once every alert is stored (or
    after four times the storm's time). Returns accepted, refused, p99 ms."""
    share = STORM_ALERTS // WRK_THREADS
    body = BODY % fingerprint
    script_text = STORM_SCRIPT % {"key": key, "body": body, "share": share}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}"]
    command += [f"-d{STORM_SECONDS * 4:g}s", "-s", script.name, server.url]
    load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + STORM_SECONDS * 4
    while time.monotonic() < deadline and load.poll() is None:
        if count_storm(url, fingerprint)[1] >= STORM_ALERTS:
            break
        time.sleep(0.25)
    if load.poll() is None:
        load.send_signal(signal.SIGINT)  # wrk reports what it has on SIGINT
    output, _ = load.communicate(timeout=30)
    os.unlink(script.name)
    found = re.search(r"storm accepted=(\d+) refused=(\d+) p99_us=(\d+)", output)
    if found is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    accepted, refused, p99_us = (int(g) for g in found.groups())
    return accepted, refused, p99_us / 1000


async def open_loop(
    url: str, key: str, rate: float, seconds: float, fingerprint: str
) -> list[float]:
    """Post at ``rate`` per second whatever the answers; each latency in ms.

    Latency runs from when a post was due, so time spent waiting for a free
    connection counts. The client speaks HTTP/1.1 over keep-alive sockets
    itself: a general-purpose client costs more CPU per request than the
    server under test.
    """
    host, port = url.removeprefix("http://").split(":")
    due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    start = time.perf_counter() + 0.2
    total = int(rate * seconds)
    for number in range(total):
        due.put_nowait((number, start + number / rate))
    latencies: list[float] = []
    failures: list[int] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while not due.empty():
                number, at = due.get_nowait()
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                fp = fingerprint or f"lat-{number}-{uuid.uuid4().hex[:8]}"
                writer.write(request_bytes(host, key, BODY % fp))
                status = await read_response(reader)
                latencies.append((time.perf_counter() - at) * 1000)
                if status != 202:
                    failures.append(status)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(64)))
    if failures:
        raise SystemExit(f"{len(failures)} of {total} posts were not accepted")
    return latencies


def request_bytes(host: str, key: str, body: str) -> bytes:
    payload = body.encode()
    head = (
        f"POST /v1/alerts HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


# -- the runs ----------------------------------------------------------------------


@dataclass
class Row:
    database: str
    variant: str
    rate: float
    p50: float
    p99: float


def prepare(url: str, data_dir: Path) -> str:
    """Migrate the database and make a source key for the bench."""
    from engine.runtime import Runtime
    from engine.store.db import open_database, upgrade
    from engine.store.orgs import create_api_key, ensure_org

    upgrade(url)
    database = open_database(url)
    runtime = Runtime.system()
    with database.sessions.begin() as session:
        org = ensure_org(
            session, ids=runtime.ids, name="default", now=runtime.clock.now()
        )
        issued = create_api_key(
            session,
            ids=runtime.ids,
            org_id=org.id,
            role="source",
            now=runtime.clock.now(),
        )
    database.dispose()
    data_dir.mkdir(parents=True, exist_ok=True)
    return issued.key


def measure(
    name: str, variant: str, url: str, data_dir: Path, key: str, seconds: float, fp: str
) -> Row:
    server_variant = "intake" if variant.startswith("intake") else variant
    with running(server_variant, url, data_dir) as server:
        rate = wrk_rate(server, key, fp, seconds)
        latencies = asyncio.run(
            open_loop(server.url, key, rate / 2, LATENCY_SECONDS, fp)
        )
    row = Row(
        name, variant, rate, percentile(latencies, 0.5), percentile(latencies, 0.99)
    )
    print(
        f"  {name:10} {variant:12} {rate:8.0f}/s  p50 {row.p50:6.1f} ms  "
        f"p99 {row.p99:6.1f} ms",
        flush=True,
    )
    return row


@dataclass
class Storm:
    database: str
    incidents: int
    alerts: int
    seconds: float
    peak_mb: float
    p99: float


def storm(name: str, url: str, data_dir: Path, key: str) -> Storm:
    fingerprint = f"storm-{uuid.uuid4().hex[:8]}"
    with running("service", url, data_dir) as server:
        process = psutil.Process(server.process.pid)
        peak = [process.memory_info().rss]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak.append(process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        accepted, refused, p99 = wrk_storm(server, url, key, fingerprint)
        time.sleep(2)  # let the flow worker take its turn on the one incident
        done.set()
        sampler.join()
    elapsed = absorbed_seconds(url, fingerprint)
    print(
        f"  {name:10} storm        wrk: {accepted} accepted, {refused} refused",
        flush=True,
    )
    incidents, alerts = count_storm(url, fingerprint)
    result = Storm(name, incidents, alerts, elapsed, max(peak) / 2**20, p99)
    print(
        f"  {name:10} storm        {alerts} alerts in {elapsed:.1f} s -> "
        f"{incidents} incident(s); peak RSS {result.peak_mb:.0f} MB",
        flush=True,
    )
    return result


def count_storm(url: str, fingerprint: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from engine.store.db import open_database
    from engine.store.models import Alert

    database = open_database(url)
    with database.readers() as session:
        alerts = session.scalar(
            select(func.count()).where(Alert.fingerprint == fingerprint)
        )
        incidents = session.scalar(
            select(func.count(func.distinct(Alert.incident_id))).where(
                Alert.fingerprint == fingerprint
            )
        )
    database.dispose()
    return int(incidents or 0), int(alerts or 0)


def absorbed_seconds(url: str, fingerprint: str) -> float:
    """From the first storm alert stored to the last, by their receipt times."""
    from sqlalchemy import func, select

    from engine.store.db import open_database
    from engine.store.models import Alert

    database = open_database(url)
    with database.readers() as session:
        first, last = session.execute(
            select(func.min(Alert.received_at), func.max(Alert.received_at)).where(
                Alert.fingerprint == fingerprint
            )
        ).one()
    database.dispose()
    return (last - first).total_seconds() if first and last else float("inf")


def run_database(
    name: str, url: str, data_dir: Path, seconds: float, storm_only: bool = False
) -> tuple[list[Row], Storm]:
    key = prepare(url, data_dir)
    print(f"{name}:", flush=True)
    if storm_only:
        return [], storm(name, url, data_dir, key)
    rows = [
        measure(name, "parse", url, data_dir, key, seconds, ""),
        measure(name, "insert", url, data_dir, key, seconds, ""),
        measure(name, "intake-open", url, data_dir, key, seconds, ""),
        measure(name, "intake-fold", url, data_dir, key, seconds, "one-fp"),
    ]
    return rows, storm(name, url, data_dir, key)


def report(rows: list[Row], storms: list[Storm]) -> bool:
    print()
    print(f"{'database':10} {'variant':12} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(
            f"{row.database:10} {row.variant:12} {row.rate:8.0f} {row.p50:8.1f} "
            f"{row.p99:8.1f}"
        )
    print()
    good = True
    for database in sorted({r.database for r in rows}, reverse=True):
        by = {r.variant: r for r in rows if r.database == database}
        for variant in ("intake-open", "intake-fold"):
            vs_insert = by[variant].rate / by["insert"].rate
            vs_parse = by[variant].rate / by["parse"].rate
            ok = vs_insert >= 1.5 and vs_parse >= 0.4 and by[variant].p99 < 50
            good &= ok
            print(
                f"{database:10} {variant:12} {vs_insert:4.2f}x the INSERT floor "
                f"(target 1.5), {vs_parse:4.0%} of parse-only (target 40 %), "
                f"p99 {by[variant].p99:.1f} ms at half load (target 50): "
                f"{'met' if ok else 'MISSED'}"
            )
    for s in storms:
        whole = s.incidents == 1 and s.alerts == STORM_ALERTS and s.peak_mb < 200
        in_time = s.seconds <= STORM_SECONDS
        good &= whole and in_time
        print(
            f"{s.database:10} storm        {s.alerts}/{STORM_ALERTS} alerts, "
            f"{s.incidents} incident, peak {s.peak_mb:.0f} MB (targets 1, all, "
            f"< 200 MB): {'met' if whole else 'MISSED'}; first to last stored "
            f"in {s.seconds:.1f} s (target {STORM_SECONDS:g}), p99 "
            f"{s.p99:.0f} ms: {'met' if in_time else 'MISSED'}"
        )
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return good


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("TEST_DATABASE_URL", ""))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--storm-only", action="store_true", help="Only the storm.")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.url, args.port, args.data_dir)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    rows: list[Row] = []
    storms: list[Storm] = []
    with tempfile.TemporaryDirectory(prefix="ip-bench-api-") as folder:
        data = Path(folder)
        found, storm_row = run_database(
            "sqlite",
            f"sqlite:///{data / 'bench.sqlite3'}",
            data / "sqlite",
            args.duration,
            args.storm_only,
        )
        rows += found
        storms.append(storm_row)
        if args.postgres:
            from tests.support.databases import PostgresSchema

            schema = PostgresSchema(args.postgres, prefix="ip_bench")
            url = schema.create()
            try:
                found, storm_row = run_database(
                    "postgres", url, data / "pg", args.duration, args.storm_only
                )
                rows += found
                storms.append(storm_row)
            finally:
                schema.drop()
    sys.exit(0 if report(rows, storms) else 1)


if __name__ == "__main__":
    main()
