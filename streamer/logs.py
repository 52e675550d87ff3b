"""Structured logging for the worker: one line per event, text or JSON, tagged with the worker id.

Everything goes through the standard ``logging`` module, so Faust's, mode's and librdkafka's
messages (the latter routed through a logger) come out in the same format as ours. Our own
events carry fields::

    log_event(log, logging.INFO, "partitions paused", in_flight=1200, partitions=4)

text: ``2026-01-01T12:00:00.123Z INFO  worker=w1 streamer.worker: partitions paused
in_flight=1200 partitions=4`` (one line); json: ``{"ts": "...", "level": "INFO", "worker": "w1",
"logger": "streamer.worker", "event": "partitions paused", "in_flight": 1200, "partitions": 4}``
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

_FIELDS = "streamer_fields"
#: The loggers librdkafka's messages go to (``logger`` in the clients' configurations).
LIBRDKAFKA_LOGGERS = ("streamer.librdkafka.consumer", "streamer.librdkafka.producer")
_NUMBERS = re.compile(r"\d+")


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS: fields})


def _iso(created: float) -> str:
    ms = int((created - int(created)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def _text_value(v: Any) -> str:
    s = str(v)
    return repr(s) if (" " in s or not s) else s


class TextFormatter(logging.Formatter):
    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, None) or {}
        line = (
            f"{_iso(record.created)} {record.levelname:<5} worker={self.worker_id} "
            f"{record.name}: {record.getMessage()}"
        )
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "worker": self.worker_id,
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, _FIELDS, None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class RepeatFilter(logging.Filter):
    """Passes the first of a run of like messages and counts the rest.

    With a broker away, librdkafka reports every reconnect attempt: ~20 lines a second per
    client, all alike but for numbers. Messages equal once their numbers are blanked count as
    one: within ``window`` seconds of the last one let through, they are dropped; the next one
    after that carries ``repeats_suppressed`` (how many were dropped) and ``over_s``.
    """

    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self._runs: dict[tuple[int, str], list[float]] = {}  # -> [let through at, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, _NUMBERS.sub("#", record.getMessage()))
        now = self.clock()
        run = self._runs.get(key)
        if run is not None and now - run[0] < self.window:
            run[1] += 1
            return False
        if run is not None and run[1]:
            fields = dict(getattr(record, _FIELDS, None) or {})
            fields.update(repeats_suppressed=int(run[1]), over_s=round(now - run[0]))
            setattr(record, _FIELDS, fields)
        if len(self._runs) >= 1024:  # bounded: forget runs that ended
            self._runs = {k: r for k, r in self._runs.items() if now - r[0] < self.window}
        self._runs[key] = [now, 0]
        return True


def setup_logging(
    worker_id: str, level: str = "INFO", fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Replace the root handlers with one stream handler in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(worker_id) if fmt == "json" else TextFormatter(worker_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Faust, mode and aiokafka narrate every service start/stop at INFO; our own events say what
    # matters, so theirs start at WARNING unless DEBUG was asked for.
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    repeats = RepeatFilter()
    for name in LIBRDKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        logger.filters[:] = [repeats]  # setup may run again (tests): one filter, not a stack
