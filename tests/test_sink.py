"""The sink's failure handling, without a broker: what a failed delivery becomes.

The producer is a real confluent-kafka Producer pointed at a closed loopback port (nothing is
ever delivered); a thin wrapper records what the sink hands it. Failures are injected through
the delivery callback, exactly as librdkafka reports them from ``poll()``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from streamer.config import Settings
from streamer.deadletter import (
    DLQ_DETAIL,
    DLQ_REASON,
    DLQ_SOURCE_OFFSETS,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
)
from streamer.kafka.sink import MAX_RETRIES, PRODUCE_FAILED, Sink
from streamer.pipeline import Output
from streamer.worker.offsets import OffsetChunk, OffsetTracker


class Recording:
    """Forwards to the real producer and remembers every produce() call."""

    def __init__(self, producer: Any, refuse: set[str] | None = None) -> None:
        self.producer = producer
        self.produced: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.refuse = refuse or set()  # topics whose produce() raises (refused before queueing)

    def produce(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        """``Producer.produce``'s own signature (the sink passes its arguments by position)."""
        if topic in self.refuse:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
        self.produced.append((topic, key, value, list(headers or ())))
        self.producer.produce(
            topic, value, key, partition, callback, on_delivery, timestamp, headers
        )

    def __len__(self) -> int:
        return len(self.producer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


@pytest.fixture
def sink(tmp_path: Path) -> Sink:
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    retries: list[str] = []
    s = Sink(
        settings,
        "127.0.0.1:9",
        client_id="t",
        dlq_topic="in.dlq",
        on_retry=retries.append,
        log_level=0,
    )
    s.producer = Recording(s.producer)  # type: ignore[assignment]
    s.retries = retries  # type: ignore[attr-defined]
    return s


def _chunk(outputs: int) -> OffsetChunk:
    tr = OffsetTracker()
    tr.assign([("in", 2)])
    chunk = tr.track("in", 2, 40, 49, 10)
    assert chunk is not None
    chunk.add_pending(outputs)
    chunk.seal()
    return chunk


def _fail(sink: Sink, chunk: OffsetChunk, err: KafkaError, attempt: int = 0, **msg: Any) -> None:
    fields = {"topic": "out", "key": b"k", "value": b"v", "headers": [("h", b"1")], **msg}
    sink.callback(chunk, attempt)(err, Message(**fields))
    sink.poll(0)


def test_acknowledgement_counts_the_chunk_down(sink: Sink) -> None:
    chunk = _chunk(2)
    cb = sink.callback(chunk)
    cb(None, Message(topic="out"))
    assert chunk.pending == 1 and not chunk.done
    cb(None, Message(topic="out"))
    assert chunk.done


def test_a_failure_mid_chunk_leaves_the_commit_before_its_chunk(sink: Sink) -> None:
    """Reports of later outputs (and of later chunks) never move the commit past a failed one."""
    tr = OffsetTracker()
    tr.assign([("in", 2)])
    chunks = [tr.track("in", 2, first, first + 2, 3) for first in (0, 3, 6)]
    reports = []
    for chunk in chunks:
        assert chunk is not None
        chunk.add_pending(3)
        chunk.seal()
        reports.append(sink.callback(chunk))
    ok, failed = Message(topic="out"), KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True)
    for report in reports[0:1] * 3:  # the first chunk is delivered
        report(None, ok)
    reports[1](None, ok)
    reports[1](failed, Message(topic="out", key=b"k", value=b"v"))  # its second output fails
    reports[1](None, ok)
    for report in reports[2:] * 3:  # the next chunk is delivered
        report(None, ok)
    sink.poll(0)  # the failure is produced again: still pending
    assert [c.done for c in chunks if c is not None] == [True, False, True]
    assert tr.committable() == {("in", 2): 3}  # the offset before the failed chunk
    retry: Recording = sink.producer  # type: ignore[assignment]
    assert [(p[0], p[1], p[2]) for p in retry.produced] == [("out", b"k", b"v")]


def test_failures_reported_across_polls_are_each_produced_again(sink: Sink) -> None:
    # one chunk's outputs can fail over several polls (a broker away longer than the message
    # timeout): a failure reported after the first was handled must not be forgotten
    chunk = _chunk(2)
    report = sink.callback(chunk)
    err = KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True)
    report(err, Message(topic="out", key=b"a", value=b"1"))
    sink.poll(0)
    report(err, Message(topic="out", key=b"b", value=b"2"))
    sink.poll(0)
    producer: Recording = sink.producer  # type: ignore[assignment]
    assert [(p[0], p[1]) for p in producer.produced] == [("out", b"a"), ("out", b"b")]
    assert sink.retries == ["retry", "retry"]  # type: ignore[attr-defined]


def test_transient_failure_is_produced_again_to_the_same_topic(sink: Sink) -> None:
    chunk = _chunk(1)
    _fail(sink, chunk, KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True))
    producer: Recording = sink.producer  # type: ignore[assignment]
    assert producer.produced == [("out", b"k", b"v", [("h", b"1")])]
    assert sink.retries == ["retry"]  # type: ignore[attr-defined]
    assert chunk.pending == 1 and not chunk.done  # the copy now stands for the failed output


