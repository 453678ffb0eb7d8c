from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.errors import InputError
from engine.sources import alertmanager
from tests.support.fixtures import load_json, load_jsonl


def test_firing_alert_keeps_labels_and_reads_times_as_utc() -> None:
    batch = alertmanager.parse(load_json("alertmanager/am025_firing_high_memory.json"))

    (alert,) = batch.alerts
    assert alert.status == "firing"
    assert alert.name == "HighMemoryUsage"
    assert alert.fingerprint == "968fa111720fac49"
    assert alert.severity == "critical"
    assert alert.labels["instance"] == "app-01.example.test:9100"
    assert alert.starts_at == datetime(2026, 12, 4, 15, 6, 53, 155735, tzinfo=UTC)
    assert alert.ends_at is None  # Go's zero time means "not set"


def test_offset_start_time_is_normalised_to_utc() -> None:
    body = load_json("alertmanager/am025_firing_startsAt_tz_offset_0530.json")

    (alert,) = alertmanager.parse(body).alerts

    assert alert.starts_at == datetime(2026, 12, 4, 15, 9, 53, 155831, tzinfo=UTC)
    assert alert.starts_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_mixed_offsets_in_one_alert_are_both_utc() -> None:
    body = load_json("alertmanager/am025_resolved_mixed_tz_startsAt_0530_endsAt_Z.json")

    (alert,) = alertmanager.parse(body).alerts

    assert alert.status == "resolved"
    assert alert.starts_at is not None and alert.ends_at is not None
    assert alert.starts_at.tzinfo == UTC and alert.ends_at.tzinfo == UTC
    assert alert.ends_at > alert.starts_at


def test_envelope_status_is_not_the_status_of_each_alert() -> None:
    name = (
        "alertmanager/am025_grouped_truncated_status_resolved_but_6_still_firing.json"
    )
    batch = alertmanager.parse(load_json(name))

    assert batch.envelope_status == "resolved"
    assert batch.truncated == 7
    assert len(batch.alerts) == 5  # only the listed alerts are ever touched
    assert {a.fingerprint for a in batch.alerts} == {
        "f1d70dc8e0ea509b",
        "f1d30dc8e0e667c4",
        "f1d10dc8e0e5e4ed",
        "f1e90dc8e0fa76ce",
        "f1e50dc8e0f68df7",
    }


def test_unicode_and_long_labels_survive_byte_for_byte() -> None:
    body = load_json("alertmanager/am025_firing_unicode_labels_long_label.json")

    (alert,) = alertmanager.parse(body).alerts

    for key, value in body["alerts"][0]["labels"].items():
        assert alert.labels[key] == value
    assert len(alert.labels["long_label"]) >= 2000


def test_every_notification_of_a_real_run_parses() -> None:
    records = load_jsonl("alertmanager/am025_sequence_all_13_notifications.jsonl")
    assert len(records) == 13
    for record in records:
        batch = alertmanager.parse(record["body"])
        assert batch.alerts
        assert all(a.status in ("firing", "resolved") for a in batch.alerts)


def test_older_body_without_truncated_field_parses() -> None:
    body = load_json(
        "alertmanager/wild_zulip_fixture_2020_no_truncatedAlerts_field.json"
    )

    batch = alertmanager.parse(body)

    assert batch.truncated == 0
    assert batch.alerts[0].name == "High CPU Temperature"


def test_unsupported_version_is_refused_with_the_field() -> None:
    body = load_json("alertmanager/am025_firing_high_memory.json") | {"version": "3"}

    with pytest.raises(InputError) as raised:
        alertmanager.parse(body)

    assert raised.value.code == "E510"
    assert raised.value.message.startswith("version: Alertmanager webhook format '3'")


def test_oversized_label_is_refused_naming_the_limit() -> None:
    body = load_json("alertmanager/am025_firing_high_memory.json")
    body["alerts"][0]["labels"]["huge"] = "x" * 5000

    with pytest.raises(InputError) as raised:
        alertmanager.parse(body)

    assert raised.value.message == (
        "alerts[0].labels.huge is 5000 characters long; the limit is 4096: "
        "move it to an annotation"
    )
