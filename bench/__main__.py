"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

from bench import policy, snapshot

if __name__ == "__main__":
    policy.main()
    snapshot.main()
