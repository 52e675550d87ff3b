"""Delivery batches: a batch's deliveries as one events record per partition, placed where
Kafka's own partitioner puts their recipients (on the real broker), the same from both record
paths."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from streamer import native
from streamer.analytics.delivery_batches import DELIVERIES, DeliveryBatches, murmur2, partition_of
from streamer.config import Settings
from streamer.kafka.sink import Sink
from streamer.pipeline import Output
from streamer.worker.offsets import OffsetTracker
from tests.test_native_path import assert_same, pipelines

#: Kafka's ``UtilsTest.testMurmur2`` vectors.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "hashed"), JAVA_MURMUR2.items())
def test_murmur2_hashes_as_the_java_client(key: bytes, hashed: int) -> None:
    assert murmur2(key) == hashed


def test_a_partition_comes_from_the_positive_hash() -> None:
    assert partition_of(b"foobar", 50) == (-790332482 & 0x7FFFFFFF) % 50 == 16
    assert partition_of(b"foobar", 1) == 0


@given(st.binary(min_size=1, max_size=80), st.integers(1, 5000))
def test_the_native_path_places_keys_as_the_reference(key: bytes, partitions: int) -> None:
    assert native.module().partition_of(key, partitions) == partition_of(key, partitions)


def test_each_recipient_once_with_its_latest_time_sorted_and_keyed_by_the_first() -> None:
    batches = DeliveryBatches(3)
    for key, t in [(b"zed@x.example", 5), (b"amy@x.example", 9), (b"zed@x.example", 7)]:
        batches.add(key, t)
    batches.add(b"zed@x.example", 6)  # older than the latest: changes nothing
    records = batches.records()
    assert [k for k, _ in records] == sorted(
        (k for k, _ in records), key=lambda k: partition_of(k, 3)
    )
    entries = {k: orjson.loads(v) for k, v in records}
    for key, doc in entries.items():
        assert doc["k"] == DELIVERIES and doc["n"] == 3
        assert key.decode() == doc["d"][0][0]  # keyed by its first recipient
        assert doc["d"] == sorted(doc["d"])
        assert {partition_of(r.encode(), 3) for r, _ in doc["d"]} == {partition_of(key, 3)}
    got = {r: t for doc in entries.values() for r, t in doc["d"]}
    assert got == {"zed@x.example": 7, "amy@x.example": 9}
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        DeliveryBatches(0)


def _delivery(recipient: Any, ms: int) -> bytes:
    seconds, milli = divmod(ms, 1000)
    stamp = f"2026-01-01T10:00:{seconds:02d}.{milli:03d}Z"
    return orjson.dumps({"type": "Delivery", "recipient": recipient, "event_time": stamp})


def test_a_batch_s_deliveries_come_first_from_both_paths() -> None:
    """Deliveries decided natively and one handed back (a non-ASCII recipient: Python's way)
    end in the same records, before the batch's other outputs, which keep their order."""
    raws = [
        _delivery("A@gmail.com", 1_000),
        orjson.dumps({"type": "Bounce", "recipient": "b@x.example", "response": {"code": 451}}),
        _delivery(["c@outlook.com", " <D@Yahoo.com> "], 2_000),
        _delivery("é@gmail.com", 3_000),
        _delivery("a@GMAIL.com", 500),  # older than the first: the latest time stays
    ]
    reference, native_pipeline = pair = pipelines(analytics=True, events_partitions=4)
    got = assert_same(raws, pair)
    placed = got[: len(got) - len(raws)]  # first: the stage folds them before the OOBs
    assert [o.topic for o in got[len(placed) :]] == ["out"] * len(raws)
    assert {o.topic for o in placed} == {"supp"} and all(o.headers is None for o in placed)
    deliveries = {r: t for o in placed for r, t in orjson.loads(o.value or b"")["d"]}
    base = 1_767_261_600_000
    assert deliveries == {
        "a@gmail.com": base + 1_000,
        "c@outlook.com": base + 2_000,
        "d@yahoo.com": base + 2_000,
        "é@gmail.com": base + 3_000,
    }
    assert native_pipeline.native is not None
    answers = native_pipeline.native.decide(raws)
    assert answers[3] is None  # handed back
    assert answers[0] is not None and answers[2] is not None
    # without partitions known, an event per delivery in its record's place (as before)
    reference.events_partitions = native_pipeline.events_partitions = 0
    got = assert_same(raws, pair)
    assert [o.topic for o in got].count("supp") == 5


def test_the_sink_s_partitioner_places_keys_where_the_pipeline_does(
    kafka_bootstrap: str, kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    """On the real broker: records produced by the worker's sink (librdkafka's
    ``murmur2_random``) land in the partitions :func:`partition_of` names."""
    topic = new_topic(7)
    keys = [f"user{n}@example{n % 13}.com".encode() for n in range(300)] + ["é@x.example".encode()]
    sink = Sink(kafka_settings, kafka_bootstrap, client_id="placement", dlq_topic=topic)
    tracker = OffsetTracker()
    tracker.assign([("in", 0)])
    chunk = tracker.track("in", 0, 0, len(keys) - 1, len(keys))
    assert chunk is not None
    outputs = [Output(topic, key, b"{}", None) for key in keys]
    sink._produce_from(outputs, 0, chunk, sink.callback(chunk))
    assert sink.close(30.0) == 0
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "placement", "enable.auto.commit": False}
    )
    landed: dict[bytes, int] = {}
    deadline = time.monotonic() + 60
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(7)])
        while len(landed) < len(keys) and time.monotonic() < deadline:
            for m in consumer.consume(500, 10.0) or []:
                assert m.error() is None
                landed[m.key() or b""] = m.partition() or 0
    finally:
        consumer.close()
    assert landed == {key: partition_of(key, 7) for key in keys}
    assert len(set(landed.values())) == 7


def test_the_worker_reads_the_events_partitions_or_sends_an_event_per_delivery(
    kafka_bootstrap: str, new_topic: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    from streamer.worker.stream import _partitions

    caplog.set_level(logging.WARNING, "streamer.worker")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    assert _partitions(producer, new_topic(5)) == 5
    assert not caplog.records
    assert _partitions(producer, "t.no-such-topic-here") == 0
    unreachable = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    assert _partitions(unreachable, "anything", timeout=0.5) == 0
    warned = [(r.getMessage(), r.streamer_fields) for r in caplog.records]  # type: ignore[attr-defined]
    assert [m for m, _ in warned] == ["events topic unknown: an event per delivery"] * 2
    assert "UNKNOWN_TOPIC" in warned[0][1]["error"]
    assert "Failed to get metadata" in warned[1][1]["error"]
