"""The worker's exit statuses: defined in ``streamer.exits`` (shared with every command, and
importable without loading the worker)."""

from streamer.exits import (
    CONFIG_ERROR_EXIT,
    CRASH_EXIT,
    LOGIN_REFUSED_EXIT,
    NOT_AUTHORIZED_EXIT,
    PERMANENT_EXITS,
    TEMPFAIL_EXIT,
    TLS_MISMATCH_EXIT,
)

__all__ = [
    "CONFIG_ERROR_EXIT",
    "CRASH_EXIT",
    "LOGIN_REFUSED_EXIT",
    "NOT_AUTHORIZED_EXIT",
    "PERMANENT_EXITS",
    "TEMPFAIL_EXIT",
    "TLS_MISMATCH_EXIT",
]
