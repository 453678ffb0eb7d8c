from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.sources.generic import GenericAlertIn, to_alert


def test_generic_alert_gets_a_stable_fingerprint_from_its_labels() -> None:
    one = to_alert(
        GenericAlertIn(kind="threshold_exceeded", labels={"a": "1", "b": "2"})
    )
    two = to_alert(
        GenericAlertIn(kind="threshold_exceeded", labels={"b": "2", "a": "1"})
    )

    assert one.fingerprint == two.fingerprint
    assert one.facts()["kind"] == "threshold_exceeded"


def test_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InputError) as raised:
        to_alert(GenericAlertIn(kind="meteor_strike"))

    assert raised.value.code == "E530"
    assert (
        "kind: 'meteor_strike' is not a kind the intake rules know"
        in raised.value.message
    )


def test_posted_snapshot_facts_are_checked_against_the_vocabulary() -> None:
    body = GenericAlertIn(kind="manual", snapshot={"memory": {"percent": "high"}})

    with pytest.raises(InputError) as raised:
        to_alert(body)

    assert raised.value.code == "E531"
    assert raised.value.message.startswith(
        "snapshot.memory.percent: 'high' is not of type"
    )


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ({f"k{i}": i for i in range(15_000)}, "snapshot.extra: has more than 64 keys"),
        (
            {"note": "x" * 900_000},
            "snapshot.extra.note: is longer than 4096 characters",
        ),
    ],
    ids=["many-keys", "long-value"],
)
def test_an_oversized_posted_fact_is_named_with_its_limit_not_echoed(
    extra: dict[str, object], said: str
) -> None:
    body = GenericAlertIn(kind="manual", snapshot={"extra": extra})

    with pytest.raises(InputError) as raised:
        to_alert(body)

    assert raised.value.code == "E531"
    assert raised.value.message.startswith(said)
    assert len(raised.value.message) < 400
    assert {p.code for p in raised.value.problems} == {"E531"}
