from __future__ import annotations

from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.incidents import load_incident
from engine.store.matches import MatchRecord, record_matches
from tests.engine.store.helpers import open_incident


def test_every_match_is_kept_with_its_place_and_the_selected_one_marked(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)
    matches = [
        MatchRecord(
            "memory-exhaustion-host",
            "rules/classify.yaml",
            12,
            True,
            {"snapshot.memory.percent": 97.5},
            {"type": "memory_exhaustion"},
        ),
        MatchRecord("process-crash-loop", "rules/classify.yaml", 40, False),
    ]
    with db.sessions.begin() as session:
        record_matches(
            session,
            matches,
            ids=ids,
            org_id=org_id,
            incident_id=incident_id,
            stage="classify",
            policy_version="sha256:ab12",
            at=clock.now(),
        )

    with db.readers() as session:
        stored = load_incident(session, org_id, incident_id).rule_matches

    assert [(m.rule_id, m.line, m.selected) for m in stored] == [
        ("memory-exhaustion-host", 12, True),
        ("process-crash-loop", 40, False),
    ]
    assert stored[0].facts_used == {"snapshot.memory.percent": 97.5}
    assert {m.policy_version for m in stored} == {"sha256:ab12"}
