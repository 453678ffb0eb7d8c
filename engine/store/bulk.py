"""Writing many rows in few statements: the flow's batches use this.

A worker that takes a batch of incidents through a checkpoint writes, for
each table, all the batch's new rows in one ``INSERT`` (executemany) and all
its changed rows in one ``UPDATE`` by primary key. ``Rows`` collects them in
the order the tables depend on each other and writes them when the
checkpoint commits. Ids are made by the caller (``runtime.ids``), so nothing
needs a round trip to learn one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from engine.store.models import (
    Base,
    Brief,
    CustomerMessage,
    Impact,
    IncidentAction,
    IncidentEvent,
    Job,
    Recommendation,
    RuleMatch,
    Snapshot,
)
from engine.store.types import as_utc, table_of

ORDER: tuple[type[Base], ...] = (
    Snapshot,
    IncidentAction,
    RuleMatch,
    Brief,
    Impact,
    CustomerMessage,
    Recommendation,
    Job,
    IncidentEvent,
)


class Rows:
    """New and changed rows of one transaction, written together."""

    def __init__(self) -> None:
        self._new: dict[type[Base], list[dict[str, Any]]] = defaultdict(list)
        self._changed: dict[type[Base], dict[str, dict[str, Any]]] = defaultdict(dict)

    def add(self, model: type[Base], **values: Any) -> dict[str, Any]:
        row = {k: _plain(v) for k, v in values.items()}
        self._new[model].append(row)
        return row

    def change(self, model: type[Base], row_id: str, **values: Any) -> None:
        changed = self._changed[model].setdefault(row_id, {"id": row_id})
        changed.update({k: _plain(v) for k, v in values.items()})

    def drop_incident(
        self, incident_id: str, keep: tuple[type[Base], ...] = ()
    ) -> None:
        """Forget what this transaction would write for one incident."""
        for model, rows in self._new.items():
            if model not in keep:
                rows[:] = [r for r in rows if r.get("incident_id") != incident_id]
        for model, changed in self._changed.items():
            if model not in keep:
                changed.pop(incident_id, None)

    def write(self, session: Session) -> None:
        for model in (*ORDER, *(m for m in self._new if m not in ORDER)):
            rows = self._new.pop(model, [])
            if rows:
                # Core, not ORM: no unit of work for rows nobody loads here.
                session.execute(insert(table_of(model)), rows)
        for model, changed in self._changed.items():
            for group in _by_columns(changed).values():
                session.execute(update(model), group)
        self._changed.clear()


def _by_columns(
    changed: Mapping[str, dict[str, Any]],
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    # One executemany needs the same columns in every row.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in changed.values():
        groups[tuple(sorted(row))].append(row)
    return groups


def _plain(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime) else value
