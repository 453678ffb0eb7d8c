"""Run every benchmark, one after another: ``python -m bench``."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("policy", "snapshot", "flow", "store", "api")

if __name__ == "__main__":
    failed = 0
    for name in BENCHMARKS:
        print(f"\n== bench.{name}", flush=True)
        failed |= subprocess.run([sys.executable, "-m", f"bench.{name}"]).returncode
    raise SystemExit(1 if failed else 0)
