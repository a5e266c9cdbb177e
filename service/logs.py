"""Log lines: text (the default) or one JSON object per line, with the request's context.

The context (request id, key id, template, flow, step, outcome, duration) is kept in a context
variable: the HTTP layer starts a fresh one per request (`start`), code that learns something
adds it (`bind`), and every line logged on that thread meanwhile carries it. Lines logged
elsewhere (paho's loop threads, the master) carry none. Nothing secret is ever bound: key ids,
never keys; template names, never parameters.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[dict[str, Any] | None] = ContextVar("service_log_context", default=None)

# Fields a line may carry beyond timestamp, level, logger and message, in this order.
FIELDS = ("request_id", "key_id", "template", "flow", "step", "outcome", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def start(**fields: Any) -> None:
    """A fresh context for this thread's next unit of work (a request)."""
    _context.set({k: v for k, v in fields.items() if v is not None})


def bind(**fields: Any) -> None:
    """Add what is now known to the current context (ignored outside one)."""
    current = _context.get()
    if current is not None:
        _context.set({**current, **{k: v for k, v in fields.items() if v is not None}})


def clear() -> None:
    _context.set(None)


def current() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Puts the current context on each record (`record.context`) as it is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = current()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, then the
    context and any of FIELDS given as `extra=`; an exception as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "context", None) or {}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = context.get(name)
            if value is not None:
                line[name] = round(value, 1) if isinstance(value, float) else value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
