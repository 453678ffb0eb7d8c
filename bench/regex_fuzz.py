"""Why the engine's regular expressions are not used: ``python -m bench.regex_fuzz``.

Generates random small patterns (three letters, groups, classes, ``* + ?``,
alternation, optionally ``.``), compiles them as durable_rules ``$mt``
conditions, asserts random strings and compares the engine's verdict with
Python's ``re.fullmatch``; ``--batch`` puts several patterns in one
ruleset, as a policy would. Each batch runs in a child process with a
timeout, because some patterns make the engine's compiler spin. It prints
how many patterns gave a wrong answer, hung or failed to compile. This is a
measurement of the C core (imported here on purpose), not a code path of
the service.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import re
from collections.abc import Sequence
from typing import Any

LETTERS = "abc"
Pattern = tuple[str, str]  # the engine's form, Python's form


def atom(rng: random.Random, depth: int, dots: bool) -> Pattern:
    roll = rng.random()
    if roll < 0.45:
        letter = rng.choice(LETTERS)
        return letter, letter
    if roll < 0.55 and dots:
        return ".", "."
    if roll < 0.7:
        members = "".join(rng.sample(LETTERS, rng.randint(1, 2)))
        return f"[{members}]", f"[{members}]"
    if depth < 2:
        engine, python = alternation(rng, depth + 1, dots)
        return f"({engine})", f"(?:{python})"
    return "a", "a"


def quantified(rng: random.Random, depth: int, dots: bool) -> Pattern:
    engine, python = atom(rng, depth, dots)
    if rng.random() < 0.6:
        return engine, python
    mark = rng.choice("*+?")
    return engine + mark, python + mark


def alternation(rng: random.Random, depth: int, dots: bool) -> Pattern:
    branches = []
    for _ in range(rng.randint(1, 2 if depth else 3)):
        parts = [quantified(rng, depth, dots) for _ in range(rng.randint(1, 3))]
        branches.append(("".join(e for e, _ in parts), "".join(p for _, p in parts)))
    return "|".join(e for e, _ in branches), "|".join(p for _, p in branches)


def evaluate(patterns: Sequence[Pattern], texts: Sequence[str], out: Any) -> None:
    import durable_rules_engine as engine

    rules = {
        f"r{n}": {"all": [{"m": {"$mt": {"s": e}}}]}
        for n, (e, _) in enumerate(patterns)
    }
    try:
        handle = engine.create_ruleset("fuzz", json.dumps(rules))
    except engine.error:
        out.put(None)
        return
    fired = []
    for text in texts:
        fact = json.dumps({"id": "1", "sid": "1", "s": text})
        status, state = engine.assert_fact(handle, fact)
        names = set()
        started = engine.start_action_for_state(handle, state) if status == 0 else None
        messages = started[1] if started else None
        while messages:
            names.update(json.loads(messages))
            messages = engine.complete_and_start_action(handle, state)
        engine.retract_fact(handle, fact)
        fired.append(sorted(names))
    out.put(fired)


def run(patterns: Sequence[Pattern], texts: Sequence[str], timeout_s: float) -> Any:
    queue: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=evaluate, args=(patterns, texts, queue))
    child.start()
    child.join(timeout_s)
    if child.is_alive():
        child.kill()
        child.join()
        return "hang"
    return queue.get() if child.exitcode == 0 else "crash"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1, help="patterns per ruleset")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dots", action="store_true", help="also use '.'")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts = {"right": 0, "wrong": 0, "hang": 0, "error": 0, "crash": 0}
    examples: dict[str, str] = {}
    for _ in range(max(1, args.patterns // args.batch)):
        patterns = [alternation(rng, 0, args.dots) for _ in range(args.batch)]
        texts = [random_text(rng) for _ in range(60)]
        result = run(patterns, texts, 8.0)
        if result in ("hang", "crash") or result is None:
            kind = "error" if result is None else str(result)
            counts[kind] += len(patterns)
            examples.setdefault(kind, " ; ".join(e for e, _ in patterns))
            continue
        for number, (engine_form, python_form) in enumerate(patterns):
            wrong = [
                text
                for text, fired in zip(texts, result, strict=True)
                if (f"r{number}" in fired)
                != (re.fullmatch(python_form, text, re.S) is not None)
            ]
            counts["wrong" if wrong else "right"] += 1
            if wrong:
                examples.setdefault("wrong", f"{engine_form!r} on {wrong[0]!r}")
    print(", ".join(f"{kind}: {count}" for kind, count in counts.items()))
    for kind, example in examples.items():
        print(f"example {kind}: {example}")
    return 0


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS + "d") for _ in range(rng.randint(0, 6)))


if __name__ == "__main__":
    raise SystemExit(main())
