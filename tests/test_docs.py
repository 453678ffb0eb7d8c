"""The generated and linked documentation stays in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from engine.facts.vocabulary import page

ROOT = Path(__file__).resolve().parent.parent


def test_facts_page_matches_the_schema() -> None:
    assert (ROOT / "docs" / "facts.md").read_text() == page(), (
        "docs/facts.md is stale: "
        "run `python -m engine.facts.vocabulary > docs/facts.md`"
    )


def test_every_relative_link_of_the_docs_points_at_a_file() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for doc in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_every_error_code_in_the_code_is_documented() -> None:
    used = set()
    for path in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("api/**/*.py")]:
        used.update(re.findall(r'"([EW]\d{3})"', path.read_text()))
    documented = set(
        re.findall(
            r"^\| ([EW]\d{3}) \|", (ROOT / "docs" / "errors.md").read_text(), re.M
        )
    )
    assert sorted(used - documented) == []
