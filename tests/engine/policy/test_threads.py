"""Concurrent evaluations give the results of serial ones, during reloads."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from engine.policy.holder import PolicyHolder
from tests.engine.policy.conftest import SHIPPED_RULES, Pair, scenarios

THREADS = 8
ROUNDS = 40


def variants() -> list[dict[str, Any]]:
    """The scenarios, and each with memory and disk pushed over the lines."""
    found = []
    for _, facts in scenarios():
        found.append(facts)
        pushed = {**facts, "snapshot": {**facts["snapshot"]}}
        pushed["snapshot"]["memory"] = {"percent": 97, "oom_kills_recent": 1}
        pushed["snapshot"]["disk"] = {"max_percent": 96, "write_errors": 0}
        found.append(pushed)
    return found


def outcomes(policy: Any, facts: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    stages = policy.source.rules
    return {stage: policy.evaluate(stage, facts).rule_ids for stage in stages}


def test_eight_threads_match_serial_results_while_reloading(
    tmp_path: Path, shipped: Pair
) -> None:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, directory)
    holder = PolicyHolder(directory)
    assert holder.reload().ok
    documents = variants()
    serial = [outcomes(shipped.python, facts) for facts in documents]
    wrong: list[tuple[int, str]] = []
    done = threading.Event()

    def evaluate(worker: int) -> None:
        for round_ in range(ROUNDS):
            for index, facts in enumerate(documents):
                if outcomes(holder.current, facts) != serial[index]:
                    wrong.append((worker, f"round {round_} document {index}"))

    def reload_again_and_again() -> None:
        classify = directory / "classify.yaml"
        original = classify.read_text()
        edits = 0
        while not done.is_set():
            edits += 1
            classify.write_text(original + f"# edit {edits % 2}\n")
            holder.reload()
        classify.write_text(original)

    workers = [threading.Thread(target=evaluate, args=(n,)) for n in range(THREADS)]
    reloader = threading.Thread(target=reload_again_and_again)
    reloader.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    reloader.join()
    assert wrong == []
    assert holder.status.attempts > 2 and holder.status.failures == 0
