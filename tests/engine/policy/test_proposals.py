from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import ConflictError, PolicyError
from engine.policy import proposals
from engine.policy.loader import load

RULES = Path(__file__).resolve().parents[3] / "rules"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy, ignore=shutil.ignore_patterns("tests"))
    return copy


def test_proposal_changes_one_line_and_keeps_comments(rules: Path) -> None:
    edit = proposals.propose(rules, "memory.critical_percent", 90)

    assert edit.old_value == 95
    changed = [line for line in edit.diff.splitlines() if line[:1] in "+-"]
    assert changed == [
        "--- a/thresholds.yaml",
        "+++ b/thresholds.yaml",
        "-    critical_percent: 95       # the kernel is about to OOM-kill",
        "+    critical_percent: 90       # the kernel is about to OOM-kill",
    ]


def test_applied_proposal_loads_with_the_new_value(rules: Path) -> None:
    edit = proposals.propose(rules, "disk.minutes_to_full", 120)

    proposals.apply(rules, edit)

    assert load(rules).thresholds.values["disk.minutes_to_full"] == 120


def test_proposal_for_an_unknown_threshold_is_refused(rules: Path) -> None:
    with pytest.raises(PolicyError) as raised:
        proposals.propose(rules, "memory.nope", 1)

    assert (
        raised.value.message
        == "threshold memory.nope does not exist in thresholds.yaml"
    )


def test_stale_proposal_is_refused_after_a_manual_edit(rules: Path) -> None:
    edit = proposals.propose(rules, "memory.critical_percent", 90)
    path = rules / "thresholds.yaml"
    path.write_text(path.read_text() + "\n# edited by hand\n")

    with pytest.raises(ConflictError):
        proposals.apply(rules, edit)


def test_proposal_that_breaks_validation_is_refused_and_not_written(
    rules: Path,
) -> None:
    edit = proposals.propose(rules, "memory.critical_percent", 90)
    broken = proposals.Edit(
        edit.file,
        edit.threshold,
        edit.old_value,
        "x",
        edit.old_text,
        edit.old_text.replace("critical_percent: 95", "critical_percent: [1, 2]"),
    )

    with pytest.raises(PolicyError) as raised:
        proposals.apply(rules, broken)

    assert raised.value.code == "E122"
    assert (rules / "thresholds.yaml").read_text() == edit.old_text
