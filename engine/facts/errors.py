"""The errors snapshot collectors raise, with their stable codes.

A collector raises ``CollectorError`` when it cannot observe its sections;
the observer turns it (or any other exception, or a timeout) into
``available: false`` with the message, so the snapshot goes on. A features
map or collector setting that cannot be used is a ``PolicyError`` or an
``InputError`` raised when the observer is built, before any snapshot.

Codes::

    E450  a collector could not observe its sections (tool failed, bad output)
    E451  the features map is malformed (bad route, bad regular expression)
    E452  a collector setting is unusable (unknown customer field, bad pattern)
"""

from __future__ import annotations

from engine.errors import FactsError

COLLECTOR_FAILED = "E450"
FEATURES_INVALID = "E451"
SETTING_INVALID = "E452"


class CollectorError(FactsError):
    """A collector could not observe what it reports; the reason is a fact."""

    default_code = COLLECTOR_FAILED
