"""The parts of `streamer dlq` and `streamer replay` that need no broker: time options, the
replayed record's headers, selection, and what is printed of keys and payloads."""

from __future__ import annotations

import pytest

from streamer.deadletter import DLQ_REASON, dead_letter_headers
from streamer.kafka.deadletters import (
    REPLAYED_FROM,
    DeadLetter,
    Selection,
    pretty_payload,
    safe_text,
)
from streamer.timespec import parse_duration, parse_instant

NOW = 1_800_000_000.0


def test_times_and_durations() -> None:
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400
    assert parse_duration("1d") == 86_400 and parse_duration("2026-12-06") is None
    assert parse_instant("30m", now=NOW) == NOW - 1800
    assert parse_instant("2026-12-06T14:00:00Z") == parse_instant("2026-12-06T15:00:00+01:00")
    assert parse_instant("2026-12-06") == parse_instant("2026-12-06T00:00:00Z")
    assert parse_instant("2026-12-06T14:00:00") == parse_instant("2026-12-06T14:00:00Z")
    with pytest.raises(ValueError, match=r"'2x' is neither a time .* nor a duration"):
        parse_instant("2x")


def _letter(headers: list[tuple[str, str | bytes | None]]) -> DeadLetter:
    return DeadLetter(
        topic="in.dlq",
        partition=1,
        offset=7,
        key=b"k",
        value=b"v",
        headers=headers,
        timestamp_ms=int(NOW * 1000),
        reason="not-json",
        source_topic="in",
        source_partition=0,
        source_offset=3,
        source_offsets=None,
        time="2026-12-01T10:00:00.000Z",
        detail=None,
    )


def test_replay_headers_keep_the_originals_and_name_the_dead_letter() -> None:
    original = [("trace", b"t1"), (REPLAYED_FROM, b"in.dlq/0/1")]  # replayed once already
    headers = dead_letter_headers(original, "not-json", topic="in", partition=0, offset=3)
    assert any(k == DLQ_REASON for k, _ in headers)
    assert _letter(headers).replay_headers() == [("trace", b"t1"), (REPLAYED_FROM, b"in.dlq/1/7")]


def test_selection_by_reason_and_time() -> None:
    letter = _letter([])
    day = parse_instant("2026-12-01T10:00:00Z")
    assert letter.when == day and letter.source == "in/0/3" and letter.ref == "1:7"
    assert Selection().matches(letter)
    assert Selection(frozenset({"not-json"}), since=day, until=day).matches(letter)
    assert not Selection(frozenset({"too-large"})).matches(letter)
    assert not Selection(since=day + 0.001).matches(letter)
    assert not Selection(until=day - 0.001).matches(letter)


def test_keys_and_payloads_print_safely() -> None:
    assert safe_text(b"m-1") == "m-1"
    assert safe_text(b"\xff\x1b[2J\n") == "\\xff\\x1b[2J\\n"
    assert pretty_payload(None) == ("no value (a tombstone)", "")
    assert pretty_payload(b'{"a":"\\u001b"}') == ("14 bytes, JSON", '{\n  "a": "\\u001b"\n}')
    assert pretty_payload(b"\x00ab") == ("3 bytes, not JSON, shown escaped", "\\x00ab")
