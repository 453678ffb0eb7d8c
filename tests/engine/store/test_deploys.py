from __future__ import annotations

from datetime import timedelta

from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.deploys import DeployIn, recent_deploys, record_deploy


def test_recent_deploys_are_newest_first_and_filtered_by_app_and_time(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    start = clock.now()
    with db.sessions.begin() as session:
        for app, version, minutes in (
            ("web", "1.0.0", 0),
            ("api", "2.0.0", 10),
            ("web", "1.1.0", 20),
        ):
            record_deploy(
                session,
                DeployIn(app, version, start + timedelta(minutes=minutes), "ci"),
                ids=ids,
                org_id=org_id,
            )

    with db.readers() as session:
        web = recent_deploys(session, org_id, start, app="web")
        late = recent_deploys(session, org_id, start + timedelta(minutes=5))

    assert [d.version for d in web] == ["1.1.0", "1.0.0"]
    assert [d.version for d in late] == ["1.1.0", "2.0.0"]
