"""Logging, configured once per process (web, worker, beat): one line per record.

`text` (the default) reads well in a terminal: time, level, logger, message, then the context.
`json` (MISSIVE_LOG_FORMAT=json) writes one object a line for a log shipper. The context is what
the code running knows about its work — the request id in the web process, the send id and task
in a worker — kept in a context variable so every logger, ours or a library's, carries it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "missive_log_context", default={}  # noqa: B039 (never mutated: bind() copies it)
)
_HANDLER_NAME = "missive"


def bind(**fields: Any) -> contextvars.Token[dict[str, Any]]:
    """Add fields to the log context of the running code; undo with `unbind(token)`."""
    return _context.set({**_context.get(), **fields})


def unbind(token: contextvars.Token[dict[str, Any]]) -> None:
    _context.reset(token)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Log lines inside the block carry `fields`."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> dict[str, Any]:
    """The fields bound now (a copy)."""
    return dict(_context.get())


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`2026-11-30T10:00:00.123+00:00 INFO missive.sending message [send_id=3]`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        fields = getattr(record, "context", None) or {}
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process, the context, exc."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process,
            **(getattr(record, "context", None) or {}),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _ContextFilter(logging.Filter):
    # On the handler, so records of every logger (uvicorn's, celery's) get the context too.
    def filter(self, record: logging.LogRecord) -> bool:
        record.context = _context.get()
        return True


def configure(process: str, log_format: str = "text", level: int = logging.INFO) -> None:
    """Send every log record of this process to stderr in `log_format`; safe to call again."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(process) if log_format == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings become records: one format, even for them
    # Libraries that say too much at INFO.
    for name in ("httpx", "urllib3", "amqp", "kombu"):
        logging.getLogger(name).setLevel(logging.WARNING)
