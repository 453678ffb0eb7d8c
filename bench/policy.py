"""Benchmark of policy evaluation: ``python -m bench.policy``.

On one core (the process pins itself), it measures evaluations per second
and p50/p99 latency of the shipped classify stage and of all stages of the
shipped policy, then of generated policies of 30, 300 and 3000 rules, each
with the durable_rules backend and the linear Python evaluator; the
classify stage also against a hand-written plain-Python version (the floor)
and against durable_rules' own ``durable.lang`` host API used the usual way
(a comparison only: the service never uses it). It prints a table, the
resident memory of a process holding the shipped policy, and whether each
target of the issue is met.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.facts.scenario import scenario_facts
from engine.policy.compiler import DurableBackend, compile_policy
from engine.policy.loader import PolicySource, load
from engine.policy.policy import Policy, PythonBackend

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"
Facts = dict[str, Any]


@dataclass(frozen=True)
class Row:
    name: str
    backend: str
    rate: float  # evaluations per second
    p50_us: float
    p99_us: float
    note: str = ""


def pin_to_one_core() -> int:
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def measure(
    name: str,
    backend: str,
    run: Callable[[Facts], Any],
    facts: Sequence[Facts],
    count: int,
    note: str = "",
) -> Row:
    for document in facts[:50]:
        run(document)  # warm caches
    timings = []
    clock = time.perf_counter_ns
    for index in range(count):
        document = facts[index % len(facts)]
        started = clock()
        run(document)
        timings.append(clock() - started)
    timings.sort()
    total_s = sum(timings) / 1e9
    return Row(
        name,
        backend,
        count / total_s,
        statistics.median(timings) / 1e3,
        timings[int(len(timings) * 0.99)] / 1e3,
        note,
    )


def scenario_documents() -> list[Facts]:
    documents = []
    for path in sorted(SCENARIOS.glob("*.json")):
        documents.append(scenario_facts(json.loads(path.read_text()), name=path.name))
    return documents


def both(source: PolicySource) -> tuple[Policy, Policy]:
    return compile_policy(source), Policy(source, PythonBackend(source))


def rulesets(policy: Policy, stage: str | None = None) -> int:
    backend = policy.backend
    assert isinstance(backend, DurableBackend)
    described = backend.describe()
    stages = [stage] if stage else list(described)
    return sum(described[name].rulesets for name in stages)


def all_stages(policy: Policy) -> Callable[[Facts], Any]:
    stages = list(policy.source.rules)

    def run(facts: Facts) -> None:
        for stage in stages:
            policy.evaluate(stage, facts)

    return run


def hand_written_classify(thresholds: Mapping[str, Any]) -> Callable[[Facts], Any]:
    """The shipped classify rules written out in plain Python: the floor."""
    t = thresholds

    def num(facts: Facts, *path: str) -> float | None:
        node: Any = facts
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return (
            node
            if isinstance(node, int | float) and not isinstance(node, bool)
            else None
        )

    def ge(value: float | None, limit: float) -> bool:
        return value is not None and value >= limit

    def le(value: float | None, limit: float) -> bool:
        return value is not None and value <= limit

    def run(facts: Facts) -> list[str]:
        s = facts.get("snapshot") or {}
        disk, mem = s.get("disk") or {}, s.get("memory") or {}
        matched = []
        if (
            ge(num(disk, "max_percent"), t["disk.critical_percent"])
            or ge(num(disk, "max_inodes_percent"), t["disk.inodes_critical_percent"])
            or ge(num(disk, "write_errors"), 1)
        ):
            matched.append("disk-full")
        critical = t["memory.critical_percent"]
        if (
            ge(num(mem, "percent"), critical)
            or ge(num(mem, "limit_percent"), critical)
            or ge(num(mem, "oom_kills_recent"), 1)
        ):
            matched.append("memory-exhausted-host")
        if ge(num(s, "dns", "failure_rate"), t["dns.failure_rate"]):
            matched.append("dns-failing")
        loss = num(s, "network", "packet_loss_percent")
        if ge(loss, t["network.packet_loss_percent"]):
            matched.append("packet-loss")
        recent = le(num(s, "deploys", "last_minutes_ago"), t["deploy.recent_minutes"])
        pm2 = s.get("pm2") or {}
        if recent and (ge(num(pm2, "restart_loops"), 1) or ge(num(pm2, "errored"), 1)):
            matched.append("deploy-then-crash-loop")
        if recent and ge(num(s, "http", "error_rate"), t["http.error_rate_critical"]):
            matched.append("deploy-then-errors")
        uploads = s.get("uploads") or {}
        surge = t["uploads.surge"]
        if ge(num(uploads, "rate_vs_baseline"), surge) or ge(
            num(uploads, "bytes_vs_baseline"), surge
        ):
            matched.append("upload-surge")
        if ge(num(uploads, "inbound_vs_baseline"), t["uploads.flood"]):
            matched.append("inbound-flood")
        failure = num(s, "upstream", "failure_rate")
        if (
            ge(failure, t["upstream.failure_rate"])
            or ge(num(s, "http", "bad_gateway_rate"), t["http.bad_gateway_rate"])
            or ge(num(s, "dependencies", "failing"), 1)
        ):
            matched.append("upstream-down")
        if ge(failure, t["upstream.partial_failure_rate"]):
            matched.append("upstream-degraded")
        if ge(num(mem, "percent"), t["memory.warning_percent"]) and ge(
            num(mem, "growth_mb_per_min"), t["memory.growth_mb_per_min"]
        ):
            matched.append("memory-climbing")
        processes = pm2.get("processes")
        limit = t["memory.process_restart_mb"]
        if isinstance(processes, list) and any(
            isinstance(p, dict) and ge(num(p, "memory_mb"), limit) for p in processes
        ):
            matched.append("process-memory-leak")
        if ge(num(disk, "max_percent"), t["disk.warning_percent"]) and le(
            num(disk, "min_minutes_to_full"), t["disk.minutes_to_full"]
        ):
            matched.append("disk-filling")
        name = (facts.get("alert") or {}).get("name")
        if isinstance(name, str):
            lowered = name.lower()
            if "memory" in lowered or "oom" in lowered:
                matched.append("alert-says-memory")
            if any(word in lowered for word in ("disk", "filesystem", "inode")):
                matched.append("alert-says-disk")
        return matched

    return run


def durable_lang_classify(thresholds: Mapping[str, Any]) -> Callable[[Facts], Any]:
    """The shipped classify rules in durable_rules' own DSL, run the usual way."""
    from durable.lang import (
        assert_fact,
        m,
        retract_fact,
        ruleset,
        when_all,
        when_any,
    )

    t, fired = thresholds, []
    name = f"bench_classify_{os.getpid()}"
    s, d, mem = m.snapshot, m.snapshot.disk, m.snapshot.memory

    def fire(rule: str) -> Callable[[Any], None]:
        return lambda context: fired.append(rule)

    with ruleset(name):
        when_any(d.max_percent >= t["disk.critical_percent"], d.write_errors >= 1)(
            fire("disk-full")
        )
        when_any(
            mem.percent >= t["memory.critical_percent"], mem.oom_kills_recent >= 1
        )(fire("memory-exhausted-host"))
        when_all(s.dns.failure_rate >= t["dns.failure_rate"])(fire("dns-failing"))
        when_all(s.network.packet_loss_percent >= t["network.packet_loss_percent"])(
            fire("packet-loss")
        )
        when_all(
            (s.deploys.last_minutes_ago <= t["deploy.recent_minutes"])
            & (s.pm2.restart_loops >= 1)
        )(fire("deploy-then-crash-loop"))
        when_all(
            (s.deploys.last_minutes_ago <= t["deploy.recent_minutes"])
            & (s.http.error_rate >= t["http.error_rate_critical"])
        )(fire("deploy-then-errors"))
        when_all(s.uploads.rate_vs_baseline >= t["uploads.surge"])(fire("upload-surge"))
        when_all(s.uploads.inbound_vs_baseline >= t["uploads.flood"])(
            fire("inbound-flood")
        )
        when_any(
            s.upstream.failure_rate >= t["upstream.failure_rate"],
            s.dependencies.failing >= 1,
        )(fire("upstream-down"))
        when_all(s.upstream.failure_rate >= t["upstream.partial_failure_rate"])(
            fire("upstream-degraded")
        )
        when_all(
            (mem.percent >= t["memory.warning_percent"])
            & (mem.growth_mb_per_min >= t["memory.growth_mb_per_min"])
        )(fire("memory-climbing"))
        when_all(
            (d.max_percent >= t["disk.warning_percent"])
            & (d.min_minutes_to_full <= t["disk.minutes_to_full"])
        )(fire("disk-filling"))
        when_all(m.alert.name.matches(".*([mM][eE][mM][oO][rR][yY]|[oO][oO][mM]).*"))(
            fire("alert-says-memory")
        )

    def run(facts: Facts) -> list[str]:
        fired.clear()
        assert_fact(name, facts)
        retract_fact(name, facts)
        return list(fired)

    return run


