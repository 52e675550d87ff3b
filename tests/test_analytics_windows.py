"""Windowed stats: emission rules, late records, bounds, and totals whatever the order."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics.windows import Counts, Key, WindowedStats, event_time_ms, row_key

MIN = 60_000
T0 = 1_767_268_800_000  # 2026-01-01T12:00:00Z, a window boundary
FIELDS = [
    "window_start",
    "window_end",
    "provider",
    "egress_pool",
    "egress_source",
    "tenant",
    "counts",
    "labels",
    "categories",
    "complaints",
    "gaps",
]


def counts(rtype: str = "Bounce", n: int = 1, label: str | None = None) -> Counts:
    c = Counts()
    c.counts[rtype] = n
    if label:
        c.labels[label] = n
        c.categories["hard"] = n
    return c


def key(start: int, provider: str = "google", tenant: str = "t") -> Key:
    return (start, provider, "pool", "ip1", tenant)


def make(**kw: Any) -> WindowedStats:
    opts: dict[str, Any] = {"window_s": 60, "grace_s": 10, "idle_flush_s": 5, "clock": lambda: 0.0}
    opts.update(kw)
    return WindowedStats(**opts)


WALL = T0 / 1000 + 30  # wall clock in the first window


def test_row_schema_and_key() -> None:
    ws = make()
    c = counts("Bounce", 2, "InvalidRecipient")
    c.add_gap("451 4.9.9 zork {n}", "451 4.9.9 zork 1")
    ws.add({key(T0): c}, now_wall=WALL)
    [row] = ws.due(T0 + MIN + 10_000, WALL)
    assert list(row) == FIELDS
    assert row["window_start"] == T0 and row["window_end"] == T0 + MIN
    assert row["counts"] == {"Bounce": 2}
    assert row["labels"] == {"InvalidRecipient": 2}
    assert row["gaps"] == [
        {"template": "451 4.9.9 zork {n}", "count": 1, "example": "451 4.9.9 zork 1"}
    ]
    assert orjson.loads(row_key(row)) == [T0, "google", "pool", "ip1", "t"]


def test_emitted_by_event_time_only_after_end_plus_grace() -> None:
    ws = make()
    ws.add({key(T0): counts()}, now_wall=WALL)
    assert ws.due(T0 + MIN + 9_999, WALL + 1) == []
    assert len(ws.due(T0 + MIN + 10_000, WALL + 1)) == 1
    assert ws.due(T0 + MIN + 20_000, WALL + 2) == []  # emitted once


def test_idle_windows_flush_by_wall_clock() -> None:
    ws = make()
    ws.add({key(T0): counts()}, now_wall=1000.0)  # a replay: wall clock far from event time
    assert ws.due(T0, 1004.9) == []
    assert len(ws.due(T0, 1005.0)) == 1


def test_late_records_re_emit_the_full_counts_of_changed_rows_only() -> None:
    ws = make()
    ws.add({key(T0): counts(n=3), key(T0, "yahoo"): counts(n=1)}, now_wall=WALL)
    first = ws.due(T0 + 2 * MIN, WALL)
    assert len(first) == 2
    ws.add({key(T0): counts(n=2)}, now_wall=WALL + 1)  # late: its window was emitted
    [again] = ws.due(T0 + 2 * MIN, WALL + 1)
    assert again["provider"] == "google" and again["counts"] == {"Bounce": 5}


def test_records_older_than_the_retention_are_dropped_and_counted() -> None:
    ws = make(retention_s=120)
    ws.add({key(T0): counts()}, now_wall=WALL)
    ws.due(T0 + 10 * MIN, WALL)
    assert ws.windows == []  # forgotten after the retention
    ws.add({key(T0): counts(n=4)}, now_wall=WALL)
    assert ws.dropped_late == 4
    assert ws.due(T0 + 10 * MIN, WALL + 100) == []


def test_future_event_times_cannot_close_every_window() -> None:
    ws = make(future_skew_s=20)
    ws.add({key(T0): counts()}, now_wall=WALL)
    year_3000 = 32_503_680_000_000
    assert ws.due(year_3000, WALL) == []  # capped at wall clock + 20 s
    assert ws.watermark == int(WALL * 1000) + 20_000


def test_max_windows_evicts_the_oldest_and_still_emits_it() -> None:
    ws = make(max_windows=3)
    for i in range(5):
        ws.add({key(T0 + i * MIN): counts()}, now_wall=WALL)
    assert len(ws.windows) == 3
    rows = ws.due(None, WALL)
    assert sorted(r["window_start"] for r in rows) == [T0, T0 + MIN]


def test_max_keys_folds_new_keys_into_the_other_row() -> None:
    ws = make(max_keys=3)
    ws.add({key(T0, tenant=f"t{i}"): counts() for i in range(10)}, now_wall=WALL)
    assert len(ws) == 4  # three keys and the all-"other" row
    rows = ws.flush_all()
    other = [r for r in rows if r["tenant"] == "other"]
    assert other and other[0]["counts"] == {"Bounce": 7}
    assert ws.overflowed == 7
    assert sum(r["counts"]["Bounce"] for r in rows) == 10


def test_retention_must_cover_grace() -> None:
    with pytest.raises(ValueError):
        WindowedStats(grace_s=60, retention_s=10)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"event_time": "2026-01-01T12:00:00Z", "timestamp": 1}, T0),
        ({"event_time": "2026-01-01T12:00:00.123456789Z"}, T0 + 123),
        ({"event_time": "2026-01-01T12:00:00.5z"}, T0 + 500),
        ({"event_time": "2026-01-01T14:00:00+02:00"}, T0),
        ({"event_time": "2026-01-01T12:00:00"}, T0),
        ({"event_time": "not a time", "timestamp": 1767268800}, T0),
        ({"timestamp": 1767268800.25}, T0 + 250),
        ({"timestamp": True}, None),
        ({"timestamp": "1767268800"}, None),
        ({}, None),
    ],
)
def test_event_time_ms(record: dict[str, Any], expected: int | None) -> None:
    assert event_time_ms(record) == expected


@st.composite
def partials(draw: st.DrawFn) -> list[dict[Key, Counts]]:
    out = []
    for _ in range(draw(st.integers(1, 12))):
        part: dict[Key, Counts] = {}
        for _ in range(draw(st.integers(1, 4))):
            k = key(
                T0 + draw(st.integers(0, 5)) * MIN,
                draw(st.sampled_from(["google", "yahoo"])),
                draw(st.sampled_from(["a", "b"])),
            )
            c = part.setdefault(k, Counts())
            rtype = draw(st.sampled_from(["Bounce", "Delivery", "Feedback"]))
            c.counts[rtype] = c.counts.get(rtype, 0) + draw(st.integers(1, 3))
        out.append(part)
    return out


@settings(max_examples=150, deadline=None)
@given(partials(), st.randoms(use_true_random=False), st.lists(st.booleans(), max_size=12))
def test_latest_rows_sum_to_the_inputs_whatever_the_order(
    batches: list[dict[Key, Counts]], rnd: Any, flushes: list[bool]
) -> None:
    expected: Counter[str] = Counter()
    for part in batches:
        for c in part.values():
            expected.update(c.counts)
    rnd.shuffle(batches)
    ws = make(idle_flush_s=1)
    latest: dict[bytes, dict[str, Any]] = {}
    wall = WALL
    mark = T0
    for i, part in enumerate(batches):
        ws.add(part, now_wall=wall)
        mark = max([mark, *(k[0] for k in part)])
        if i < len(flushes) and flushes[i]:
            wall += 2  # idle flushes and event-time flushes in between
            for row in ws.due(mark, wall):
                latest[row_key(row)] = row
    for row in ws.flush_all():
        latest[row_key(row)] = row
    total: Counter[str] = Counter()
    for row in latest.values():
        total.update(row["counts"])
    assert total == expected
