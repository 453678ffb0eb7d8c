"""JSON Schemas of the rule files, built from the operator registry.

Each file in a rules directory has its own top-level shape (``rules:`` lists,
the catalog's ``actions:`` map, ``thresholds:``...) and each stage its own
``then``. The condition grammar is generated from ``operators.OPERATORS`` so a
new operator is valid in the schema the moment it is registered. ``schemas()``
returns one JSON Schema per file name; ``rules check`` validates with
jsonschema before anything is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from engine.policy.operators import GROUPS, OPERATORS, Operand

INCIDENT_TYPES = (
    "memory_exhaustion",
    "disk_pressure",
    "upload_spike",
    "bad_deploy",
    "dependency_outage",
    "network_issue",
)
SEVERITIES = ("info", "warning", "critical")
IMPACT_LEVELS = ("none", "minor", "major", "critical")
RISKS = ("low", "medium", "high")
DECISIONS = ("stable", "customer_impact", "auto_execute", "root_cause_identified")
MODES = ("auto", "dry_run", "off")
TONES = ("informational", "apologetic", "reassuring", "urgent")
CHANNELS = ("status_page", "email", "in_app", "social")

RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
FACT_PATH = r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_-]+)*$"
PATH_KEY = r"^(?!(all|any|none)$)" + FACT_PATH[1:]
REFERENCE = r"^\$[a-z_][a-z0-9_]*(\.[a-z0-9_]+)+$"

Schema = dict[str, Any]


def _scalar() -> Schema:
    return {"type": ["string", "number", "boolean"]}


def _number() -> Schema:
    return {"oneOf": [{"type": "number"}, {"type": "string", "pattern": REFERENCE}]}


def _operand(kind: Operand) -> Schema:
    shapes: Mapping[Operand, Schema] = {
        Operand.SCALAR: _scalar(),
        Operand.NUMBER: _number(),
        Operand.SCALARS: {"type": "array", "minItems": 1, "items": _scalar()},
        Operand.REGEX: {"type": "string", "minLength": 1, "maxLength": 512},
        Operand.FLAG: {"type": "boolean"},
        Operand.CONDITION: {"$ref": "#/$defs/condition"},
    }
    return shapes[kind]


def _tests() -> Schema:
    """The mapping of operators for one fact path."""
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {name: _operand(op.operand) for name, op in OPERATORS.items()},
    }


def _condition() -> Schema:
    group = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}}
    return {
        "type": "object",
        "properties": {name: group for name in GROUPS},
        "patternProperties": {PATH_KEY: {"oneOf": [_tests(), _scalar()]}},
        "additionalProperties": False,
    }


def _template(max_length: int = 4000) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


def _selector(extra: Mapping[str, Schema], required: tuple[str, ...]) -> Schema:
    """An item of a ``then`` list that may fan out over a list of facts."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": {
            **extra,
            "for_each": {"type": "string", "pattern": FACT_PATH},
            "where": {"$ref": "#/$defs/condition"},
        },
        "dependentRequired": {"where": ["for_each"]},
    }


def _then_schemas() -> Mapping[str, Schema]:
    strings = {"type": "array", "items": _template(), "maxItems": 20}
    action = _selector(
        {"action": {"type": "string"}, "target": _template(256)},
        ("action", "target"),
    )
    recommendation = _selector(
        {
            "id": {"type": "string", "pattern": RULE_ID},
            "text": _template(),
            "rationale": _template(),
            "risk": {"enum": list(RISKS)},
            "action": {"type": "string"},
            "target": _template(256),
        },
        ("id", "text", "risk"),
    )
    proposal = {
        "type": "object",
        "additionalProperties": False,
        "required": ["threshold", "value", "reason"],
        "properties": {
            "threshold": {"type": "string", "pattern": r"^[a-z_][a-z0-9_.]*$"},
            "value": {"oneOf": [{"type": "number"}, _template(500)]},
            "reason": _template(),
        },
    }
    return {
        "intake": _object(
            {
                "severity": {"enum": list(SEVERITIES)},
                "title": _template(500),
                "dedup_key": _template(500),
                "ignore": {"type": "boolean"},
            }
        ),
        "watch": _object(
            {
                "alert": _object(
                    {
                        "kind": {"type": "string"},
                        "name": _template(200),
                        "severity": {"enum": list(SEVERITIES)},
                        "summary": _template(),
                    },
                    required=("kind", "name"),
                )
            },
            required=("alert",),
        ),
        "classify": _object(
            {
                "type": {"enum": list(INCIDENT_TYPES)},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
            required=("type", "confidence"),
        ),
        "stabilize": _object(
            {"actions": {"type": "array", "minItems": 1, "items": action}},
            required=("actions",),
        ),
        "brief": _object(
            {
                "recommendation": _template(),
                "risk": _template(),
            }
        ),
        "impact": _object(
            {
                "level": {"enum": list(IMPACT_LEVELS)},
                "downtime_minutes": {"type": "number", "minimum": 0},
            },
            required=("level",),
        ),
        "messages": _object(
            {
                "template": {"type": "string"},
                "tone": {"enum": list(TONES)},
                "channels": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": list(CHANNELS)},
                },
                "approvals": {"type": "integer", "minimum": 1, "maximum": 2},
            },
            required=("template", "tone", "channels"),
        ),
        "recommend": _object(
            {
                "recommendations": {
                    "type": "array",
                    "minItems": 1,
                    "items": recommendation,
                }
            },
            required=("recommendations",),
        ),
        "decisions": _object(
            {"decision": {"enum": list(DECISIONS)}, "value": {"type": "boolean"}},
            required=("decision", "value"),
        ),
        "learning": _object(
            {
                "prevention": strings,
                "alert_improvements": strings,
                "automation": strings,
                "ux": strings,
                "proposals": {"type": "array", "items": proposal, "maxItems": 10},
            }
        ),
    }


