"""Replay a JSONL file into a topic with a batching confluent-kafka producer.

Each non-blank line is sent as one message value, byte for byte (malformed lines too: that is how
the dead-letter path is exercised). The message key is the record's ``id`` field (KumoMTA's
message id) when the line is a JSON object that has one, so every event of one message lands in
one partition, in order; ``key_field=None`` sends no keys.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from tqdm import tqdm

from streamer.config import Settings
from streamer.inputs import Input, InputError, expand_inputs, is_plain_file, read_lines
from streamer.kafka.clients import admin_client, producer
from streamer.text import counted


class ProduceError(Exception):
    """Producing could not start (missing file or topic); the message says why."""


class TokenBucket:
    """Blocks ``take`` so that on average at most ``rate`` tokens pass per second.

    ``burst`` tokens may pass at once after an idle spell; any ``n`` seconds let through at most
    ``burst + rate * n`` tokens.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate / 20)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    def take(self, n: float = 1.0) -> None:
        while True:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= n - 1e-9:  # tolerance: float rounding must not spin forever
                self._tokens = max(0.0, self._tokens - n)
                return
            self._sleep((n - self._tokens) / self.rate)


@dataclass
class ProduceResult:
    topic: str
    lines: int = 0  # non-blank lines read
    delivered: int = 0  # acknowledged by the broker
    failed: int = 0  # refused, failed delivery, or still undelivered after the final flush
    keyed: int = 0  # messages sent with a key
    bytes: int = 0  # value bytes sent
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = (
            f"{counted(self.lines, 'record')} ({_human_bytes(self.bytes)}, {self.keyed} keyed) to "
            f"{self.topic} in {self.seconds:.2f}s ({self.rate:,.0f} records/s): "
            f"{self.delivered} delivered, {self.failed} failed"
        )
        for reason, count in self.errors.most_common(5):
            text += f"\n  {count} × {reason}"
        return text


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def record_key(line: bytes, key_field: str | None) -> bytes | None:
    """The key for one JSONL line: its ``key_field`` value (strings and numbers), else None."""
    if not key_field:
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    value = record.get(key_field)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value).encode()
    return None


def _count_lines(items: list[Input]) -> int | None:
    """Lines in all inputs, when they are plain files (for the progress bar), else None."""
    count = 0
    for item in items:
        if item.path is None or not is_plain_file(item.path):
            return None
        with open(item.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                count += chunk.count(b"\n")
    return count


def _input_lines(items: Iterable[Input]) -> Iterator[bytes]:
    for item in items:
        for raw in read_lines(item):
            yield raw.rstrip(b"\r\n")


def _send(
    prod: Producer,
    topic: str,
    line: bytes,
    key: bytes | None,
    result: ProduceResult,
    delivered: Callable[[KafkaError | None, Message], None],
) -> None:
    """Queue one line (waiting while librdkafka's queue is full) and count it."""
    result.lines += 1
    result.bytes += len(line)
    result.keyed += key is not None
    while True:
        try:
            prod.produce(topic, line, key, on_delivery=delivered)
            break
        except BufferError:  # local queue full: let deliveries drain it
            prod.poll(0.05)
        except KafkaException as exc:  # refused at once (e.g. larger than allowed)
            result.failed += 1
            result.errors[str(exc.args[0])] += 1
            break
    prod.poll(0)


def _check_target(settings: Settings, bootstrap: str, items: list[Input], topic: str) -> None:
    """The inputs exist and so does the topic, or ProduceError says which does not."""
    for item in items:
        if item.error is not None:
            raise ProduceError(f"{item.name}: cannot read: {item.error}")
    md = admin_client(settings, bootstrap).list_topics(timeout=10)
    if topic not in md.topics or md.topics[topic].error is not None:
        raise ProduceError(
            f"topic {topic!r} does not exist on {bootstrap} (create it: streamer topics create)"
        )


def produce_file(
    settings: Settings,
    bootstrap: str,
    path: Path | str | Sequence[Path | str],
    *,
    topic: str | None = None,
    rate: float | None = None,
    key_field: str | None = "id",
    progress: bool = False,
    flush_timeout: float = 60.0,
    producer_overrides: dict[str, Any] | None = None,
) -> ProduceResult:
    """Send every non-blank line of ``path`` to ``topic`` (default: the input topic). ``path``:
    inputs as :func:`streamer.inputs.expand_inputs` takes them (files, zstd/gzip, folders, globs).

    ``rate`` limits records per second (token bucket). Returns the counts once every message was
    acknowledged or failed.
    """
    topic = topic or settings.input_topic
    items = expand_inputs([str(path)] if isinstance(path, str | Path) else map(str, path))
    _check_target(settings, bootstrap, items, topic)

    result = ProduceResult(topic=topic)

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            result.delivered += 1
        else:
            result.failed += 1
            result.errors[err.str()] += 1

    # log_level 3: librdkafka's retry warnings (e.g. a coordinator still loading on a fresh
    # broker) are noise here; real failures are counted by the delivery callbacks.
    conf = {"message.timeout.ms": 60_000, "log_level": 3, **(producer_overrides or {})}
    prod = producer(settings, bootstrap, **conf)
    bucket = TokenBucket(rate) if rate else None
    total = _count_lines(items)
    bar = tqdm(total=total, unit="rec", file=sys.stderr, disable=not progress, leave=False)
    started = time.monotonic()
    try:
        for line in _input_lines(items):
            bar.update(1)
            if not line.strip():
                continue
            if bucket is not None:
                bucket.take()
            _send(prod, topic, line, record_key(line, key_field), result, delivered)
        left = prod.flush(flush_timeout)
        if left:
            result.failed += left
            result.errors[f"not delivered within {flush_timeout:.0f}s"] += left
    except InputError as exc:
        prod.flush(flush_timeout)  # what was read so far is sent; the failure is reported
        raise ProduceError(str(exc)) from None
    finally:
        bar.close()
        result.seconds = time.monotonic() - started
    return result
