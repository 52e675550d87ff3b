"""Windowed stats: emission rules, late records, bounds, and totals whatever the order."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics.analyzer import windows_from_settings
from streamer.analytics.batch import BatchAggregator
from streamer.analytics.rates import COMPLAINTS_BYTES, TOTAL_BYTES, WindowRates
from streamer.analytics.windows import (
    RATE_POSITIONS,
    Counts,
    Key,
    WindowedStats,
    event_time_ms,
    row_key,
)
from streamer.config import Settings

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
    "feedback",
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
    opts: dict[str, Any] = {"window_s": 60, "grace_s": 10, "clock": lambda: 0.0}
    opts.update(kw)
    return WindowedStats(**opts)


WALL = T0 / 1000 + 30  # wall clock in the first window


def test_row_schema_and_key() -> None:
    ws = make()
    c = counts("Bounce", 2, "InvalidRecipient")
    c.add_gap("451 4.9.9 zork {n}", "451 4.9.9 zork 1")
    ws.add({key(T0): c}, now_wall=WALL)
    [row] = ws.updates(T0 + MIN + 10_000, WALL)
    assert list(row) == [*FIELDS, "final", "serial"]
    assert row["final"] is True and row["serial"] == 1
    assert row["window_start"] == T0 and row["window_end"] == T0 + MIN
    assert row["counts"] == {"Bounce": 2}
    assert row["labels"] == {"InvalidRecipient": 2}
    assert row["gaps"] == [
        {"template": "451 4.9.9 zork {n}", "count": 1, "example": "451 4.9.9 zork 1"}
    ]
    assert orjson.loads(row_key(row)) == [T0, "google", "pool", "ip1", "t"]
    row["session"] = "w/1"  # what the worker adds before it publishes
    assert orjson.loads(row_key(row)) == [T0, "google", "pool", "ip1", "t", "w/1", 1]


def test_changed_rows_go_out_at_once_and_final_only_after_end_plus_grace() -> None:
    ws = make()
    ws.add({key(T0): counts()}, now_wall=WALL)
    [row] = ws.updates(T0 + MIN + 9_999, WALL + 1)
    assert row["final"] is False and row["counts"] == {"Bounce": 1}
    assert ws.updates(T0 + MIN + 9_999, WALL + 1) == []  # nothing changed
    [final] = ws.updates(T0 + MIN + 10_000, WALL + 1)
    assert final["final"] is True and final["counts"] == {"Bounce": 1}
    assert final["serial"] == row["serial"]
    assert ws.updates(T0 + MIN + 20_000, WALL + 2) == []  # final once


def test_a_replay_publishes_whatever_the_wall_clock() -> None:
    ws = make()
    ws.add({key(T0): counts()}, now_wall=1000.0)  # a replay: wall clock far from event time
    [row] = ws.updates(T0, 1000.0)
    assert row["counts"] == {"Bounce": 1} and row["final"] is False


def test_late_records_re_emit_the_full_counts_of_changed_rows_only() -> None:
    ws = make()
    ws.add({key(T0): counts(n=3), key(T0, "yahoo"): counts(n=1)}, now_wall=WALL)
    first = ws.updates(T0 + 2 * MIN, WALL)
    assert len(first) == 2
    ws.add({key(T0): counts(n=2)}, now_wall=WALL + 1)  # late: its window was emitted
    [again] = ws.updates(T0 + 2 * MIN, WALL + 1)
    assert again["provider"] == "google" and again["counts"] == {"Bounce": 5}
    assert again["serial"] == first[0]["serial"]  # the same key: it overwrites the first row


def test_records_older_than_the_retention_start_a_new_serial_nothing_is_dropped() -> None:
    ws = make(retention_s=120)
    ws.add({key(T0): counts()}, now_wall=WALL)
    latest: dict[bytes, dict[str, Any]] = {}
    [first] = ws.updates(T0 + 10 * MIN, WALL)
    publish([first], latest, "w/1")
    assert ws.windows == []  # forgotten after the retention
    ws.add({key(T0): counts(n=4)}, now_wall=WALL)
    [again] = ws.updates(T0 + 10 * MIN, WALL + 100)
    publish([again], latest, "w/1")
    assert again["counts"] == {"Bounce": 4} and again["final"] is True
    assert (first["serial"], again["serial"]) == (1, 2)
    assert consumed_total(latest) == 5
    assert ws.updates(T0 + 10 * MIN, WALL + 100) == []


def test_future_event_times_cannot_close_every_window() -> None:
    ws = make(future_skew_s=20)
    ws.add({key(T0): counts()}, now_wall=WALL)
    year_3000 = 32_503_680_000_000
    [row] = ws.updates(year_3000, WALL)
    assert row["final"] is False  # capped at wall clock + 20 s
    assert ws.watermark == int(WALL * 1000) + 20_000


def test_max_windows_evicts_the_oldest_and_still_emits_it() -> None:
    ws = make(max_windows=3)
    for i in range(5):
        ws.add({key(T0 + i * MIN): counts()}, now_wall=WALL)
    assert len(ws.windows) == 3
    rows = ws.updates(None, WALL)
    assert [(r["window_start"], r["serial"]) for r in rows] == [
        (T0 + i * MIN, i + 1) for i in range(5)
    ]  # the two evicted windows first, under their own serials


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
    ws = make()
    latest: dict[bytes, dict[str, Any]] = {}
    wall = WALL
    mark = T0
    for i, part in enumerate(batches):
        ws.add(part, now_wall=wall)
        mark = max([mark, *(k[0] for k in part)])
        if i < len(flushes) and flushes[i]:
            wall += 2  # updates with event-time flushes in between
            publish(ws.updates(mark, wall), latest, "w/1")
    publish(ws.updates(mark, wall), latest, "w/1")
    total: Counter[str] = Counter()
    for row in latest.values():
        total.update(row["counts"])
    assert total == expected


# --- what the worker really calls: updates() with its settings --------------------------------
def publish(rows: list[dict[str, Any]], latest: dict[bytes, dict[str, Any]], session: str) -> None:
    """What ``StatsPublisher`` does with the rows of an update: key them by session and serial;
    a compacted topic keeps the latest row per key."""
    for row in rows:
        row["session"] = session
        latest[row_key(row)] = row


def consumed_total(latest: dict[bytes, dict[str, Any]]) -> int:
    return sum(sum(row["counts"].values()) for row in latest.values() if "counts" in row)


def test_rows_of_windows_evicted_by_the_cap_keep_their_serial() -> None:
    """The worker's windows with ``stats_window = 5``: an hour's retention holds 720 windows,
    more than the 512-window cap. Rows of a window evicted by the cap are published under that
    window's serial, so its earlier rows are overwritten, never summed with them."""
    ws = windows_from_settings(Settings(stats_window=5))
    assert ws.max_windows == 512 and ws.retention_ms // ws.window_ms == 720
    latest: dict[bytes, dict[str, Any]] = {}
    wall = T0 / 1000 + 3600
    for i in range(3000):  # 3,000 records over an hour: ~4 per window, 720 windows
        start = T0 + (i * 1200 // 1000) * 1000 // 5000 * 5000
        ws.add({key(start): counts("Delivery")}, now_wall=wall)
        if i == 2500:  # the cap is reached: one late record for the oldest window held...
            assert len(ws.windows) == 512
            ws.add({key(ws.windows[0]): counts("Delivery")}, now_wall=wall)
        if i % 7 == 6:  # ...evicted by a new window before the next update publishes it
            publish(ws.updates(start, wall), latest, "w/1")
    publish(ws.updates(None, wall), latest, "w/1")
    assert consumed_total(latest) == 3001
    assert all(row["serial"] > 0 for row in latest.values())
    # the complaint-rate partials (the worker's windows derive them) are kept by serial too
    for dim in ("provider", "tenant"):
        assert sum(r["delivered"] for r in latest.values() if r.get("dimension") == dim) == 3001


@st.composite
def sessions(draw: st.DrawFn) -> list[list[tuple[int, str, int]]]:
    """Records (event time in s after T0, type, what follows: 0 nothing, 1 a fold, 2 a fold
    and an update) split into the sessions that counted them (restarts, rebalances)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        out.append(
            draw(
                st.lists(
                    st.tuples(
                        st.integers(0, 90),  # any order: late records, windows long forgotten
                        st.sampled_from(["Bounce", "Delivery", "Feedback"]),
                        st.sampled_from([0, 0, 0, 1, 2]),
                    ),
                    min_size=1,
                    max_size=60,
                )
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(
    sessions(),
    st.integers(1, 5),  # stats_window
    st.integers(0, 3),  # stats_grace
    st.integers(0, 15),  # stats_retention beyond the grace
    st.integers(1, 6),  # the window cap
)
def test_latest_rows_sum_to_what_was_consumed_whatever_the_order(
    records: list[list[tuple[int, str, int]]], window: int, grace: int, keep: int, cap: int
) -> None:
    """The worker's path (``StatsPublisher``): records tallied by the aggregator, folded into the
    windows, published by ``updates()`` and at shutdown, each session under its own key."""
    wall = T0 / 1000 + 600
    latest: dict[bytes, dict[str, Any]] = {}
    for n, session in enumerate(records):
        aggregator = BatchAggregator(window, clock=lambda: wall)
        ws = WindowedStats(
            window_s=window,
            grace_s=grace,
            retention_s=grace + keep,
            max_windows=cap,
            clock=lambda: wall,
        )
        for t, rtype, then in session:
            record = {"type": rtype, "timestamp": T0 // 1000 + t, "tenant": "acme"}
            aggregator.add(record, rtype, None, None, "google", None)
            if then:
                aggregator.fold_into(ws, wall)
            if then == 2:
                publish(ws.updates(aggregator.watermark, wall), latest, f"w/{n}")
        aggregator.fold_into(ws, wall)  # shutdown: the last update
        publish(ws.updates(aggregator.watermark, wall), latest, f"w/{n}")
    total: Counter[str] = Counter()
    for row in latest.values():
        total.update(row["counts"])
    assert total == Counter(rtype for session in records for _, rtype, _ in session)
    assert all(row["serial"] >= 1 for row in latest.values())


def test_rate_partials_sum_the_whole_window_per_provider_and_per_tenant() -> None:
    """An update carries, per changed provider and tenant, the window's deliveries and
    complaints over all its rows (not only the changed ones); nothing for a value with neither,
    nor for a dimension the stats leave out."""
    ws = make(rates=True)
    first = {
        key(T0, "google", "a"): counts("Delivery", 3),
        key(T0, "google", "b"): counts("Delivery", 2),
        key(T0, "yahoo", "a"): counts("Bounce", 1),
    }
    ws.add(first, now_wall=WALL)
    rates = [r for r in ws.updates(T0, WALL) if "dimension" in r]
    assert [(r["dimension"], r["value"], r["delivered"], r["complaints"]) for r in rates] == [
        ("provider", "google", 5, {}),
        ("tenant", "a", 3, {}),
        ("tenant", "b", 2, {}),
    ]
    report = Counts()  # a complaint's row: no pool, no source
    report.counts["Feedback"] = 1
    report.complaints["abuse"] = 1
    ws.add({(T0, "google", "", "", "a"): report}, now_wall=WALL)
    rates = [r for r in ws.updates(T0, WALL) if "dimension" in r]
    assert rates == [
        {
            "window_start": T0,
            "window_end": T0 + 60_000,
            "dimension": dim,
            "value": value,
            "delivered": delivered,
            "complaints": {"abuse": 1},
            "final": False,
            "serial": 1,
        }
        for dim, value, delivered in (("provider", "google", 5), ("tenant", "a", 3))
    ]
    left_out = make(rates=True)
    left_out.add({(T0, "google", "*", "*", "*"): counts("Delivery", 4)}, now_wall=WALL)
    rates = [r for r in left_out.updates(T0, WALL) if "dimension" in r]
    assert [(r["dimension"], r["value"], r["delivered"]) for r in rates] == [
        ("provider", "google", 4)
    ]
    plain = make()  # the offline report's windows: no rate partials
    plain.add({key(T0): counts("Delivery")}, now_wall=WALL)
    assert [("dimension" in r) for r in plain.updates(T0, WALL)] == [False]


def test_rate_totals_memory_measured() -> None:
    """A window's totals per provider and tenant, measured with tracemalloc, within what the
    windows charge their byte ledger for them: delivered only, and with complaints (each
    total's map and each row's remembered one)."""
    for complained in (False, True):
        rows = {}
        for i in range(2000):
            c = counts("Delivery", 3)
            if complained:
                c.complaints["abuse"] = 1
            rows[(f"provider-{i}", "pool", "ip1", f"tenant-{i}")] = c
        rates = WindowRates(RATE_POSITIONS)
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        touched, charged = rates.count(list(rows), rows)
        del touched  # the caller's, for one update
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        held = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(f"\nrate totals (complaints: {complained}): {held} B held, {charged} B charged")
        assert len(rates.totals) == 4000 and held <= charged * 1.2
        assert charged == 4000 * TOTAL_BYTES + complained * 6000 * COMPLAINTS_BYTES
