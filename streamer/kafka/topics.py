"""Reading a topic to its current end: what the tools and ``streamer report`` see of a topic.

Reads ``read_committed`` (librdkafka's default): records of aborted transactions are not
returned. A partition is done when the consumer's position reached the high watermark it had
when reading began, which also steps over transaction markers (they occupy offsets but are
never delivered). The consumer joins no group's work: it assigns the partitions itself.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamer.config import Settings
from streamer.deadletter import Headers
from streamer.kafka.clients import consumer_config


class ReadError(Exception):
    """The topic could not be read to its end; the message says why."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One record read back from a topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the broker's append time on topics created with LogAppendTime
    key: bytes | None
    value: bytes | None
    headers: Headers

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v if isinstance(v, bytes) else None
        return None


def read_topic(
    settings: Settings, bootstrap: str, topic: str, timeout: float = 120.0
) -> list[TopicRecord]:
    """Every committed record of ``topic`` present now (see the module doc)."""
    conf = consumer_config(
        settings,
        bootstrap,
        group_id=f"streamer-read-{uuid.uuid4().hex[:8]}",
        **{"fetch.max.bytes": 52_428_800, "isolation.level": "read_committed"},
    )
    consumer = Consumer(conf)
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise ReadError(f"topic {topic}: not found on {bootstrap}")
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in md.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        consumer.assign(starts)
        out: list[TopicRecord] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise ReadError(f"reading {topic} did not finish within {timeout:.0f}s")
            for msg in consumer.consume(5000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ReadError(f"reading {topic}: {err.str()}")
                out.append(
                    TopicRecord(
                        topic,
                        msg.partition() or 0,
                        msg.offset() or 0,
                        msg.timestamp()[1],
                        msg.key(),
                        msg.value(),
                        cast(Headers, msg.headers() or []),
                    )
                )
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    done.add(tp.partition)
        return out
    finally:
        consumer.close()
