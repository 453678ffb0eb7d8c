"""Hot reload: the last good policy stays when a new one fails."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.errors import PolicyError
from engine.policy.holder import PolicyHolder, install_sighup
from engine.runtime import FixedClock
from tests.engine.policy.conftest import SHIPPED_RULES, classify_rule, write_rules

START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
BROKEN = "rules:\n  - id: broken\n    when: {alert.kind: {eqq: x}}\n    then: {}\n"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return write_rules(
        tmp_path / "rules", [classify_rule("manual", {"alert.kind": "manual"})]
    )


def test_first_reload_installs_the_policy(directory: Path) -> None:
    clock = FixedClock(START)
    holder = PolicyHolder(directory, clock=clock)
    status = holder.reload()
    assert status.ok and status.version == holder.current.version
    assert status.loaded_at == START and status.attempts == 1


def test_reload_keeps_last_good_policy_on_bad_file(
    directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(START)
    holder = PolicyHolder(directory, clock=clock)
    good = holder.reload()
    clock.advance(60)
    (directory / "classify.yaml").write_text(BROKEN)
    with caplog.at_level(logging.WARNING, logger="engine.policy.holder"):
        status = holder.reload()
    assert not status.ok
    assert status.version == good.version == holder.current.version
    assert status.loaded_at == START and status.attempted_at == clock.now()
    assert (status.attempts, status.failures) == (2, 1)
    codes = [(p.code, p.location.file, p.location.line) for p in status.problems]
    assert ("E202", "classify.yaml", 3) in codes
    facts = {"alert": {"kind": "manual"}}
    assert holder.current.evaluate("classify", facts).rule_ids == ("manual",)
    record = next(r for r in caplog.records if r.msg == "policy.reload_failed")
    assert any("classify.yaml:3" in line for line in record.problems)  # type: ignore[attr-defined]


def test_a_policy_the_engine_refuses_does_not_replace_the_running_one(
    directory: Path,
) -> None:
    holder = PolicyHolder(directory)
    good = holder.reload()
    rule = classify_rule("wide", {"any": [{f"x.v{n}": {"gte": n}} for n in range(80)]})
    write_rules(directory, [rule])
    status = holder.reload()
    assert not status.ok and status.version == good.version
    assert [p.code for p in status.problems] == ["E302"]


def test_no_policy_before_a_first_good_load(tmp_path: Path) -> None:
    (tmp_path / "classify.yaml").write_text(BROKEN)
    holder = PolicyHolder(tmp_path)
    assert not holder.reload().ok
    with pytest.raises(PolicyError) as refused:
        holder.current  # noqa: B018
    assert refused.value.code == "E120"
    assert "the first load failed" in str(refused.value)


def test_unchanged_content_keeps_version_and_load_time(directory: Path) -> None:
    clock = FixedClock(START)
    holder = PolicyHolder(directory, clock=clock)
    first = holder.reload()
    policy = holder.current
    clock.advance(30)
    again = holder.reload()
    assert again.version == first.version and again.loaded_at == START
    assert holder.current.backend is policy.backend


def test_watcher_reloads_on_change_and_not_on_touch(directory: Path) -> None:
    holder = PolicyHolder(directory)
    holder.reload()
    assert not holder.changed()
    os.utime(directory / "classify.yaml")
    assert not holder.changed()
    write_rules(directory, [classify_rule("other", {"alert.kind": "deploy"})])
    assert holder.changed()
    reloaded = threading.Event()
    original = holder.reload

    def reload_and_tell() -> object:
        status = original()
        reloaded.set()
        return status

    holder.reload = reload_and_tell  # type: ignore[method-assign]
    holder.start_watching(0.05)
    try:
        assert reloaded.wait(10)
    finally:
        holder.stop()
    facts = {"alert": {"kind": "deploy"}}
    assert holder.current.evaluate("classify", facts).rule_ids == ("other",)


def test_sighup_reloads_the_policy(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, directory)
    holder = PolicyHolder(directory)
    holder.reload()
    holder.start_watching(3600)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        install_sighup(holder)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if holder.status.attempts == 2:
                break
            threading.Event().wait(0.05)
    finally:
        signal.signal(signal.SIGHUP, previous)
        holder.stop()
    assert holder.status.attempts == 2 and holder.status.ok


def test_status_as_dict_carries_problem_locations(directory: Path) -> None:
    holder = PolicyHolder(directory, clock=FixedClock(START))
    holder.reload()
    (directory / "classify.yaml").write_text(BROKEN)
    shown = holder.reload().as_dict()
    assert shown["ok"] is False and shown["loaded_at"] == START.isoformat()
    wanted = {"code": "E202", "file": "classify.yaml", "line": 3}.items()
    assert any(wanted <= problem.items() for problem in shown["problems"])


def test_a_rule_file_that_disappears_keeps_the_running_policy(directory: Path) -> None:
    shutil.copy(SHIPPED_RULES / "thresholds.yaml", directory)
    holder = PolicyHolder(directory, clock=FixedClock(START))
    good = holder.reload()
    (directory / "classify.yaml").rename(directory / "classify.yaml.bak")

    status = holder.reload()

    assert not status.ok
    assert holder.current.version == good.version
    (problem,) = status.problems
    assert problem.code == "E107"
    assert problem.message.startswith(
        f"classify.yaml disappeared from {directory}; the running policy stays"
    )


def test_a_directory_emptied_of_rule_files_keeps_the_running_policy(
    directory: Path,
) -> None:
    holder = PolicyHolder(directory, clock=FixedClock(START))
    good = holder.reload()
    (directory / "classify.yaml").unlink()

    status = holder.reload()

    assert not status.ok
    assert holder.current.version == good.version
    (problem,) = status.problems
    assert problem.code == "E108"
    assert problem.message.startswith(f"rules directory {directory} holds no rule file")
