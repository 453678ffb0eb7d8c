"""The adapter to durable_rules' C core; no other module imports it.

``EngineRuleset`` drives the extension ``durable_rules_engine`` directly, as
a stateless evaluator: the ruleset is created once from its JSON form; each
evaluation asserts one fact, drains every queued action (one per firing
rule) with ``start_action_for_state`` / ``complete_and_start_action``, and
retracts the same fact, so nothing stays behind. The fact always carries
the same ``id`` and the one fixed session id, so identity hashes never
collide and only one session state ever exists. The C core has no locking
and never releases the GIL: one lock per ruleset serialises the calls of an
evaluation, which costs nothing and makes concurrent evaluations give the
results of serial ones. States and rulesets are never deleted (deleting a
state that never ran an action can free an uninitialised pointer; a deleted
ruleset's memory is not returned anyway). The host API ``durable.lang`` is
not used: each host leaves threads running and mixes up concurrent results.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Mapping

import durable_rules_engine as _engine

from engine.errors import EngineLimitError

SESSION_ID = "1"
FACT_ID = "1"
FACT_HEAD = '{"id":"' + FACT_ID + '","sid":"' + SESSION_ID + '"'
MAX_DISCARDED_ACTIONS = 100_000  # a bound on cleaning up after a failure

ERROR_MEANINGS: Mapping[int, str] = {
    106: "more than 4096 rules, or too many conditions under one condition",
    107: "too many alternatives end in one shared condition",
    108: "more than 256 rules share one identical condition",
    113: "a rule has more than 15 nested groups",
    201: "the JSON could not be parsed",
    204: "the JSON could not be parsed",
    302: "a fact has more than 252 properties",
    303: "more than 64 conditions held at once for one fact",
}

SPURIOUS = 102  # ERR_UNEXPECTED_TYPE, also raised on uninitialised memory
SPURIOUS_RETRIES = 20

log = logging.getLogger(__name__)

_names = itertools.count(1)
_names_lock = threading.Lock()


class EngineCallError(EngineLimitError):
    """durable_rules refused a call; the evaluation is void, not partial."""

    default_code = "E390"


def _error_code(error: Exception) -> int:
    found = re.search(r"error code: (\d+)", str(error))
    return int(found.group(1)) if found else 0


def _explain(error: Exception) -> str:
    code = _error_code(error)
    meaning = ERROR_MEANINGS.get(code, "see durable_rules' rules.h")
    return f"durable_rules error {code} ({meaning})"


def _unique_name(label: str) -> str:
    with _names_lock:
        return f"ip{next(_names)}.{label}"


def _rule_name(messages: str) -> str:
    # An action's messages are {"<rule name>": {...}}; the compiler's rule
    # names hold no quote, so the name ends at the next quote.
    return messages[2 : messages.index('"', 2)]


def _create(definition: str, label: str) -> tuple[str, int]:
    """Create a ruleset; retry the engine's spurious refusal of item tests.

    When a condition on list items (``$iall``/``$iany``) holds an ``$and``,
    the C core checks a field of a node it never initialised, and refuses a
    valid ruleset with error 102 depending on what that memory held (about
    one creation in sixty in our measurements). The check only decides
    whether to refuse; a ruleset it lets through is built normally. So a
    102 is retried with a new name before it counts as a refusal.
    """
    last: Exception | None = None
    for _ in range(SPURIOUS_RETRIES):
        name = _unique_name(label)
        try:
            return name, int(_engine.create_ruleset(name, definition))
        except _engine.error as exc:
            last = exc
            if _error_code(exc) != SPURIOUS:
                break
            log.info("engine.ruleset_retried", extra={"ruleset": label})
    assert last is not None
    raise EngineLimitError(
        f"durable_rules refused ruleset {label}: {_explain(last)}; this is "
        "a limit the compiler should have kept: report it with the policy",
        code="E310",
    ) from last


class EngineRuleset:
    """One durable_rules ruleset, evaluated one fact at a time."""

    def __init__(self, definition: str, label: str) -> None:
        """Create the ruleset from its JSON text; ``label`` names it in logs."""
        self.definition = definition
        self._lock = threading.Lock()
        self.name, self._handle = _create(definition, label)

    def matches(self, body: str) -> list[str]:
        """Names of the rules that fire for one fact, once per firing.

        ``body`` is the fact's members as JSON text without braces; the
        fact's id and session id are added here.
        """
        fact = FACT_HEAD + ("," + body if body else "") + "}"
        with self._lock:
            try:
                return self._evaluate(fact)
            except _engine.error as exc:
                self._recover(fact)
                raise EngineCallError(
                    f"durable_rules failed to evaluate ruleset {self.name}: "
                    f"{_explain(exc)}; the evaluation was refused rather than "
                    "returned incomplete: report it with the policy and facts",
                ) from exc

    def _evaluate(self, fact: str) -> list[str]:
        status, state = _engine.assert_fact(self._handle, fact)
        try:
            return self._drain(state) if status == 0 else []
        finally:
            _engine.retract_fact(self._handle, fact)

    def _drain(self, state: int) -> list[str]:
        fired: list[str] = []
        started = _engine.start_action_for_state(self._handle, state)
        messages = started[1] if started else None
        while messages:
            fired.append(_rule_name(messages))
            messages = _engine.complete_and_start_action(self._handle, state)
        return fired

    def _recover(self, fact: str) -> None:
        """After a failed call: take the fact back and drop queued actions."""
        with contextlib.suppress(_engine.error):  # it may never have been stored
            _engine.retract_fact(self._handle, fact)
        for _ in range(MAX_DISCARDED_ACTIONS):
            started = self._start_any()
            if started is None:
                return
            self._complete_all(started[2])

    def _start_any(self) -> tuple[str, str, int] | None:
        try:
            started: tuple[str, str, int] | None = _engine.start_action(self._handle)
        except _engine.error:
            return None
        return started

    def _complete_all(self, state: int) -> None:
        for _ in range(MAX_DISCARDED_ACTIONS):
            try:
                if not _engine.complete_and_start_action(self._handle, state):
                    return
            except _engine.error:
                return

    def pending(self) -> int:
        """Facts the session still holds (zero between evaluations)."""
        with self._lock:
            try:
                facts: str = _engine.get_facts(self._handle, SESSION_ID)
            except _engine.error:
                return 0  # no evaluation has created the session yet
        return facts.count('"id"')
