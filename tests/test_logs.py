"""Log lines: text and JSON formats with fields; librdkafka's repeated messages thinned out."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from streamer.logs import LIBRDKAFKA_LOGGERS, RepeatFilter, log_event, setup_logging

REFUSED = (
    "FAIL [w-in#consumer-5] [thrd:127.0.0.1:53971/bootstrap]: 127.0.0.1:53971/bootstrap: "
    "Connect to ipv4#127.0.0.1:53971 failed: Connection refused (after {ms}ms in state CONNECT)"
)


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name in LIBRDKAFKA_LOGGERS:
        logging.getLogger(name).filters.clear()


def test_text_and_json_lines_carry_the_worker_and_the_fields(restore_logging) -> None:
    for fmt in ("text", "json"):
        out = io.StringIO()
        setup_logging("w7", "INFO", fmt, out)
        log_event(logging.getLogger("streamer.worker"), logging.WARNING, "paused", in_flight=12)
        line = out.getvalue().strip()
        if fmt == "json":
            doc = orjson.loads(line)
            assert doc["worker"] == "w7" and doc["event"] == "paused" and doc["in_flight"] == 12
        else:
            assert "WARNING worker=w7 streamer.worker: paused in_flight=12" in line


def test_repeats_within_the_window_are_counted_not_written() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=30.0, clock=lambda: now[0])

    def passes(msg: str, level: int = logging.ERROR) -> logging.LogRecord | None:
        record = logging.LogRecord("streamer.librdkafka.consumer", level, "", 0, msg, (), None)
        return record if repeats.filter(record) else None

    assert passes(REFUSED.format(ms=0)) is not None
    for i in range(1, 600):  # 20 a second for 30 s, differing only in their numbers
        now[0] = i * 0.05
        assert passes(REFUSED.format(ms=i % 3)) is None
    # another message, or the same one at another level, is not held back
    assert passes("FAIL [w-out#producer-4]: TxnCoordinator: Disconnected") is not None
    assert passes(REFUSED.format(ms=0), logging.WARNING) is not None
    now[0] = 30.0
    again = passes(REFUSED.format(ms=0))
    assert again is not None
    assert again.streamer_fields == {"repeats_suppressed": 599, "over_s": 30}  # type: ignore[attr-defined]
    now[0] = 31.0
    assert passes(REFUSED.format(ms=0)) is None
    now[0] = 61.0
    quiet = passes(REFUSED.format(ms=0))
    assert quiet is not None and quiet.streamer_fields["repeats_suppressed"] == 1  # type: ignore[attr-defined]


def test_librdkafka_loggers_are_thinned_out_ours_are_not(restore_logging) -> None:
    out = io.StringIO()
    setup_logging("w1", "INFO", "text", out)
    setup_logging("w1", "INFO", "text", out)  # set up twice: still one filter
    consumer = logging.getLogger(LIBRDKAFKA_LOGGERS[0])
    assert len(consumer.filters) == 1
    for ms in range(50):
        consumer.error(REFUSED.format(ms=ms))
        log_event(logging.getLogger("streamer.worker"), logging.ERROR, f"ours {ms}")
    lines = out.getvalue().splitlines()
    assert sum("Connection refused" in line for line in lines) == 1
    assert sum(" ours " in line for line in lines) == 50
