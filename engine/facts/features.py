"""The features map: which product feature a request path belongs to.

``rules/features.yaml`` lists features with the routes that serve them. A
route is a path prefix (``/upload``) or, with a leading ``~``, a regular
expression searched from the start of the path (``~^/api/v[0-9]+/files``).
The access-log collector asks ``FeatureMap.feature_of(path)`` for every
request and counts requests and errors per feature; the first feature whose
route matches wins, in file order, so specific features go first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import Location, PolicyError
from engine.facts.errors import FEATURES_INVALID


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    customer_facing: bool
    routes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Route:
    feature: Feature
    prefix: str | None
    pattern: re.Pattern[str] | None

    def matches(self, path: str) -> bool:
        if self.pattern is not None:
            return self.pattern.match(path) is not None
        return self.prefix is not None and path.startswith(self.prefix)


class FeatureMap:
    """Routes compiled once; ``feature_of`` is called for every log line."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features: tuple[Feature, ...] = tuple(features)
        self._routes = tuple(
            _compile(feature, route, index)
            for index, feature in enumerate(self.features)
            for route in feature.routes
        )
        self._combined = _combine(self._routes)

    @classmethod
    def empty(cls) -> FeatureMap:
        return cls(())

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, file: str = "") -> FeatureMap:
        """Build from ``{"features": [{"name", "customer_facing", "routes"}]}``."""
        entries = doc.get("features", [])
        if not isinstance(entries, list):
            raise _invalid("'features' must be a list of features", file, "features")
        return cls([_feature(entry, i, file) for i, entry in enumerate(entries)])

    def feature_of(self, path: str) -> Feature | None:
        """The first feature with a route matching ``path`` (query ignored)."""
        bare = path.split("?", 1)[0]
        if self._combined is not None:
            found = self._combined.match(bare)
            if found is None or found.lastgroup is None:
                return None
            return self._routes[int(found.lastgroup[1:])].feature
        for route in self._routes:
            if route.matches(bare):
                return route.feature
        return None


def _feature(entry: object, index: int, file: str) -> Feature:
    where = f"features.{index}"
    if not isinstance(entry, Mapping):
        raise _invalid("each feature must be a mapping", file, where)
    name = entry.get("name")
    routes = entry.get("routes", [])
    if not isinstance(name, str) or not name:
        raise _invalid("a feature needs a non-empty 'name'", file, where)
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise _invalid(
            f"feature {name!r}: 'routes' must be a list of strings", file, where
        )
    facing = entry.get("customer_facing", False)
    if not isinstance(facing, bool):
        raise _invalid(
            f"feature {name!r}: 'customer_facing' must be true or false", file, where
        )
    return Feature(name, facing, tuple(routes))


def _compile(feature: Feature, route: str, index: int) -> _Route:
    if not route.startswith("~"):
        if not route.startswith("/"):
            raise _invalid(
                f"feature {feature.name!r}: route {route!r} must start with '/' "
                "(a path prefix) or '~' (a regular expression)",
                "",
                f"features.{index}.routes",
            )
        return _Route(feature, route, None)
    try:
        return _Route(feature, None, re.compile(route[1:]))
    except re.error as exc:
        raise _invalid(
            f"feature {feature.name!r}: route {route!r} is not a valid regular "
            f"expression ({exc}); fix the pattern after the '~'",
            "",
            f"features.{index}.routes",
        ) from exc


def _combine(routes: tuple[_Route, ...]) -> re.Pattern[str] | None:
    """All routes as one alternation, tried in order in one C-level match.

    Python takes the first alternative that matches, which keeps file order.
    Patterns that cannot be combined (global inline flags, groups of their
    own) leave None, and routes are then tried one by one.
    """
    # Groups of a user's pattern would be renumbered: keep those apart.
    if not routes or any(r.pattern is not None and r.pattern.groups for r in routes):
        return None
    parts = []
    for index, route in enumerate(routes):
        body = (
            re.escape(route.prefix or "")
            if route.pattern is None
            else (route.pattern.pattern)
        )
        parts.append(f"(?P<r{index}>(?:{body}))")
    try:
        return re.compile("|".join(parts))
    except re.error:
        return None


def _invalid(message: str, file: str, where: str) -> PolicyError:
    return PolicyError(
        message, code=FEATURES_INVALID, location=Location(file=file, field=where)
    )
