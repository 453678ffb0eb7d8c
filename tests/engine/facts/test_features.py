from __future__ import annotations

import pytest

from engine.errors import PolicyError
from engine.facts.features import FeatureMap

DOC = {
    "features": [
        {"name": "files", "customer_facing": True, "routes": ["~^/api/v[0-9]+/files"]},
        {"name": "uploads", "customer_facing": True, "routes": ["/upload"]},
        {"name": "api", "customer_facing": True, "routes": ["/api/"]},
        {"name": "admin", "routes": ["/admin"]},
    ]
}


def test_prefix_route_matches_paths_below_it() -> None:
    features = FeatureMap.from_document(DOC)
    found = features.feature_of("/upload/photos")
    assert found is not None and found.name == "uploads"


def test_regex_route_matches_from_the_start_of_the_path() -> None:
    features = FeatureMap.from_document(DOC)
    found = features.feature_of("/api/v2/files/7")
    assert found is not None and found.name == "files"
    assert features.feature_of("/x/api/v2/files") is None


def test_first_feature_in_file_order_wins() -> None:
    features = FeatureMap.from_document(DOC)
    found = features.feature_of("/api/v1/files")
    assert found is not None and found.name == "files"
    other = features.feature_of("/api/v1/orders")
    assert other is not None and other.name == "api"


def test_query_string_is_ignored() -> None:
    features = FeatureMap.from_document(DOC)
    assert features.feature_of("/admin?next=/upload") is not None
    found = features.feature_of("/other?x=/upload")
    assert found is None


def test_customer_facing_defaults_to_false() -> None:
    features = FeatureMap.from_document(DOC)
    admin = features.feature_of("/admin/users")
    assert admin is not None and admin.customer_facing is False


def test_bad_regular_expression_is_refused_with_code_and_place() -> None:
    doc = {"features": [{"name": "broken", "routes": ["~^/api/(v1"]}]}
    with pytest.raises(PolicyError) as raised:
        FeatureMap.from_document(doc, file="rules/features.yaml")
    assert raised.value.code == "E451"
    assert "not a valid regular expression" in raised.value.message
    assert "broken" in raised.value.message


def test_route_that_is_neither_prefix_nor_regex_is_refused() -> None:
    with pytest.raises(PolicyError) as raised:
        FeatureMap.from_document({"features": [{"name": "x", "routes": ["upload"]}]})
    assert raised.value.code == "E451"
    assert "must start with '/'" in raised.value.message


def test_feature_without_name_is_refused() -> None:
    with pytest.raises(PolicyError) as raised:
        FeatureMap.from_document({"features": [{"routes": ["/a"]}]})
    assert raised.value.location.field == "features.0"


def test_pattern_with_groups_of_its_own_keeps_file_order() -> None:
    doc = {
        "features": [
            {"name": "versioned", "routes": [r"~^/api/(v[0-9]+)/\1"]},
            {"name": "api", "routes": ["/api/"]},
        ]
    }
    features = FeatureMap.from_document(doc)
    first = features.feature_of("/api/v1/v1")
    second = features.feature_of("/api/v1/v2")
    assert first is not None and first.name == "versioned"
    assert second is not None and second.name == "api"
