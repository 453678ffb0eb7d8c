from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.errors import InputError
from engine.sources import grafana
from tests.support.fixtures import load_json


def test_contact_point_test_message_is_recognised_and_yields_no_alert() -> None:
    batch = grafana.parse(load_json("grafana/grafana_test_notification_quirk.json"))

    assert batch.is_test
    assert batch.alerts == ()


def test_legacy_test_notification_is_recognised() -> None:
    batch = grafana.parse(load_json("grafana/grafana_legacy_alerting_v7_test.json"))

    assert batch.is_test
    assert batch.alerts == ()


def test_unified_firing_alert_carries_its_value() -> None:
    batch = grafana.parse(load_json("grafana/grafana_v11_firing_values.json"))

    (alert,) = batch.alerts
    assert not batch.is_test
    assert alert.name == "Memory (copy)"
    assert alert.value == 2473545728.0
    assert alert.starts_at == datetime(2024, 3, 1, 2, 9, tzinfo=UTC)


def test_documentation_example_offsets_become_utc() -> None:
    batch = grafana.parse(
        load_json("grafana/grafana_docs_example_two_firing_tz_offset.json")
    )

    first = batch.alerts[0]
    assert first.starts_at == datetime(2021, 10, 12, 7, 51, 3, 157076, tzinfo=UTC)
    assert len(batch.alerts) == 2


def test_mixed_group_keeps_each_alerts_own_status() -> None:
    body = load_json("grafana/grafana_v9_mixed_firing_and_resolved.json")

    batch = grafana.parse(body)

    assert batch.envelope_status == "firing"
    assert [a.status for a in batch.alerts] == [a["status"] for a in body["alerts"]]
    assert "resolved" in {a.status for a in batch.alerts}


def test_an_unknown_legacy_state_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InputError) as raised:
        grafana.parse({"ruleName": "r", "state": "bogus"})

    assert raised.value.code == "E513"
    assert raised.value.message == (
        "state: 'bogus' is not a Grafana alert state; expected one of alerting, "
        "ok, no_data, paused, pending"
    )


def test_a_paused_legacy_alert_needs_nothing_done() -> None:
    assert grafana.parse({"ruleName": "r", "state": "paused"}).alerts == ()


def test_a_unified_notification_without_alerts_is_refused() -> None:
    with pytest.raises(InputError) as raised:
        grafana.parse({"alerts": [], "status": "firing"})

    assert raised.value.code == "E521"
