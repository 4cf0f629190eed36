"""Structured log events: ``run.started``, ``unit.retried``, ``unit.dead_lettered``,
``worker.lost``, ``alarm.fired`` … each with its run, step, item and attempt as fields.

Code logs an event with :func:`event`; :func:`configure` picks how events are written: one JSON
object per line (``--log-format json``) or readable ``key=value`` text (the default)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

#: The logger every Conveyor event goes through.
logger = logging.getLogger("conveyor")
_FIELDS = "conveyor_fields"
FORMATS = ("text", "json")


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` (None values are left out)."""
    if logger.isEnabledFor(level):
        kept = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, name, extra={_FIELDS: kept})


class JsonFormatter(logging.Formatter):
    """One JSON object per event: time, level, event and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        if record.exc_info:
            body["traceback"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level event key=value …`` on one line. A failed unit's traceback is left out
    (``conveyor dlq show`` has it); one of Conveyor's own errors follows on the next lines."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, _FIELDS, {}))
        fields.pop("traceback", None)
        parts = [_timestamp(record.created), record.levelname.lower(), record.getMessage()]
        parts += [f"{key}={_text(value)}" for key, value in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(
    fmt: str = "text", level: str | int | None = None, stream: IO[str] | None = None
) -> None:
    """Write Conveyor's events to ``stream`` (stderr) in ``fmt`` ("text" or "json") from
    ``level`` up (default: warning for text, which the run summary complements, and info for
    JSON); calling it again replaces the previous set-up."""
    if level is None:
        level = "warning" if fmt == "text" else "info"
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level {level!r}: use debug, info, warning or error")
    for old in [h for h in logger.handlers if h.get_name() == "conveyor"]:
        logger.removeHandler(old)
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.set_name("conveyor")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(numeric)
    logger.propagate = False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so progress bars that redirect it
    show events above themselves."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass  # always the current sys.stderr


def _timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


def _text(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text
