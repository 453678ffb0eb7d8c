"""Run every benchmark: ``python -m bench``."""

from __future__ import annotations

from bench import snapshot

if __name__ == "__main__":
    snapshot.main()