PATHS = [f"snapshot.gen.m{n}" for n in range(60)]
KINDS = [
    "threshold_exceeded",
    "health_check_failure",
    "manual",
    "deploy",
    "error_rate_spike",
]


def generated_rule(rng: random.Random, number: int) -> dict[str, Any]:
    """A rule shaped like the shipped ones: thresholds, kinds, any, none, items."""
    leaves: list[dict[str, Any]] = [{rng.choice(PATHS): {"gte": rng.randint(10, 99)}}]
    shape = rng.random()
    if shape < 0.3:
        leaves.append({"alert.kind": {"eq": rng.choice(KINDS)}})
    elif shape < 0.5:
        leaves.append(
            {
                "any": [
                    {rng.choice(PATHS): {"lte": rng.randint(1, 50)}} for _ in range(2)
                ]
            }
        )
    elif shape < 0.6:
        leaves.append({"none": [{rng.choice(PATHS): {"gte": rng.randint(50, 99)}}]})
    elif shape < 0.7:
        item = {"memory_mb": {"gte": rng.randint(100, 999)}, "status": {"ne": "online"}}
        leaves.append({"snapshot.pm2.processes": {"any_item": item}})
    elif shape < 0.75:
        leaves.append({"alert.name": {"matches": f"(?i).*gen{number % 7}.*"}})
    when = leaves[0] if len(leaves) == 1 else {"all": leaves}
    return {
        "id": f"gen-{number}",
        "priority": rng.randint(0, 100),
        "when": when,
        "then": {"type": "memory_exhaustion", "confidence": 0.5},
    }


