"""The watcher sends what starts, repeats what lasts, resolves what clears."""

from __future__ import annotations

from sqlalchemy import select

from engine.flow.watcher import Watcher
from engine.runtime import Runtime, SubprocessRunner
from engine.store.models import Alert
from tests.engine.flow.harness import Harness, Snapshots, rules_copy

FULL = {"disk": {"max_percent": 99, "worst_mount": "/"}}
FINE = {"disk": {"max_percent": 40, "worst_mount": "/"}}


def watcher(h: Harness, snapshots: Snapshots, repeat_s: float = 600) -> Watcher:
    runtime = Runtime(clock=h.clock, ids=h.ids, commands=SubprocessRunner())
    return Watcher(
        h.db.sessions,
        lambda: h.policy,
        snapshots,
        runtime,
        org=h.org_name,
        repeat_s=repeat_s,
    )


def alerts(h: Harness) -> list[tuple[str, str]]:
    with h.db.sessions() as session:
        rows = session.scalars(select(Alert).order_by(Alert.received_at, Alert.id))
        return [(a.fingerprint, a.status) for a in rows]


def test_a_condition_is_sent_once_repeated_late_and_resolved(
    db, clock, ids, tmp_path
) -> None:
    snapshots = Snapshots(FULL, clock=clock)
    h = Harness(db, clock, ids, rules_copy(tmp_path), snapshots)
    look = watcher(h, snapshots)

    first = look.tick()
    clock.advance(30)
    second = look.tick()
    clock.advance(600)
    third = look.tick()
    snapshots.before = FINE
    clock.advance(30)
    fourth = look.tick()

    assert [a.status for a in first] == ["opened"]
    assert second == []
    assert [a.status for a in third] == ["folded"]
    assert [a.status for a in fourth] == ["resolved"]
    assert alerts(h) == [
        ("watcher:watch-disk", "firing"),
        ("watcher:watch-disk", "firing"),
        ("watcher:watch-disk", "resolved"),
    ]


def test_a_quiet_host_sends_nothing(db, clock, ids, tmp_path) -> None:
    snapshots = Snapshots(FINE, clock=clock)
    h = Harness(db, clock, ids, rules_copy(tmp_path), snapshots)

    assert watcher(h, snapshots).tick() == []
    assert alerts(h) == []
