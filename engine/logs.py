"""Structured logs: one JSON object per line, one event name per line, secrets redacted.

``configure_logging(level, path, secrets)`` installs, on the root logger (so aiohttp, websockets, pybit...
are covered too), a handler writing JSON lines to stderr and, when ``path`` is given, one appending to
that file (created 0600, its directory created if missing). Calling it again replaces the handlers it
installed before; :meth:`LogSetup.close` removes them.

Each line::

    {"ts": "2024-06-01T12:00:00.123Z", "level": "info", "event": "order_sent", "logger": "engine.oms",
     "msg": "order_sent cid=e-1 qty=0.010", ...extra fields..., "exc": "Traceback ..."}

The convention: **the event name is the first token of the log call's format string**, a lower-case
identifier (``[a-z][a-z0-9_.:-]*``); the rest of the message carries human detail, and machine fields go
in ``extra``::

    log.info("order_sent cid=%s qty=%s", cid, qty, extra={"cid": cid, "qty": str(qty)})

Lines from other libraries whose message does not start that way get ``"event": "log"``. Extra fields
that collide with the reserved keys (ts, level, event, logger, msg, exc) are written as ``x_<name>``.
Values that are not JSON types are written as ``str(value)`` (Decimal keeps its exact digits).

Redaction: every configured secret value (API keys and secrets; values shorter than
:data:`MIN_SECRET_LEN` are ignored, they would mangle ordinary text) is replaced with ``***`` wherever it
appears: in the message, its arguments, extra fields, nested values and exception text, raw or
JSON-escaped. :class:`RedactingFilter` does the same on a plain ``logging`` handler.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Final, TextIO

__all__ = [
    "MIN_SECRET_LEN",
    "JsonFormatter",
    "LogSetup",
    "RedactingFilter",
    "Redactor",
    "configure_logging",
    "event_name",
]

MIN_SECRET_LEN: Final = 4
REDACTED: Final = "***"
_EVENT = re.compile(r"[a-z][a-z0-9_.:-]*\Z")
_RESERVED: Final = frozenset({"ts", "level", "event", "logger", "msg", "exc"})
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)
_MARK: Final = "_engine_logs_handler"


class Redactor:
    """Replaces configured secret values (raw and JSON-escaped) with ``***``."""

    def __init__(self, secrets: Iterable[object]) -> None:
        values: set[str] = set()
        for s in secrets:
            text = _reveal(s)
            if text is not None and len(text) >= MIN_SECRET_LEN:
                values.add(text)
                values.add(json.dumps(text)[1:-1])
        self.secrets = tuple(sorted(values, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, value: str) -> str:
        for s in self.secrets:
            if s in value:
                value = value.replace(s, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """A JSON-ready copy of ``value`` with every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(v) for v in value]
        if isinstance(value, Enum):
            return self.value(value.value)
        if isinstance(value, Decimal):
            return str(value)
        if type(value).__name__ == "Secret":
            return REDACTED
        return self.text(str(value))


def _reveal(secret: object) -> str | None:
    if secret is None:
        return None
    if isinstance(secret, str):
        return secret
    reveal = getattr(secret, "reveal", None)  # engine.config.Secret
    if callable(reveal):
        value = reveal()
        return value if isinstance(value, str) else None
    return str(secret)


def event_name(record: logging.LogRecord) -> str:
    """The record's event name: the first token of its format string (or ``log``)."""
    msg = record.msg if isinstance(record.msg, str) else ""
    token = msg.split(None, 1)[0] if msg.strip() else ""
    return token if _EVENT.match(token) else "log"


class JsonFormatter(logging.Formatter):
    """Formats a record as one redacted JSON line (see the module docstring)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        r = self.redactor
        ts = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        try:
            message = record.getMessage()
        except (TypeError, ValueError) as exc:  # bad format args: keep the line, say so
            message = f"{record.msg!s} (log format error: {exc}; args {record.args!r})"
        doc: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "event": event_name(record),
            "logger": record.name,
            "msg": r.text(message),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            doc[f"x_{key}" if key in _RESERVED else key] = r.value(value)
        if record.exc_info:
            doc["exc"] = r.text(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exc"] = r.text(record.exc_text)
        if record.stack_info:
            doc["stack"] = r.text(record.stack_info)
        line = json.dumps(doc, ensure_ascii=False, default=str)
        return r.text(line)  # a last pass over the whole line, whatever path a secret took


class RedactingFilter(logging.Filter):
    """For plain (non-JSON) handlers: renders the message, extras and exception text redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        if not r:
            return True
        record.msg = r.text(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                record.__dict__[key] = r.value(value)
        if record.exc_info:
            record.exc_text = r.text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = r.text(record.exc_text)
        return True


class LogSetup:
    """The handlers :func:`configure_logging` installed; ``close()`` removes and closes them."""

    def __init__(self, handlers: list[logging.Handler], redactor: Redactor) -> None:
        self.handlers = handlers
        self.redactor = redactor

    def close(self) -> None:
        root = logging.getLogger()
        for h in self.handlers:
            root.removeHandler(h)
            h.close()
        self.handlers = []


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error)")
    return value


def configure_logging(
    level: str | int,
    path: str | Path | None,
    secrets: Iterable[object],
    *,
    stderr: bool = True,
    stream: TextIO | None = None,
) -> LogSetup:
    """JSON-lines logging on the root logger (stderr and/or ``path``), redacting ``secrets`` (strings
    or :class:`~engine.config.Secret`). Replaces handlers installed by an earlier call."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _MARK, False):
            root.removeHandler(h)
            h.close()
    redactor = Redactor(secrets)
    formatter = JsonFormatter(redactor)
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr if stream is None else stream))
    if path is not None:
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handlers.append(logging.FileHandler(file, mode="a", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(formatter)
        setattr(h, _MARK, True)
        root.addHandler(h)
    root.setLevel(_level(level))
    return LogSetup(handlers, redactor)
