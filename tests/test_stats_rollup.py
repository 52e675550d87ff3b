"""The stats rollup's fold: the partials the worker's publisher really writes, folded in any order,
any number of times, across a restore, sum per key to exactly the records counted; retirement
and the byte bound keep the stage's memory bounded without ever rewriting a public row."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.rollup import (
    INSTANCE_BYTES,
    KEY_BYTES,
    RETIRED_KEY,
    BadPartial,
    Fold,
    RollupStore,
    decode_partial,
    encode_state,
    public_value,
    summed_row,
)
from streamer.analytics.windows import WindowedStats, row_key
from streamer.config import Settings
from streamer.worker.rollup import RollupStage
from streamer.worker.stats import StatsPublisher

T0 = 1_790_000_040_000  # a minute boundary, epoch ms
MIN = 60_000
BIG = 10**12  # retention and bytes that retire nothing


class _Sink:
    """Takes the publisher's outputs as the broker would, acknowledging each at once."""

    def __init__(self) -> None:
        self.outputs: list[tuple[bytes, bytes]] = []

    async def send(self, outputs: list[Any], chunk: Any, *, seal: bool = True) -> None:
        chunk.add_pending(len(outputs))
        for o in outputs:
            self.outputs.append((o.key, o.value))
            chunk.ack()
        if seal:
            chunk.seal()


#: A record of a session: event time in seconds after T0, its kind (a record type, or a
#: Feedback-Type for a feedback report), whether a flush follows; and its provider and tenant.
Rec = tuple[int, str, bool] | tuple[int, str, bool, str, str]
#: Feedback-Types as the classifier labels and categorises their reports.
FEEDBACK = {
    "abuse": ("FeedbackAbuse", "complaint"),
    "not-spam": ("FeedbackNotSpam", "undetermined"),
}


def _session_partials(
    name: str, records: list[Rec], window_s: int = 60, *, rates: bool = False
) -> list[tuple[bytes, bytes]]:
    """What one worker session publishes to the partials topic for these records (google's,
    tenant acme's unless they say), through the real publisher."""
    wall = T0 / 1000 + 600
    aggregator = BatchAggregator(window_s, clock=lambda: wall)
    windows = WindowedStats(window_s=window_s, grace_s=0, retention_s=5, max_windows=2, rates=rates)
    windows.clock = lambda: wall
    sink = _Sink()
    publisher = StatsPublisher(windows, sink, "p", name, aggregator)  # type: ignore[arg-type]
    for t, kind, flush, *where in records:
        provider, tenant = where or ("google", "acme")
        ts = T0 // 1000 + t
        if kind in FEEDBACK:  # a report names no pool or source, its tenant in the trace
            trace = {"recipient": "u@example.com", "tenant": tenant}
            report = {"feedback_type": kind, "supplemental_trace": trace}
            record = {"type": "Feedback", "timestamp": ts, "feedback_report": report}
            aggregator.add(record, "Feedback", *FEEDBACK[kind], provider, None)
        else:
            record = {"type": kind, "timestamp": ts, "meta": {"tenant": tenant}, "egress_pool": "p"}
            aggregator.add(record, kind, None, None, provider, None)
        if flush:
            asyncio.run(publisher.flush())
    asyncio.run(publisher.flush())  # the graceful stop's last update
    return sink.outputs


def _stage(
    store: RollupStore, batch: list[tuple[bytes, bytes]], public: dict[bytes, bytes]
) -> None:
    """What the stage does with a batch: fold, then write the changed keys' sums."""
    changed = {
        key for key, value in batch if store.apply(0, key, decode_partial(value)) is Fold.CHANGED
    }
    for key in changed:
        public[key] = public_value(store.keys[key])


@st.composite
def sessions(draw: st.DrawFn) -> list[list[tuple[int, str, bool]]]:
    """Records of up to 3 sessions (restarts, rebalances, other workers), any event times over
    four windows (late records, windows the worker forgot and counted again)."""
    record = st.tuples(
        st.integers(0, 239), st.sampled_from(["Bounce", "Delivery", "Feedback"]), st.booleans()
    )
    return draw(st.lists(st.lists(record, min_size=1, max_size=40), min_size=1, max_size=3))