def test_failure_after_max_retries_goes_to_the_dlq_with_its_source(sink: Sink) -> None:
    chunk = _chunk(1)
    err = KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True)
    _fail(sink, chunk, err, attempt=MAX_RETRIES)
    producer: Recording = sink.producer  # type: ignore[assignment]
    ((topic, key, value, headers),) = producer.produced
    assert (topic, key, value) == ("in.dlq", b"k", b"v")
    h = dict(headers)
    assert h[DLQ_REASON] == PRODUCE_FAILED.encode()
    assert h[DLQ_SOURCE_TOPIC] == b"in" and h[DLQ_SOURCE_PARTITION] == b"2"
    assert h[DLQ_SOURCE_OFFSETS] == b"40-49"
    assert h[DLQ_DETAIL].startswith(b"out: ")
    assert h["h"] == b"1"  # original headers kept
    assert sink.retries == ["dlq"]  # type: ignore[attr-defined]


def test_permanent_failure_goes_to_the_dlq_at_once(sink: Sink) -> None:
    chunk = _chunk(1)
    _fail(sink, chunk, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert sink.retries == ["dlq"]  # type: ignore[attr-defined]


def test_dead_letter_refused_for_good_lands_without_its_value(sink: Sink) -> None:
    chunk = _chunk(1)
    dlq_headers = [(DLQ_REASON, b"not-json"), (DLQ_SOURCE_TOPIC, b"in")]
    err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    _fail(sink, chunk, err, topic="in.dlq", value=b"x" * 100, headers=dlq_headers)
    producer: Recording = sink.producer  # type: ignore[assignment]
    ((topic, _key, value, headers),) = producer.produced
    assert topic == "in.dlq" and value is None
    assert dict(headers)[DLQ_REASON] == b"not-json"
    assert b"value omitted (100 bytes)" in dict(headers)[DLQ_DETAIL]
    assert sink.retries == ["dlq-without-value"]  # type: ignore[attr-defined]


def test_dead_letter_failing_transiently_is_retried_forever(sink: Sink) -> None:
    chunk = _chunk(1)
    dlq_headers = [(DLQ_REASON, b"not-json")]
    err = KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True)
    _fail(sink, chunk, err, attempt=MAX_RETRIES + 10, topic="in.dlq", headers=dlq_headers)
    producer: Recording = sink.producer  # type: ignore[assignment]
    assert [p[0] for p in producer.produced] == ["in.dlq"]
    assert sink.retries == ["dlq-retry"]  # type: ignore[attr-defined]


def test_fatal_error_is_kept_for_the_worker_and_nothing_is_produced(sink: Sink) -> None:
    chunk = _chunk(1)
    _fail(sink, chunk, KafkaError(KafkaError._FATAL, "sequence gap", fatal=True))
    producer: Recording = sink.producer  # type: ignore[assignment]
    assert sink.fatal is not None and producer.produced == []
    assert not chunk.done


def test_failures_of_an_abandoned_chunk_are_dropped(sink: Sink) -> None:
    chunk = _chunk(1)
    chunk.abandoned = True  # its partition was revoked: the next owner consumes it again
    _fail(sink, chunk, KafkaError(KafkaError._MSG_TIMED_OUT, retriable=True))
    producer: Recording = sink.producer  # type: ignore[assignment]
    assert producer.produced == [] and sink.retries == []  # type: ignore[attr-defined]


def test_output_refused_before_queueing_is_dead_lettered_on_the_next_poll(sink: Sink) -> None:
    sink.producer.refuse = {"out"}  # type: ignore[attr-defined]
    tr = OffsetTracker()
    tr.assign([("in", 2)])
    chunk = tr.track("in", 2, 0, 1, 2)
    assert chunk is not None
    outputs = [Output("out", b"a", b"1", None), Output("out", b"b", b"2", None)]
    asyncio.run(sink.send(outputs, chunk))
    assert chunk.pending == 2 and chunk.sealed and sink.produced == 2
    sink.poll(0)
    producer: Recording = sink.producer  # type: ignore[assignment]
    assert [(p[0], p[1]) for p in producer.produced] == [("in.dlq", b"a"), ("in.dlq", b"b")]
    assert sink.queued >= 2 and sink  # queued in librdkafka; a sink is never falsy


class _Queue:
    """Stands in for the producer's queue length only (what the delivery timing reads)."""

    def __init__(self) -> None:
        self.length = 0

    def poll(self, _timeout: float = 0.0) -> int:
        return 0

    def __len__(self) -> int:
        return self.length


def test_delivery_time_is_observed_per_batch_once_its_outputs_left_the_queue(
    tmp_path: Path,
) -> None:
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    seen: list[float] = []
    sink = Sink(settings, "127.0.0.1:9", client_id="t", dlq_topic="d", on_delivered=seen.append)
    queue = _Queue()
    sink.producer = queue  # type: ignore[assignment]
    sink.produced, queue.length = 3, 3
    sink.mark_handed()  # batch 1: outputs 1..3
    sink.produced, queue.length = 5, 5
    sink.mark_handed()  # batch 2: outputs 4..5
    sink.poll()
    assert seen == []  # nothing acknowledged yet
    queue.length = 2  # three went through: batch 1 is done, batch 2 is not
    sink.poll()
    assert len(seen) == 1 and seen[0] >= 0
    queue.length = 0
    sink.poll()
    assert len(seen) == 2
    sink.poll()
    assert len(seen) == 2  # each batch is observed once
