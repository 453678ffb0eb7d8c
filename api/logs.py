"""Logs as one JSON object per line, with a dotted event name and fields.

Every module logs ``log.info("policy.reloaded", extra={"version": ...})``;
this formatter writes ``{"ts": ..., "level": "info", "event":
"policy.reloaded", "logger": ..., "version": ...}``. Fields whose names say
they hold a secret (key, token, password, authorization, secret) are
replaced by ``[redacted]``, and bearer tokens inside any text are masked, so
no API key reaches a log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "color_message"  # uvicorn's copy of the message with terminal colours
}
SECRET_NAMES = re.compile(r"(key|token|password|secret|authorization)", re.I)
BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
KEY_SHAPE = re.compile(r"\bipk_[A-Za-z0-9_-]{16,}")  # engine.store.orgs.KEY_PREFIX
REDACTED = "[redacted]"


def _clean(name: str, value: Any) -> Any:
    if SECRET_NAMES.search(name) and not name.endswith(("_id", "_prefix")):
        return REDACTED
    if isinstance(value, str):
        return KEY_SHAPE.sub(REDACTED, BEARER.sub(r"\1" + REDACTED, value))
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "event": _clean("event", record.getMessage()),
            "logger": record.name,
        }
        for name, value in vars(record).items():
            if name not in STANDARD and not name.startswith("_"):
                entry[name] = _clean(name, value)
        if record.exc_info:
            entry["exception"] = _clean(
                "exception", self.formatException(record.exc_info)
            )
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