def _fold_shuffled(
    partials: list[tuple[bytes, bytes]], rnd: random.Random, batch: int
) -> dict[bytes, bytes]:
    """The public values after every partial was read once or twice, shuffled (another
    producer's, a retry, a stage's replay after a crash), ``batch`` at a time, the stage
    restored from its changelog halfway."""
    stream = partials + rnd.sample(partials, len(partials) // 2)
    rnd.shuffle(stream)
    store = RollupStore(BIG, BIG)
    public: dict[bytes, bytes] = {}
    half = len(stream) // 2
    for i in range(0, len(stream), batch):
        if i <= half < i + batch:  # a restart: the successor reads the changelog back
            changelog = {key: encode_state(state) for key, state in store.keys.items()}
            store = RollupStore(BIG, BIG)
            for key, value in changelog.items():
                store.restore(0, key, value)
        _stage(store, stream[i : i + batch], public)
    return public


@settings(max_examples=150, deadline=None)
@given(sessions(), st.randoms(use_true_random=False), st.integers(1, 30))
def test_the_latest_row_per_key_is_exactly_what_was_counted_whatever_the_order(
    records: list[list[tuple[int, str, bool]]], rnd: random.Random, batch: int
) -> None:
    """Every partial read once or twice, shuffled (another producer's, a retry, a stage's
    replay after a crash), the stage restored from its changelog halfway: the latest public
    row of each window counts exactly that window's records."""
    partials = [p for n, s in enumerate(records) for p in _session_partials(f"w{n}", s)]
    public = _fold_shuffled(partials, rnd, batch)
    truth: dict[int, Counter[str]] = {}
    for s in records:
        for t, rtype, _ in s:
            start = T0 + t * 1000 // MIN * MIN
            truth.setdefault(start, Counter())[rtype] += 1
    rows = {key: orjson.loads(v) for key, v in public.items()}
    counted: dict[int, Counter[str]] = {}  # a window's rows summed (a report has no tenant)
    for r in rows.values():
        counted.setdefault(r["window_start"], Counter()).update(r["counts"])
    assert counted == truth
    assert all(key == row_key(r) for key, r in rows.items())  # the public key: window + dims
    assert all(set(r).isdisjoint({"session", "serial", "seq"}) for r in rows.values())


@st.composite
def sessions_with_complaints(draw: st.DrawFn) -> list[list[Rec]]:
    """Deliveries, bounces, abuse and not-spam reports of two providers and two tenants, in up
    to 3 sessions, over four windows."""
    record = st.tuples(
        st.integers(0, 239),
        st.sampled_from(["Delivery", "Bounce", "abuse", "not-spam"]),
        st.booleans(),
        st.sampled_from(["google", "yahoo"]),
        st.sampled_from(["acme", "globex"]),
    )
    return draw(st.lists(st.lists(record, min_size=1, max_size=40), min_size=1, max_size=3))


@settings(max_examples=100, deadline=None)
@given(sessions_with_complaints(), st.randoms(use_true_random=False), st.integers(1, 30))
def test_the_latest_rate_row_per_provider_and_tenant_is_exactly_the_windows_complaint_rate(
    records: list[list[Rec]], rnd: random.Random, batch: int
) -> None:
    """The rate partials the real publisher derives, folded like the stats partials (shuffled,
    read twice, across a restore): per window and provider, and per window and tenant, the
    latest rate row holds the Delivery records and the complaint reports (not-spam is none)
    of every pool, source and tenant (provider), and their quotient."""
    partials = [p for n, s in enumerate(records) for p in _session_partials(f"w{n}", s, rates=True)]
    public = _fold_shuffled(partials, rnd, batch)
    truth: dict[tuple[int, str, str], list[int]] = {}  # [delivered, abuse reports]
    for s in records:
        for t, kind, _, provider, tenant in s:  # type: ignore[misc]
            start = T0 + t * 1000 // MIN * MIN
            for key in ((start, "provider", provider), (start, "tenant", tenant)):
                counted = truth.setdefault(key, [0, 0])
                counted[0] += kind == "Delivery"
                counted[1] += kind == "abuse"
    expected = {
        orjson.dumps(list(key)): {
            "window_start": key[0],
            "window_end": key[0] + MIN,
            "dimension": key[1],
            "value": key[2],
            "delivered": delivered,
            "complaints": {"abuse": abuse} if abuse else {},
            "complained": abuse,
            "complaint_rate": abuse / delivered if delivered else None,
        }
        for key, (delivered, abuse) in truth.items()
        if delivered or abuse
    }
    rates = {k: orjson.loads(v) for k, v in public.items() if len(orjson.loads(k)) == 3}
    assert {k: {f: v for f, v in r.items() if f != "final"} for k, r in rates.items()} == expected
    assert all(key == row_key(r) for key, r in rates.items())
    # and the stats rows of the same run count the same records per provider and tenant
    rows = [orjson.loads(v) for k, v in public.items() if len(orjson.loads(k)) == 5]
    for rate in rates.values():
        at, dim = rate["window_start"], rate["dimension"]
        mine = [r for r in rows if r["window_start"] == at and r[dim] == rate["value"]]
        assert sum(r["counts"].get("Delivery", 0) for r in mine) == rate["delivered"]
        assert sum(sum(r["complaints"].values()) for r in mine) == rate["complained"]


def _partial(session: str, serial: int, seq: int, start: int = T0, **counts: Any) -> bytes:
    row = {
        "window_start": start,
        "window_end": start + MIN,
        "provider": "google",
        "egress_pool": "p",
        "egress_source": "s",
        "tenant": "acme",
        **counts,
        "final": False,
        "serial": serial,
        "session": session,
        "seq": seq,
    }
    return orjson.dumps(row)


def _key(start: int = T0) -> bytes:
    return orjson.dumps([start, "google", "p", "s", "acme"])


def test_a_partial_replaces_its_instances_earlier_one_and_adds_to_the_others() -> None:
    store = RollupStore(BIG, BIG)
    fold = [
        store.apply(0, _key(), decode_partial(v))
        for v in (
            _partial("a/1", 1, 1, counts={"Bounce": 2}),
            _partial("a/1", 1, 3, counts={"Bounce": 5}),
            _partial("a/1", 1, 2, counts={"Bounce": 4}),  # older: superseded
            _partial("a/1", 2, 1, counts={"Bounce": 1}),  # the window counted again
            _partial("b/1", 1, 7, counts={"Delivery": 3}, complaints={"abuse": 1}),
            _partial("b/1", 1, 7, counts={"Delivery": 3}, complaints={"abuse": 1}),  # again
        )
    ]
    assert fold == [Fold.CHANGED, Fold.CHANGED, Fold.NONE, Fold.CHANGED, Fold.CHANGED, Fold.NONE]
    row = orjson.loads(public_value(store.keys[_key()]))
    assert row == {
        "window_start": T0,
        "window_end": T0 + MIN,
        "provider": "google",
        "egress_pool": "p",
        "egress_source": "s",
        "tenant": "acme",
        "counts": {"Bounce": 6, "Delivery": 3},
        "complaints": {"abuse": 1},  # any counter map is summed, whatever its name
        "gaps": [],
        "final": False,
    }


def test_gap_tops_merge_and_final_is_any_instances() -> None:
    one = orjson.loads(_partial("a", 1, 1))
    one.update(final=True, gaps=[{"template": "x", "count": 2, "example": "x 1"}])
    two = orjson.loads(_partial("b", 1, 1))
    two["gaps"] = [
        {"template": "y", "count": 4, "example": "y 1"},
        {"template": "x", "count": 3, "example": "x 2"},
    ]
    row = summed_row([orjson.dumps(one), orjson.dumps(two)])
    assert row["final"] is True
    assert row["gaps"] == [
        {"template": "x", "count": 5, "example": "x 1"},
        {"template": "y", "count": 4, "example": "y 1"},
    ]


def test_windows_past_the_retention_retire_and_their_late_partials_are_counted_not_folded() -> None:
    store = RollupStore(retention_ms=2 * MIN, max_bytes=BIG, clock=lambda: T0 / 1000)
    for i in range(4):
        store.apply(1, _key(T0 + i * MIN), decode_partial(_partial("a", i, 1, T0 + i * MIN)))
    # event time reached T0 + 4 min: the window that ended at T0 + 1 min is 3 min old
    assert store.retire() == {
        (1, _key(T0)): None,
        (1, RETIRED_KEY): orjson.dumps({"below": T0 + 2 * MIN}),
    }
    assert sorted(orjson.loads(k)[0] for k in store.keys) == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    late = decode_partial(_partial("b", 1, 1, T0))
    assert store.apply(1, _key(T0), late) is Fold.LATE and store.late == 1
    assert store.apply(2, _key(T0), late) is Fold.CHANGED  # another partition retired nothing
    # a successor restores the mark with the keys: the retired window stays retired
    successor = RollupStore(retention_ms=2 * MIN, max_bytes=BIG, clock=lambda: T0 / 1000)
    successor.restore(1, RETIRED_KEY, orjson.dumps({"below": T0 + 2 * MIN}))
    assert successor.apply(1, _key(T0), late) is Fold.LATE
    newer = decode_partial(_partial("b", 1, 1, T0 + 2 * MIN))
    assert successor.apply(1, _key(T0 + 2 * MIN), newer) is Fold.CHANGED


def test_the_byte_bound_retires_the_oldest_windows_first() -> None:
    value = _partial("a", 1, 1)
    per_key = KEY_BYTES + len(_key()) + INSTANCE_BYTES + len(value)
    store = RollupStore(retention_ms=BIG, max_bytes=3 * per_key, clock=lambda: T0 / 1000)
    for i in range(5):
        store.apply(0, _key(T0 + i * MIN), decode_partial(_partial("a", 1, 1, T0 + i * MIN)))
    assert store.nbytes == 5 * per_key
    writes = store.retire()
    assert [orjson.loads(k)[0] for (_, k), v in writes.items() if v is None] == [T0, T0 + MIN]
    assert store.nbytes == 3 * per_key and store.evicted == 2 and len(store) == 3
    assert store.retired_below == {0: T0 + 2 * MIN + 1}


def test_a_partial_that_does_not_decode_is_refused_with_a_reason() -> None:
    for value, why in (
        (b"{", "undecodable stats partial"),
        (orjson.dumps({"window_start": 1}), "undecodable stats partial: 'session'"),
        (_partial("a", 1, 1).replace(b'"seq":1', b'"seq":"1"'), "stats partial with odd fields"),
    ):
        try:
            decode_partial(value)
        except BadPartial as exc:
            assert str(exc).startswith(why), exc
        else:
            raise AssertionError(f"{value!r} decoded")


def test_memory_per_key_measured() -> None:
    """The stage's bytes per key (two instances of a typical partial), measured with
    tracemalloc, stay within what the store charges and the budget assumes."""
    value = _partial(
        "host-1/3f2a9c1e",
        1,
        1,
        counts={"Bounce": 3, "Delivery": 40},
        labels={"InvalidRecipient": 3},
        categories={"hard": 3},
    )
    keys = [_key(T0 + i * MIN) for i in range(2000)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    store = RollupStore(BIG, BIG)
    for i, key in enumerate(keys):
        for session in ("host-1/3f2a9c1e", "host-2/77aa01bc"):
            doc = value.replace(b'"host-1/3f2a9c1e"', f'"{session}"'.encode())
            start = T0 + i * MIN
            doc = doc.replace(str(T0).encode(), str(start).encode(), 1)
            store.apply(0, key, decode_partial(doc))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_key = held / len(keys)
    charged = store.nbytes / len(keys)
    print(f"\nrollup stage: {per_key:.0f} B per key (2 instances), charged {charged:.0f}")
    assert per_key <= charged * 1.5


def test_the_stage_writes_each_changed_key_once_per_batch_with_its_sum(tmp_path: Path) -> None:
    """The stage's own fold (real partials as messages, shuffled and replayed, 16 at a time)
    writes what the fold's reference gives: the sum of each changed key, once per batch."""
    partials = _session_partials("w1/aa", [(t, "Delivery", t % 50 == 0) for t in range(0, 240, 3)])
    partials += _session_partials("w2/bb", [(t, "Bounce", t % 70 == 0) for t in range(1, 240, 4)])
    rnd = random.Random(7)
    stream = partials + rnd.sample(partials, len(partials) // 2)
    rnd.shuffle(stream)
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    stage = RollupStage(settings, "127.0.0.1:9", worker_id="t")
    try:
        stage.owned = {0}
        store = RollupStore(BIG, BIG)
        expected: dict[bytes, bytes] = {}
        written: dict[bytes, bytes | None] = {}
        for i in range(0, len(stream), 16):
            batch = stream[i : i + 16]
            messages = [Message(topic="p", partition=0, key=k, value=v) for k, v in batch]
            written.update(stage.fold(messages).public)
            _stage(store, batch, expected)
        assert written == expected and len(expected) == 4  # four windows, one row each
    finally:
        stage.consumer.close()
