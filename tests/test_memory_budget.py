"""One memory budget: the input-keyed bounds derive from ``memory_budget_mb``, an explicit
setting wins, and the windowed stats stay within their byte accounting under hostile input."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamer import memory
from streamer.analytics.batch import BatchAggregator
from streamer.analytics.heavy import OTHER
from streamer.analytics.windows import EXAMPLE_MAX, OVERFLOW, Counts, WindowedStats
from streamer.config import ConfigError, Settings, load_settings
from streamer.worker.stats import SEND_SLICE, StatsPublisher

DERIVED = (
    "back_pressure",
    "stats_max_rows",
    "suppressions_memory",
    "stats_rollup_rows",
    "cache_size",
    "uncategorized_cache_size",
    "analytics_cache_size",
    "metrics_top_keys",
)
MIN = 60_000
T0 = 1_767_268_800_000  # a window boundary


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STREAMER_CONFIG", "STREAMER_MEMORY_BUDGET_MB", *map(str.upper, DERIVED)):
        monkeypatch.delenv(var if var.startswith("STREAMER_") else f"STREAMER_{var}", False)


def _bounds(s: Settings) -> dict[str, int]:
    return {name: getattr(s, name) for name in DERIVED}


def test_the_default_budget_gives_the_documented_defaults() -> None:
    s = load_settings(files=[Path("/dev/null")])
    assert s.memory_budget_mb == 250
    expected = {
        "back_pressure": 10_000,
        "stats_max_rows": 5_625,
        "suppressions_memory": 7_500,
        "stats_rollup_rows": 6_000,
        "cache_size": 1024,
        "uncategorized_cache_size": 1024,
        "analytics_cache_size": 4096,
        "metrics_top_keys": 2000,
    }
    assert _bounds(s) == expected == memory.derived_bounds(250)
    # the fields' own defaults (the configuration reference) say the same
    assert {n: Settings.model_fields[n].default for n in DERIVED} == expected


def test_the_shares_fit_in_what_the_budget_leaves() -> None:
    assert round(sum(memory.SHARES.values()), 6) <= 0.85  # 15% at least is headroom
    for budget in (memory.MIN_BUDGET_MB, 250, 400, 1000, 4000):
        b = memory.derived_bounds(budget)
        usable = memory.usable_bytes(budget)
        held = {
            "windows": memory.stats_byte_budget(b["stats_max_rows"]),
            "suppressions": b["suppressions_memory"] * memory.SUPPRESSION_BYTES,
            "rollup": memory.rollup_byte_budget(b["stats_rollup_rows"]),
            "in_flight": b["back_pressure"] * memory.IN_FLIGHT_RECORD_BYTES,
        }
        held["kafka"] = sum(
            n * memory.kafka_client_held_bytes(memory.kafka_client_config(budget, client))
            for client, (n, _part) in memory.KAFKA_CLIENTS.items()
        )
        for share, n in held.items():
            assert n <= usable * memory.SHARES[share], (budget, share)
        assert sum(held.values()) <= usable


#: librdkafka's bounds of each client at the default budget (docs/operations/sizing.md).
KAFKA_DEFAULTS = {
    "records_consumer": {
        "queued.max.messages.kbytes": 4394,
        "fetch.max.bytes": 1_125_000,
        "max.partition.fetch.bytes": 1_125_000,
        "message.max.bytes": 1_125_000,
    },
    "records_producer": {
        "queue.buffering.max.kbytes": 5493,
        "queue.buffering.max.messages": 21_972,
    },
    "stage_consumer": {
        "queued.max.messages.kbytes": 1025,
        "fetch.max.bytes": 262_500,
        "max.partition.fetch.bytes": 262_500,
        "message.max.bytes": 262_500,
    },
    "stage_producer": {"queue.buffering.max.kbytes": 1281, "queue.buffering.max.messages": 5126},
    "changelog_reader": {
        "queued.max.messages.kbytes": 585,
        "fetch.max.bytes": 150_000,
        "max.partition.fetch.bytes": 150_000,
        "message.max.bytes": 150_000,
    },
}
KAFKA_DEFAULTS["mirror_consumer"] = KAFKA_DEFAULTS["changelog_reader"]


def test_the_default_budget_bounds_every_kafka_client() -> None:
    assert {c: memory.kafka_client_config(250, c) for c in memory.KAFKA_CLIENTS} == KAFKA_DEFAULTS
    # the two records clients, one each of the stages' clients: the whole kafka share
    assert round(sum(n * part for n, part in memory.KAFKA_CLIENTS.values()), 6) == 1.0
    for client, config in KAFKA_DEFAULTS.items():
        held = memory.kafka_client_held_bytes(config)
        assert 0.99 < held / memory.kafka_client_bytes(250, client) <= 1.0, client


def test_a_smaller_budget_still_fetches_and_queues() -> None:
    for client in memory.KAFKA_CLIENTS:
        config = memory.kafka_client_config(memory.MIN_BUDGET_MB, client)
        if "fetch.max.bytes" in config:
            assert config["fetch.max.bytes"] >= memory.MIN_FETCH_BYTES
            assert config["queued.max.messages.kbytes"] >= memory.MIN_QUEUE_KBYTES
        else:
            assert config["queue.buffering.max.kbytes"] >= memory.MIN_QUEUE_KBYTES


def test_every_worker_client_is_built_with_its_bounds() -> None:
    from streamer.worker.keyed_stage import _consumer_config
    from streamer.worker.stage_output import _producer_config
    from streamer.worker.stream import _queue_limits
    from streamer.worker.suppression_restore import restore_config

    s = load_settings(files=[Path("/dev/null")])
    producer, consumer = _queue_limits(s)
    assert producer == KAFKA_DEFAULTS["records_producer"]
    assert consumer == KAFKA_DEFAULTS["records_consumer"]
    built = {
        "stage_consumer": _consumer_config(s, "127.0.0.1:9092", "g.stats", "w", "stats"),
        "stage_producer": _producer_config(s, "127.0.0.1:9092", "w", "stats"),
        "changelog_reader": restore_config(s, "127.0.0.1:9092", "g.stats"),
    }
    for client, conf in built.items():
        assert {k: conf[k] for k in KAFKA_DEFAULTS[client]} == KAFKA_DEFAULTS[client], client


def test_the_records_producer_holds_two_outputs_at_the_size_limit() -> None:
    from streamer.worker.stream import _queue_limits

    s = load_settings(files=[Path("/dev/null")], max_message_bytes=8 * 1024 * 1024)
    producer, _consumer = _queue_limits(s)
    assert producer["queue.buffering.max.kbytes"] == 2 * (8 * 1024 * 1024 + 65_536) // 1024


def test_a_larger_message_max_bytes_in_kafka_extra_raises_the_fetch() -> None:
    from streamer.kafka.clients import consumer_config

    s = load_settings(files=[Path("/dev/null")], kafka_extra={"message.max.bytes": "4000000"})
    conf = consumer_config(s, "127.0.0.1:9092", **memory.kafka_client_config(250, "stage_consumer"))
    assert (conf["message.max.bytes"], conf["fetch.max.bytes"]) == ("4000000", 4_000_000)
    assert conf["queued.max.messages.kbytes"] == 1025  # the rest of the bounds as derived


def test_a_larger_budget_scales_every_bound() -> None:
    small, large = memory.derived_bounds(250), memory.derived_bounds(400)  # usable 150 -> 300 MB
    assert large == {name: 2 * value for name, value in small.items()}


def test_an_explicit_bound_wins_over_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(files=[Path("/dev/null")], memory_budget_mb=400, cache_size=7)
    assert (s.cache_size, s.stats_max_rows) == (7, 11_250)
    monkeypatch.setenv("STREAMER_MEMORY_BUDGET_MB", "175")  # usable 75 MB: half the default
    monkeypatch.setenv("STREAMER_SUPPRESSIONS_MEMORY", "9")
    s = load_settings(files=[Path("/dev/null")])
    assert _bounds(s) == {
        "back_pressure": 5_000,
        "stats_max_rows": 2_812,
        "suppressions_memory": 9,
        "stats_rollup_rows": 3_000,
        "cache_size": 512,
        "uncategorized_cache_size": 512,
        "analytics_cache_size": 2048,
        "metrics_top_keys": 1000,
    }


def test_a_budget_below_the_reserve_is_one_line_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(files=[Path("/dev/null")], memory_budget_mb=100)
    assert str(err.value) == (
        "invalid configuration: memory_budget_mb: Input should be greater than or equal to 150"
    )


def _hostile(ws: WindowedStats, windows: int, keys: int) -> int:
    """Every key and gap template new, examples as long as kept; returns records counted."""
    records = 0
    for w in range(windows):
        start = T0 + w * MIN
        for k in range(keys):
            row = ws.row((start, "other", f"pool{w}.{k}", f"src{w}.{k}", f"t{w}.{k}"), 0.0, 2)
            assert row is not None
            row.counts["Bounce"] = row.counts.get("Bounce", 0) + 2
            for g in range(2):
                tpl = f"550 relay{w}x{k}x{g} refused"
                row.add_gap(tpl, tpl + " " + "z" * EXAMPLE_MAX, 1)
            records += 2
        assert ws.ledger.limit is not None
        slack = (w + 1) * (3 * memory.ROW_BUDGET_BYTES + EXAMPLE_MAX)  # an other row per window
        assert ws.ledger.used <= ws.ledger.limit + slack
        ws.updates(start + 1_000, 0.0)
    return records


def test_the_byte_accounting_matches_what_rows_hold() -> None:
    ws = WindowedStats(
        retention_s=36_000, max_keys=10**6, max_bytes=10**9, clock=lambda: 0.0, future_skew_s=1e10
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _hostile(ws, windows=4, keys=500)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(ws) == 4 * 500
    assert 0.8 < held / ws.ledger.used < 1.25


def test_rows_gaps_and_examples_stay_within_the_byte_budget() -> None:
    budget = memory.stats_byte_budget(500)
    ws = WindowedStats(
        retention_s=36_000, max_keys=10**6, max_bytes=budget, clock=lambda: 0.0, future_skew_s=1e10
    )
    tracemalloc.start()
    try:
        records = _hostile(ws, windows=40, keys=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * budget  # what the rows really held, at the worst moment
    assert ws.overflowed > 0  # the budget was reached: new keys went to the all-other row
    rows = ws.snapshot()
    assert any(r["egress_pool"] == OTHER for r in rows)
    assert records == 40 * 100 * 2
    assert 1 < len(ws.windows) < 40  # the oldest published windows were forgotten early


def test_counts_are_kept_when_the_budget_coarsens_them() -> None:
    ws = WindowedStats(
        max_keys=10**6, max_bytes=memory.stats_byte_budget(3), clock=lambda: 0.0, future_skew_s=1e10
    )
    published: dict[tuple[object, ...], int] = {}
    n = 0
    for k in range(200):
        row = ws.row((T0, "other", f"p{k}", f"s{k}", f"t{k}"), 0.0, 1)
        assert row is not None
        row.counts["Bounce"] = row.counts.get("Bounce", 0) + 1
        row.add_gap(f"tpl {k} refused", f"tpl {k} refused " + "y" * 500)
        n += 1
    for r in ws.updates(T0 + 1_000, 0.0):
        published[r["egress_pool"], r["tenant"]] = r["counts"]["Bounce"]
    assert sum(published.values()) == n == 200
    assert published[OVERFLOW[1], OVERFLOW[3]] > 0
    gaps: Counter[str] = Counter()
    for r in ws.snapshot():
        gaps.update({g["template"]: g["count"] for g in r["gaps"]})
    assert sum(gaps.values()) == 200  # every gap counted, new templates as "other" when full
    assert OTHER in gaps


def test_forgotten_windows_give_their_bytes_back() -> None:
    ws = WindowedStats(
        retention_s=60, max_keys=10**6, max_bytes=10**9, clock=lambda: 0.0, future_skew_s=1e10
    )
    _hostile(ws, windows=3, keys=50)
    assert ws.ledger.used > 0
    ws.updates(T0 + 100 * MIN, 0.0)
    assert ws.windows == [] and ws.ledger.used == 0 and len(ws) == 0


def test_partial_counts_charge_nothing() -> None:
    c = Counts()
    c.add_gap("x", "x" * 5000)
    assert c.nbytes == 0 and c.examples["x"] == "x" * EXAMPLE_MAX


class _Held:
    """A chunk held for a stats update: says when it is released."""

    abandoned = False
    released = 0
    topic, partition, first, last, count = "in", 0, 0, 9, 10

    def release(self) -> None:
        self.released += 1


class _Sink:
    """Acknowledges each output as it is handed over; records the sizes of the hand-overs."""

    def __init__(self) -> None:
        self.sends: list[int] = []
        self.keys: list[bytes | None] = []

    async def send(self, outputs: list[Any], chunk: Any, *, seal: bool = True) -> None:
        self.sends.append(len(outputs))
        self.keys += [o.key for o in outputs]
        chunk.add_pending(len(outputs))
        for _ in outputs:
            chunk.ack()
        if seal:
            chunk.seal()


def test_a_large_stats_update_is_encoded_a_slice_at_a_time() -> None:
    ws = WindowedStats(max_keys=10**6, clock=lambda: 0.0, future_skew_s=1e10)
    n = 2 * SEND_SLICE + 7
    for k in range(n):
        row = ws.row((T0, "other", f"p{k}", "s", "t"), 0.0, 1)
        assert row is not None
        row.counts["Bounce"] = 1
    sink = _Sink()
    stats = StatsPublisher(ws, sink, "stats", "w1", BatchAggregator(60))  # type: ignore[arg-type]
    held = _Held()
    stats.hold([held])  # type: ignore[list-item]
    assert asyncio.run(stats.flush()) == n
    assert sink.sends == [SEND_SLICE, SEND_SLICE, 7]
    assert len(set(sink.keys)) == n == stats.rows_published
    assert held.released == 1  # once, after the last slice
