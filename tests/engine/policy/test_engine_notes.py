"""One test per item of shared/ENGINE_NOTES.md: our treatment works.

Each test writes rules as an SRE would, compiles them for durable_rules and
for the Python evaluator, and checks that the rule means what its YAML says
(both backends agree, through ``Pair.matched``), that nothing crashes or
hangs, that no match is lost, or that the policy is refused with a message
saying what to change.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import EngineLimitError, PolicyError
from engine.policy.compiler import DurableBackend, compile_policy
from engine.policy.durable import EngineCallError, EngineRuleset
from engine.policy.loader import load
from tests.engine.policy.conftest import Pair, classify_rule, pair_from, write_rules

ENGINE = Path(__file__).parents[3] / "engine"
API = Path(__file__).parents[3] / "api"

Make = Callable[..., Pair]


def backend(pair: Pair) -> DurableBackend:
    assert isinstance(pair.durable.backend, DurableBackend)
    return pair.durable.backend


# Using it as a stateless evaluator


def test_evaluation_leaves_no_fact_in_any_ruleset(shipped: Pair) -> None:
    facts = {"snapshot": {"memory": {"percent": 97}}, "alert": {"name": "OOM"}}
    for stage in shipped.durable.source.rules:
        shipped.matched(facts, stage)
    assert [r.pending() for r in backend(shipped).rulesets()] == [0] * len(
        backend(shipped).rulesets()
    )


def test_every_matching_rule_is_returned_not_only_the_first(classify: Make) -> None:
    pair = classify(
        ("high", {"snapshot.memory.percent": {"gte": 90}}),
        ("higher", {"snapshot.memory.percent": {"gte": 95}}),
        ("any-memory", {"snapshot.memory.percent": {"exists": True}}),
    )
    facts = {"snapshot": {"memory": {"percent": 97}}}
    assert pair.matched(facts) == {"high", "higher", "any-memory"}


def test_the_same_facts_twice_give_the_same_matches(classify: Make) -> None:
    pair = classify(("high", {"snapshot.memory.percent": {"gte": 90}}))
    facts = {"snapshot": {"memory": {"percent": 97}}}
    assert pair.matched(facts) == pair.matched(facts) == {"high"}


def test_fifty_thousand_distinct_facts_are_all_evaluated(classify: Make) -> None:
    pair = classify(
        ("lower-half", {"snapshot.http.requests": {"lt": 25_000}}),
        ("even", {"snapshot.http.requests": {"in": [0, 2, 4, 49_998]}}),
    )
    durable = pair.durable
    counts = {"lower-half": 0, "even": 0}
    for requests in range(50_000):
        facts = {"snapshot": {"http": {"requests": requests}}}
        for rule_id in durable.evaluate("classify", facts).rule_ids:
            counts[rule_id] += 1
    assert counts == {"lower-half": 25_000, "even": 4}


def test_the_adapter_never_deletes_a_state_or_a_ruleset() -> None:
    tree = ast.parse((ENGINE / "policy" / "durable.py").read_text())
    called = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if node.value.id == "_engine"
    }
    assert "assert_fact" in called and "retract_fact" in called
    assert not called & {"delete_state", "delete_ruleset", "assert_event"}


def test_one_session_whatever_sid_and_id_the_facts_carry(classify: Make) -> None:
    pair = classify(
        ("sid-seven", {"sid": {"eq": "7"}}),
        ("has-id", {"id": {"exists": True}}),
    )
    for number in range(2_000):
        facts = {"sid": str(number), "id": number}
        expected = {"has-id"} | ({"sid-seven"} if number == 7 else set())
        assert set(pair.durable.evaluate("classify", facts).rule_ids) == expected
    assert pair.matched({"sid": "7"}) == {"sid-seven"}


def test_a_version_is_compiled_once_and_reused(tmp_path: Path) -> None:
    directory = write_rules(tmp_path, [classify_rule("a", {"alert.kind": "manual"})])
    first = compile_policy(load(directory))
    again = compile_policy(load(directory))
    assert again.backend is first.backend
    assert again.version == first.version


def test_only_the_adapter_imports_durable_rules() -> None:
    importers = []
    for path in [*ENGINE.rglob("*.py"), *API.rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(
                name.split(".")[0] in {"durable", "durable_rules_engine"}
                for name in names
            ):
                importers.append(path.relative_to(ENGINE.parent).as_posix())
    assert importers == ["engine/policy/durable.py"]


# Limits of the C core


def test_more_than_64_rules_matching_one_fact_all_come_back(classify: Make) -> None:
    rules = [(f"over-{n}", {"snapshot.memory.percent": {"gte": n}}) for n in range(150)]
    pair = classify(*rules)
    assert pair.matched({"snapshot": {"memory": {"percent": 99.5}}}) == {
        f"over-{n}" for n in range(100)
    }
    assert backend(pair).describe()["classify"].rulesets >= 3
    assert all(info.stack <= 60 for info in backend(pair).describe().values())


def test_engine_error_303_voids_the_evaluation_and_leaves_nothing() -> None:
    rules = {f"r{n}": {"all": [{"m": {"$gte": {"a": float(n)}}}]} for n in range(70)}
    ruleset = EngineRuleset(json.dumps(rules), "tests.stack")
    with pytest.raises(EngineCallError) as refused:
        ruleset.matches('"a":100.0')
    assert refused.value.code == "E390"
    assert "durable_rules error 303" in str(refused.value)
    assert "refused rather than returned incomplete" in str(refused.value)
    assert ruleset.pending() == 0
    assert sorted(ruleset.matches('"a":2.0')) == ["r0", "r1", "r2"]


@pytest.mark.timeout(120)
def test_600_sibling_conditions_are_split_before_the_engine_spins(
    classify: Make,
) -> None:
    rules = [(f"kind-{n}", {"alert.kind": {"eq": f"kind-{n}"}}) for n in range(600)]
    pair = classify(*rules)
    assert pair.matched({"alert": {"kind": "kind-599"}}) == {"kind-599"}
    assert pair.matched({"alert": {"kind": "none"}}) == set()
    assert backend(pair).describe()["classify"].rulesets >= 3


def test_300_rules_with_one_identical_condition_all_match(classify: Make) -> None:
    rules = [(f"same-{n}", {"alert.kind": {"eq": "manual"}}) for n in range(300)]
    pair = classify(*rules)
    assert len(pair.matched({"alert": {"kind": "manual"}})) == 300


def test_facts_with_more_than_252_properties_are_evaluated(classify: Make) -> None:
    pair = classify(("wide", {"alert.labels.p0": {"eq": "x"}}))
    labels = {f"p{n}": "x" for n in range(400)}
    assert pair.matched({"alert": {"labels": labels}}) == {"wide"}


def test_a_stage_reading_300_values_is_split_by_fact_size(classify: Make) -> None:
    rules = [(f"label-{n}", {f"alert.labels.p{n}": {"eq": "x"}}) for n in range(300)]
    pair = classify(*rules)
    labels = {f"p{n}": "x" for n in range(0, 300, 7)}
    assert pair.matched({"alert": {"labels": labels}}) == {
        f"label-{n}" for n in range(0, 300, 7)
    }


def test_priorities_beyond_16_bits_order_the_matches(classify: Make) -> None:
    facts = {"alert": {"kind": "manual"}}
    pair = classify(
        classify_rule("minus-one", {"alert.kind": "manual"}, priority=-1),
        classify_rule("large", {"alert.kind": "manual"}, priority=70_000),
        classify_rule("wraps-to-large", {"alert.kind": "manual"}, priority=4_464),
    )
    ordered = pair.durable.evaluate("classify", facts).rule_ids
    assert ordered == ("large", "wraps-to-large", "minus-one")


# Semantics that surprise rule authors


def test_an_unknown_operator_is_refused_not_silently_false(classify: Make) -> None:
    with pytest.raises(PolicyError) as refused:
        classify(("typo", {"snapshot.memory.percent": {"gtee": 90}}))
    assert refused.value.problems[0].code == "E202"
    assert "unknown operator 'gtee'; did you mean 'gte'?" in refused.value.render()


def test_ne_not_in_and_none_hold_when_the_fact_is_missing(classify: Make) -> None:
    pair = classify(
        ("not-active", {"incident.status": {"ne": "active"}}),
        ("not-listed", {"incident.status": {"not_in": ["active", "open"]}}),
        ("none-high", {"none": [{"snapshot.memory.percent": {"gte": 90}}]}),
        ("below", {"snapshot.memory.percent": {"lt": 90}}),
    )
    for facts in ({}, {"incident": {"status": None}}, {"snapshot": {"memory": None}}):
        assert pair.matched(facts) == {"not-active", "not-listed", "none-high"}
    assert pair.matched({"incident": {"status": "active"}}) == {"none-high"}


def test_any_matches_once_however_many_branches_hold(classify: Make) -> None:
    pair = classify(
        (
            "any-disk",
            {
                "any": [
                    {"snapshot.disk.max_percent": {"gte": 90}},
                    {"snapshot.disk.max_percent": {"gte": 95}},
                    {"snapshot.disk.write_errors": {"gte": 1}},
                ]
            },
        )
    )
    facts = {"snapshot": {"disk": {"max_percent": 99, "write_errors": 3}}}
    assert pair.durable.evaluate("classify", facts).rule_ids == ("any-disk",)


def test_numbers_never_compare_with_numeric_strings(classify: Make) -> None:
    pair = classify(
        ("over-80", {"snapshot.memory.percent": {"gt": 80}}),
        ("is-five", {"snapshot.memory.percent": {"eq": 5}}),
        ("is-one", {"snapshot.memory.percent": {"eq": 1}}),
    )
    for text in ("90", "100", "5", "true"):
        assert pair.matched({"snapshot": {"memory": {"percent": text}}}) == set()
    assert pair.matched({"snapshot": {"memory": {"percent": True}}}) == set()
    assert pair.matched({"snapshot": {"memory": {"percent": 1.0}}}) == {"is-one"}
    assert pair.matched({"snapshot": {"memory": {"percent": 90}}}) == {"over-80"}


def test_patterns_are_re2_and_match_the_whole_string(classify: Make) -> None:
    pair = classify(
        ("digits", {"alert.name": {"matches": "\\d+"}}),
        ("anchored", {"alert.name": {"matches": "^api-.*$"}}),
        ("dotted", {"alert.name": {"matches": "a\\.b"}}),
        ("caseless", {"alert.name": {"matches": "(?i)disk.*"}}),
    )
    assert pair.matched({"alert": {"name": "123"}}) == {"digits"}
    assert pair.matched({"alert": {"name": "x123"}}) == set()
    assert pair.matched({"alert": {"name": "api-gateway"}}) == {"anchored"}
    assert pair.matched({"alert": {"name": "a.b"}}) == {"dotted"}
    assert pair.matched({"alert": {"name": "axb"}}) == set()
    assert pair.matched({"alert": {"name": "DiskFull\nagain"}}) == {"caseless"}


def test_a_pattern_re2_cannot_compile_is_refused_with_e205(tmp_path: Path) -> None:
    (tmp_path / "classify.yaml").write_text(
        "rules:\n"
        "  - id: backref\n"
        "    when:\n"
        '      alert.name: {matches: "(a)\\\\1"}\n'
        "    then: {type: memory_exhaustion, confidence: 0.5}\n"
    )
    with pytest.raises(PolicyError) as refused:
        load(tmp_path)
    problem = refused.value.problems[0]
    assert problem.code == "E205"
    assert (problem.location.file, problem.location.line) == ("classify.yaml", 4)
    assert problem.location.rule_id == "backref"
    assert "invalid escape sequence: \\1" in problem.message
    assert "write it in RE2 syntax" in problem.message


@pytest.mark.timeout(60)
def test_a_pathological_pattern_cannot_hang_an_evaluation(classify: Make) -> None:
    pair = classify(("nested", {"alert.summary": {"matches": "(a*)*b"}}))
    assert pair.matched({"alert": {"summary": "a" * 20_000}}) == set()


def test_non_ascii_strings_match_both_ways(classify: Make) -> None:
    pair = classify(
        ("memoire", {"alert.name": {"eq": "mémoire pleine"}}),
        ("not-memoire", {"alert.name": {"ne": "mémoire pleine"}}),
        ("listed", {"alert.name": {"in": ["ディスク", "x"]}}),
    )
    for ensure_ascii in (True, False):
        text = json.dumps(
            {"alert": {"name": "mémoire pleine"}}, ensure_ascii=ensure_ascii
        )
        assert pair.matched(json.loads(text)) == {"memoire"}
        text = json.dumps({"alert": {"name": "ディスク"}}, ensure_ascii=ensure_ascii)
        assert pair.matched(json.loads(text)) == {"not-memoire", "listed"}
    assert pair.matched({"alert": {"name": "memoire pleine"}}) == {"not-memoire"}
    assert pair.matched({"alert": {"name": 'a "quoted"\\ \ud800'}}) == {"not-memoire"}


def test_compiled_rulesets_hold_no_arithmetic_state_timer_or_priority(
    shipped: Pair,
) -> None:
    for ruleset in backend(shipped).rulesets():
        rules = json.loads(ruleset.definition)
        for rule in rules.values():
            assert list(rule) == ["all"]
            assert [list(pattern) for pattern in rule["all"]] == [["m"]]
        for word in ("$add", "$sub", "$mul", "$div", "$s", "pri", "timeout", "$mt"):
            assert f'"{word}"' not in ruleset.definition
    zeros = {"snapshot": {"memory": {"percent": 0, "growth_mb_per_min": 0}}}
    shipped.matched(zeros)


# Defects found beyond the notes


def test_alternatives_inside_item_conditions_hold_in_any_key_order(
    classify: Make,
) -> None:
    pair = classify(
        (
            "big-or-looping",
            {
                "snapshot.pm2.processes": {
                    "any_item": {
                        "any": [{"memory_mb": {"gte": 900}}, {"restart_loop": True}]
                    }
                }
            },
        )
    )
    for item in (
        {"name": "a", "memory_mb": 950, "restart_loop": False},
        {"restart_loop": False, "memory_mb": 950, "name": "a"},
        {"memory_mb": 10, "restart_loop": True},
        {"restart_loop": True, "memory_mb": 10},
    ):
        facts = {"snapshot": {"pm2": {"processes": [item]}}}
        assert pair.matched(facts) == {"big-or-looping"}


def test_operands_the_engine_cannot_compare_are_refused(tmp_path: Path) -> None:
    rules = [
        classify_rule("huge", {"snapshot.memory.percent": {"eq": float("inf")}}),
        classify_rule("long", {"alert.summary": {"eq": "x" * 5000}}),
    ]
    with pytest.raises(EngineLimitError) as refused:
        pair_from(write_rules(tmp_path, rules))
    codes = [(p.code, p.location.rule_id) for p in refused.value.problems]
    assert codes == [("E304", "huge"), ("E304", "long")]
    assert "is not a finite number the engine can compare" in refused.value.render()
    assert "longer than 4096 bytes" in refused.value.render()


def test_item_conditions_with_and_are_created_despite_the_spurious_102() -> None:
    # The C core reads an uninitialised node field when an $iall/$iany holds
    # an $and, and refuses about one creation in sixty with error 102.
    from engine.policy.durable import EngineRuleset

    definition = (
        '{"r":{"all":[{"m":{"$iall":{"i":{"$and":[{"$eq":{"$i.k":"o"}},'
        '{"$gte":{"$i.h":1.0}}]}}}}]}}'
    )

    created = [EngineRuleset(definition, f"item-and-{n}") for n in range(300)]

    assert len({ruleset.name for ruleset in created}) == 300
