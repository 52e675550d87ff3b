"""Points in time given on the command line: an RFC 3339 / ISO 8601 time or date, or a duration
back from now (``90s``, ``30m``, ``2h``, ``1d``, ``1w``, or combined: ``1h30m``)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(?:(\d+)([smhdw]))+")
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> float | None:
    """Seconds of ``2h``, ``30m``, ``1h30m`` ...; None when ``text`` is not a duration."""
    text = text.strip().lower()
    if not _DURATION.fullmatch(text):
        return None
    return float(sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text)))


def parse_instant(text: str, now: float | None = None) -> float:
    """Epoch seconds of ``text``: a duration ago, or a time (no zone: UTC; a date: its UTC
    midnight). ValueError saying what is accepted otherwise."""
    seconds = parse_duration(text)
    if seconds is not None:
        return (time.time() if now is None else now) - seconds
    stamp = text.strip()
    if stamp[-1:] in ("z", "Z"):
        stamp = stamp[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (2026-12-06T14:00:00Z, 2026-12-06) "
            "nor a duration (30m, 2h, 1d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