def generated_policy(count: int, directory: Path) -> PolicySource:
    rng = random.Random(count)
    rules = [generated_rule(rng, number) for number in range(count)]
    (directory / "classify.yaml").write_text(yaml.safe_dump({"rules": rules}))
    return load(directory)


def generated_facts(count: int) -> list[Facts]:
    rng = random.Random(7)
    documents = []
    for _ in range(count):
        gen = {path.rsplit(".", 1)[1]: rng.randint(0, 100) for path in PATHS}
        processes = [
            {"name": f"p{n}", "memory_mb": rng.randint(50, 1200), "status": "online"}
            for n in range(rng.randint(0, 4))
        ]
        documents.append(
            {
                "alert": {"kind": rng.choice(KINDS), "name": f"Gen{rng.randint(0, 9)}"},
                "snapshot": {"gen": gen, "pm2": {"processes": processes}},
            }
        )
    return documents


def resident_mb_with_shipped_policy() -> float:
    """VmRSS of a fresh process that loaded and compiled the shipped policy."""
    code = (
        "from pathlib import Path\n"
        "from engine.policy.compiler import compile_policy\n"
        "from engine.policy.loader import load\n"
        f"policy = compile_policy(load(Path({str(RULES)!r})))\n"
        "status = Path('/proc/self/status').read_text()\n"
        "rss = [l.split()[1] for l in status.splitlines() if l.startswith('VmRSS')]\n"
        "print(rss[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return int(done.stdout.strip()) / 1024


def shipped_rows(scale: float) -> list[Row]:
    source = load(RULES)
    durable, python = both(source)
    facts = scenario_documents()
    thresholds = source.thresholds.values
    n = max(1, int(20_000 * scale))
    rows = [
        measure(
            "classify (shipped)",
            "durable_rules",
            lambda f: durable.evaluate("classify", f),
            facts,
            n,
            f"{rulesets(durable, 'classify')} ruleset(s)",
        ),
        measure(
            "classify (shipped)",
            "python linear",
            lambda f: python.evaluate("classify", f),
            facts,
            n,
        ),
        measure(
            "classify (shipped)",
            "plain python (floor)",
            hand_written_classify(thresholds),
            facts,
            n,
        ),
        measure(
            "classify (shipped)",
            "durable.lang host",
            durable_lang_classify(thresholds),
            facts,
            max(1, n // 4),
        ),
    ]
    m = max(1, int(4_000 * scale))
    rows.append(
        measure(
            "all stages (shipped)",
            "durable_rules",
            all_stages(durable),
            facts,
            m,
            f"{rulesets(durable)} ruleset(s)",
        )
    )
    rows.append(
        measure("all stages (shipped)", "python linear", all_stages(python), facts, m)
    )
    return rows


def generated_rows(scale: float) -> list[Row]:
    rows = []
    facts = generated_facts(200)
    for count, evaluations in ((30, 10_000), (300, 2_000), (3000, 300)):
        with tempfile.TemporaryDirectory(prefix="bench-policy-") as folder:
            source = generated_policy(count, Path(folder))
        durable, python = both(source)
        n = max(1, int(evaluations * scale))
        name = f"generated {count} rules"
        run_durable = lambda f, p=durable: p.evaluate("classify", f)  # noqa: E731
        run_python = lambda f, p=python: p.evaluate("classify", f)  # noqa: E731
        rows.append(
            measure(
                name,
                "durable_rules",
                run_durable,
                facts,
                n,
                f"{rulesets(durable, 'classify')} ruleset(s)",
            )
        )
        rows.append(measure(name, "python linear", run_python, facts, n))
    return rows


def print_table(rows: Sequence[Row]) -> None:
    header = (
        f"{'workload':24} {'backend':22} {'eval/s':>10} {'p50 us':>9} "
        f"{'p99 us':>9}  note"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:24} {row.backend:22} {row.rate:>10,.0f} {row.p50_us:>9.1f} "
            f"{row.p99_us:>9.1f}  {row.note}"
        )


def verdicts(rows: Sequence[Row], resident_mb: float) -> list[str]:
    def find(name: str, backend: str) -> Row:
        return next(r for r in rows if r.name == name and r.backend == backend)

    classify = find("classify (shipped)", "durable_rules")
    big = find("generated 3000 rules", "durable_rules")
    linear = find("generated 3000 rules", "python linear")
    return [
        _verdict(
            classify.rate >= 10_000 and classify.p99_us < 200,
            f"shipped classify: {classify.rate:,.0f} eval/s (target >= 10,000), "
            f"p99 {classify.p99_us:.0f} us (target < 200)",
        ),
        _verdict(
            big.rate >= linear.rate,
            f"3000 rules: durable_rules {big.rate:,.0f} eval/s vs python linear "
            f"{linear.rate:,.0f} eval/s (target: at least as fast)",
        ),
        _verdict(
            resident_mb < 80,
            f"resident memory with the shipped policy: {resident_mb:.1f} MB "
            "(target < 80)",
        ),
    ]


def _verdict(ok: bool, text: str) -> str:
    return ("met     " if ok else "MISSED  ") + text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="work multiplier")
    args = parser.parse_args(argv)
    core = pin_to_one_core()
    print(f"pinned to CPU {core}; Python {sys.version.split()[0]}")
    rows = shipped_rows(args.scale) + generated_rows(args.scale)
    print_table(rows)
    resident = resident_mb_with_shipped_policy()
    print()
    for line in verdicts(rows, resident):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