def _object(properties: Mapping[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": dict(properties),
    }
    if required:
        schema["required"] = list(required)
    else:
        schema["minProperties"] = 1
    return schema


def _rule(then: Schema) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "then"],
        "properties": {
            "id": {"type": "string", "pattern": RULE_ID},
            "description": {"type": "string", "maxLength": 2000},
            "priority": {"type": "integer", "minimum": -100000, "maximum": 100000},
            "enabled": {"type": "boolean"},
            "when": {"$ref": "#/$defs/condition"},
            "then": then,
        },
    }


def _rules(stage: str) -> Schema:
    return {"type": "array", "items": _rule(_then_schemas()[stage])}


def _file(properties: Mapping[str, Schema], required: tuple[str, ...]) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": {"description": {"type": "string"}, **properties},
        "$defs": {"condition": _condition()},
    }


def _thresholds() -> Schema:
    leaf = {"type": ["number", "string", "boolean"]}
    group = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": r"^[a-z0-9_]+$"},
        "additionalProperties": {"oneOf": [leaf, {"$ref": "#/$defs/group"}]},
    }
    schema = _file(
        {
            "thresholds": {
                "type": "object",
                "propertyNames": {"pattern": r"^[a-z_][a-z0-9_]*$"},
                "additionalProperties": {"$ref": "#/$defs/group"},
            }
        },
        ("thresholds",),
    )
    schema["$defs"]["group"] = group
    return schema


def _catalog() -> Schema:
    entry = {
        "type": "object",
        "additionalProperties": False,
        "required": ["executor", "description"],
        "properties": {
            "executor": {"type": "string"},
            "description": {"type": "string"},
            "targets": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
            "cooldown_s": {"type": "number", "minimum": 0},
            "budget_per_hour": {"type": "integer", "minimum": 0, "maximum": 1000},
            "auto": {"type": "boolean"},
            "mode": {"enum": list(MODES)},
            "risk": {"enum": list(RISKS)},
            "precondition": {"$ref": "#/$defs/condition"},
            "verify": {"$ref": "#/$defs/condition"},
            "undo": {"type": "boolean"},
            "settings": {"type": "object"},
        },
    }
    return _file(
        {
            "mode": {"enum": list(MODES)},
            "auto_execute": {"type": "boolean"},
            "breaker": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "ineffective_runs": {"type": "integer", "minimum": 1},
                },
            },
            "actions": {"type": "object", "additionalProperties": entry},
        },
        ("actions",),
    )


def _features() -> Schema:
    feature = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "routes", "customer_facing"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*$"},
            "description": {"type": "string"},
            "customer_facing": {"type": "boolean"},
            "routes": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
    }
    return _file({"features": {"type": "array", "items": feature}}, ("features",))


def _messages() -> Schema:
    template = {
        "type": "object",
        "additionalProperties": False,
        "required": ["title", "body"],
        "properties": {"title": _template(200), "body": _template(4000)},
    }
    return _file(
        {
            "templates": {"type": "object", "additionalProperties": template},
            "rules": _rules("messages"),
        },
        ("templates", "rules"),
    )


def _intake() -> Schema:
    defaults = _object(
        {
            "severity": {"enum": list(SEVERITIES)},
            "title": _template(500),
            "dedup_key": _template(500),
        },
        required=("severity", "title", "dedup_key"),
    )
    return _file(
        {"defaults": defaults, "rules": _rules("intake"), "watch": _rules("watch")},
        ("defaults", "rules"),
    )


def _decisions() -> Schema:
    defaults = _object(
        {name: {"type": "boolean"} for name in DECISIONS}, required=DECISIONS
    )
    return _file(
        {"defaults": defaults, "rules": _rules("decisions")}, ("defaults", "rules")
    )


def _impact() -> Schema:
    downtime = {
        "type": "object",
        "propertyNames": {"enum": [*INCIDENT_TYPES, "unknown"]},
        "additionalProperties": {"type": "number", "minimum": 0},
    }
    return _file(
        {"downtime_minutes": downtime, "rules": _rules("impact")},
        ("downtime_minutes", "rules"),
    )


def _brief() -> Schema:
    return _file(
        {
            "summary": _template(),
            "defaults": _object({"recommendation": _template(), "risk": _template()}),
            "rules": _rules("brief"),
        },
        ("summary", "rules"),
    )


def _plain(stage: str) -> Schema:
    return _file({"rules": _rules(stage)}, ("rules",))


@cache
def schemas() -> Mapping[str, Schema]:
    """JSON Schema per rule file stem (``classify``, ``actions``...)."""
    return {
        "thresholds": _thresholds(),
        "features": _features(),
        "actions": _catalog(),
        "intake": _intake(),
        "classify": _plain("classify"),
        "stabilize": _plain("stabilize"),
        "brief": _brief(),
        "impact": _impact(),
        "messages": _messages(),
        "recommend": _plain("recommend"),
        "decisions": _decisions(),
        "learning": _plain("learning"),
    }


FILE_STEMS = tuple(schemas())
"""Every file a rules directory holds, as ``<stem>.yaml`` (or .yml / .json)."""
