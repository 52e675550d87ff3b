"""``streamer tail``: follow a topic and hand each record on as one JSON line.

A look at what comes out, not a member of anything: the consumer is *assigned* every partition
of the topic (no group join, no rebalance of the workers' group, nothing committed), starting at
the end or, with ``from_beginning``, at the start. Connection settings (TLS, SASL,
``kafka_extra``) are the worker's: ``streamer.kafka.clients.consumer_config``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from streamer.config import Settings
from streamer.kafka.clients import consumer_config

POLL_SECONDS = 0.2


class TailError(Exception):
    """The topic cannot be followed; the message says why in one line."""


@dataclass
class TailResult:
    printed: int = 0
    seen: int = 0


def record_label(record: Any) -> str | None:
    """The classification of an output record (``bounce_classification``), if any."""
    if not isinstance(record, dict):
        return None
    label = record.get("bounce_classification")
    if label is None and isinstance(record.get("classification"), dict):
        label = record["classification"].get("label")
    return label if isinstance(label, str) else None


def as_json_line(value: bytes | None) -> tuple[bytes, Any]:
    """(one JSON line, decoded value): a JSON value compacted; anything else as a JSON string."""
    if value is None:
        return b"null", None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        text = value.decode("utf-8", errors="replace")
        return orjson.dumps(text), text
    return orjson.dumps(decoded), decoded


def _assign(consumer: Consumer, topic: str, from_beginning: bool) -> None:
    md = consumer.list_topics(topic, timeout=10)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise TailError(f"topic {topic!r} does not exist (create it: streamer topics create)")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in sorted(meta.partitions)])


def tail(
    settings: Settings,
    bootstrap: str,
    topic: str,
    write: Callable[[bytes], None],
    *,
    from_beginning: bool = False,
    max_records: int | None = None,
    timeout: float | None = None,
    labels: Iterable[str] = (),
) -> TailResult:
    """Write each record of ``topic`` (``labels``: only those) until ``max_records`` were
    written or ``timeout`` seconds passed (None: until interrupted)."""
    wanted = set(labels)
    conf = consumer_config(
        settings,
        bootstrap,
        group_id=f"streamer-tail-{os.getpid()}",
        **{"enable.auto.offset.store": False, "log_level": 3},
    )
    consumer = Consumer(conf)
    result = TailResult()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        _assign(consumer, topic, from_beginning)
        while max_records is None or result.printed < max_records:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            msg = consumer.poll(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                raise TailError(f"{topic}: {err.str()}")
            result.seen += 1
            line, decoded = as_json_line(msg.value())
            if wanted and record_label(decoded) not in wanted:
                continue
            write(line + b"\n")
            result.printed += 1
    except KafkaException as exc:
        raise TailError(f"{topic}: {exc.args[0]}") from None
    finally:
        consumer.close()
    return result
