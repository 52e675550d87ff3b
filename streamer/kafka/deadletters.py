"""Reading the dead-letter topic, and re-driving its records after a fix (``streamer dlq``).

Every read is bounded: the end watermarks of the partitions are captured when it starts and
the read stops there, whatever arrives meanwhile. Listing and showing are assigned the
partitions without joining or committing anything. ``replay`` resumes from its own consumer
group's committed offsets and produces each selected dead letter's original key, value and
headers (the ``streamer.dlq.*`` ones removed, ``streamer.replayed.from`` added) in Kafka
transactions that also commit the group's offsets (``send_offsets_to_transaction``): a batch is
replayed and marked done atomically, so a replay killed at any point and started again replays
every dead letter exactly once for read_committed consumers (the worker is one). The
transactional id is derived from the group and the topic: the restarted replay fences the killed
one and aborts its open transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamer.config import Settings
from streamer.deadletter import (
    DLQ_DETAIL,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_OFFSETS,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_TIME,
    Headers,
    utc_timestamp,
)
from streamer.kafka.clients import consumer_config, producer_config
from streamer.kafka.produce import TokenBucket
from streamer.timespec import parse_instant

#: Header naming the dead letter a replayed record came from: ``<dlq topic>/<partition>/<offset>``.
REPLAYED_FROM = "streamer.replayed.from"
DLQ_HEADER_PREFIX = "streamer.dlq."
DEFAULT_REPLAY_GROUP = "streamer-dlq-replay"
#: A read that receives nothing for this long before reaching the captured ends gives up.
STALL_SECONDS = 60.0
POLL_SECONDS = 0.5
#: Longest a rate-limited replay keeps one transaction open (the broker aborts one after
#: ``transaction.timeout.ms``, 60 s here).
TXN_SECONDS = 5.0


#: librdkafka's own log lines of these clients: their errors reach the user through the calls
#: that fail (one line), never as log lines on the terminal.
_LIBRDKAFKA_LOG = logging.getLogger("streamer.librdkafka.dlq")
_LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
_LIBRDKAFKA_LOG.propagate = False


class DeadLetterError(Exception):
    """The dead letters cannot be read or replayed; the message says why in one line."""


def safe_text(data: bytes | str | None) -> str:
    """Printable text for a terminal: invalid UTF-8 and control characters escaped."""
    if data is None:
        return ""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _header_text(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, its ``streamer.dlq.*`` headers decoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    source_offsets: str | None
    time: str | None
    detail: str | None

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetter:
        raw = msg.headers() or []
        headers: Headers = list(raw.items() if isinstance(raw, dict) else raw)
        found = {name: _header_text(value) for name, value in headers}
        return cls(
            topic=msg.topic() or "",
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=msg.key(),
            value=msg.value(),
            headers=headers,
            timestamp_ms=msg.timestamp()[1],
            reason=found.get(DLQ_REASON) or "(none)",
            source_topic=found.get(DLQ_SOURCE_TOPIC) or None,
            source_partition=_int(found.get(DLQ_SOURCE_PARTITION)),
            source_offset=_int(found.get(DLQ_SOURCE_OFFSET)),
            source_offsets=found.get(DLQ_SOURCE_OFFSETS),
            time=found.get(DLQ_TIME),
            detail=found.get(DLQ_DETAIL),
        )

    @property
    def when(self) -> float:
        """Epoch seconds it was dead-lettered: its time header, else the message timestamp."""
        if self.time:
            try:
                return parse_instant(self.time)
            except ValueError:
                pass
        return self.timestamp_ms / 1000.0

    @property
    def when_text(self) -> str:
        return self.time or utc_timestamp(self.when)

    @property
    def source(self) -> str:
        """``topic/partition/offset`` (or ``/first-last`` for an output the broker refused)."""
        where = self.source_offset if self.source_offset is not None else self.source_offsets
        return f"{self.source_topic or '?'}/{self.source_partition}/{where}"

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "source_offsets": self.source_offsets,
            "time": self.when_text,
            "detail": self.detail,
            "key": None if self.key is None else safe_text(self.key),
        }

    def replay_headers(self) -> Headers:
        """The original headers: ``streamer.dlq.*`` (and an older ``replayed.from``) removed,
        ``streamer.replayed.from`` naming this dead letter added."""
        kept: Headers = [
            (k, v)
            for k, v in self.headers
            if not k.startswith(DLQ_HEADER_PREFIX) and k != REPLAYED_FROM
        ]
        kept.append((REPLAYED_FROM, f"{self.topic}/{self.partition}/{self.offset}".encode()))
        return kept


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on: reasons (empty: all) and a time range."""

    reasons: frozenset[str] = frozenset()
    since: float | None = None
    until: float | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        when = letter.when
        if self.since is not None and when < self.since:
            return False
        return self.until is None or when <= self.until


def _consumer(settings: Settings, bootstrap: str, group: str | None = None) -> Consumer:
    conf = consumer_config(
        settings,
        bootstrap,
        group_id=group or f"streamer-dlq-{os.getpid()}",
        **{
            "enable.partition.eof": True,
            "enable.auto.offset.store": False,
            "logger": _LIBRDKAFKA_LOG,
        },
    )
    return Consumer(conf)


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        raise DeadLetterError(f"{topic}: {_reason(exc)}") from None
    err = None if meta is None else meta.error
    if err is not None and err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise DeadLetterError(f"topic {topic!r}: {err.str()}")  # e.g. not authorized
    if meta is None or err is not None or not meta.partitions:
        raise DeadLetterError(f"topic {topic!r} does not exist")
    return sorted(meta.partitions)


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return str(err.str() if isinstance(err, KafkaError) else err)


class BoundedRead:
    """Reads the assigned partitions of ``topic`` from ``starts`` up to the end watermarks
    captured at construction; ``stop(partition)`` ends one partition early."""

    def __init__(self, consumer: Consumer, topic: str, starts: dict[int, int | None]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.ends: dict[int, int] = {}
        self.positions: dict[int, int] = {}
        assign: list[TopicPartition] = []
        try:
            for p, start in starts.items():
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=10, cached=False
                )
                begin = low if start is None or start < low else start
                self.ends[p] = high
                self.positions[p] = begin
                if begin < high:
                    assign.append(TopicPartition(topic, p, begin))
        except KafkaException as exc:
            raise DeadLetterError(f"{topic}: {_reason(exc)}") from None
        self.left = {tp.partition for tp in assign}
        if assign:
            consumer.assign(assign)

    @property
    def remaining(self) -> int:
        """Offsets still to read (an upper bound: transaction markers take offsets too)."""
        return sum(self.ends[p] - self.positions[p] for p in self.left)

    def stop(self, partition: int) -> None:
        if partition in self.left:
            self.left.discard(partition)
            self.consumer.pause([TopicPartition(self.topic, partition)])

    def _done_by_position(self) -> None:
        """Partitions whose position passed the captured end (over transaction markers)."""
        tps = [TopicPartition(self.topic, p) for p in self.left]
        for tp in self.consumer.position(tps) if tps else ():
            if tp.offset >= self.ends[tp.partition]:
                self.left.discard(tp.partition)

    def __iter__(self) -> Iterator[Message]:
        last_progress = time.monotonic()
        while self.left:
            try:
                msg = self.consumer.poll(POLL_SECONDS)
            except KafkaException as exc:
                raise DeadLetterError(f"{self.topic}: {_reason(exc)}") from None
            if msg is None:
                self._done_by_position()
                if self.left and time.monotonic() - last_progress > STALL_SECONDS:
                    raise DeadLetterError(
                        f"{self.topic}: nothing read for {STALL_SECONDS:.0f}s before the end "
                        f"of partitions {sorted(self.left)}"
                    )
                continue
            last_progress = time.monotonic()
            p, offset = msg.partition() or 0, msg.offset() or 0
            if p not in self.left:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise DeadLetterError(f"{self.topic}: {err.str()}")
                if offset >= self.ends[p]:  # past the captured end (and any markers before it)
                    self.left.discard(p)
                continue
            if offset >= self.ends[p]:
                self.left.discard(p)
                continue
            yield msg
            if p in self.left:  # the reader did not stop the partition at this record
                self.positions[p] = offset + 1
                if offset + 1 >= self.ends[p]:
                    self.left.discard(p)


def read_dead_letters(
    settings: Settings, bootstrap: str, topic: str, selection: Selection
) -> Iterator[tuple[DeadLetter, bool]]:
    """Each dead letter of ``topic`` now (to the captured ends), with whether it is selected."""
    consumer = _consumer(settings, bootstrap)
    try:
        read = BoundedRead(consumer, topic, dict.fromkeys(_partitions(consumer, topic)))
        for msg in read:
            letter = DeadLetter.from_message(msg)
            yield letter, selection.matches(letter)
    finally:
        consumer.close()


@dataclass
class ReasonSummary:
    count: int = 0
    first: float | None = None
    last: float | None = None
    sources: Counter[str] = field(default_factory=Counter)

    def add(self, letter: DeadLetter) -> None:
        self.count += 1
        when = letter.when
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)
        self.sources[letter.source_topic or "?"] += 1


@dataclass
class Summary:
    topic: str
    read: int = 0
    reasons: dict[str, ReasonSummary] = field(default_factory=dict)

    @property
    def selected(self) -> int:
        return sum(r.count for r in self.reasons.values())

    def add(self, letter: DeadLetter) -> None:
        self.reasons.setdefault(letter.reason, ReasonSummary()).add(letter)

    def by_count(self) -> list[tuple[str, ReasonSummary]]:
        """Reasons, the most frequent first (ties by name)."""
        return sorted(self.reasons.items(), key=lambda kv: (-kv[1].count, kv[0]))

    def sources(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for r in self.reasons.values():
            total.update(r.sources)
        return total

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "read": self.read,
            "selected": self.selected,
            "reasons": {
                name: {
                    "count": r.count,
                    "first": None if r.first is None else utc_timestamp(r.first),
                    "last": None if r.last is None else utc_timestamp(r.last),
                    "sources": dict(sorted(r.sources.items())),
                }
                for name, r in self.by_count()
            },
            "sources": dict(sorted(self.sources().items())),
        }


def summarise(settings: Settings, bootstrap: str, topic: str, selection: Selection) -> Summary:
    summary = Summary(topic)
    for letter, selected in read_dead_letters(settings, bootstrap, topic, selection):
        summary.read += 1
        if selected:
            summary.add(letter)
    return summary


def fetch_one(
    settings: Settings, bootstrap: str, topic: str, partition: int, offset: int
) -> DeadLetter:
    """The dead letter at ``partition:offset``; DeadLetterError naming the valid range if none."""
    consumer = _consumer(settings, bootstrap)
    try:
        if partition not in _partitions(consumer, topic):
            raise DeadLetterError(f"topic {topic!r} has no partition {partition}")
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
        except KafkaException as exc:
            raise DeadLetterError(f"{topic}: {_reason(exc)}") from None
        if not low <= offset < high:
            raise DeadLetterError(
                f"no record at {topic} {partition}:{offset} (partition {partition} holds "
                + (f"offsets {low}..{high - 1})" if high > low else "no records)")
            )
        read = BoundedRead(consumer, topic, {partition: offset})
        for msg in read:
            if msg.offset() == offset:
                return DeadLetter.from_message(msg)
            break  # the offset holds a transaction marker: the next record is another one
        raise DeadLetterError(f"no record at {topic} {partition}:{offset} (a transaction marker)")
    finally:
        consumer.close()


def replay_transactional_id(group: str, topic: str) -> str:
    """Stable across restarts, so a restarted replay fences the one it replaces."""
    return f"{group}.{topic}"


@dataclass
class ReplayResult:
    read: int = 0  # dead letters read (selected or not)
    replayed: int = 0  # produced and committed (dry run: would be)
    skipped: int = 0  # read but not selected (reason or --since)
    left: int = 0  # partitions stopped at a dead letter newer than --until
    targets: Counter[str] = field(default_factory=Counter)
    remaining: int = 0  # offsets still to read at the last progress report


@dataclass
class ReplayOptions:
    group: str = DEFAULT_REPLAY_GROUP
    to: str | None = None
    dry_run: bool = False
    batch_size: int = 500
    rate: float | None = None


class _Transactions:
    """The replay's transactional producer: one transaction per batch, group offsets inside."""

    def __init__(self, settings: Settings, bootstrap: str, topic: str, group: str) -> None:
        conf = producer_config(
            settings,
            bootstrap,
            **{
                "transactional.id": replay_transactional_id(group, topic),
                "transaction.timeout.ms": 60_000,
                "linger.ms": 5,
                "logger": _LIBRDKAFKA_LOG,
                "error_cb": self._on_error,
            },
        )
        #: The error that made the producer unusable (fenced by a newer replay, ...): a
        #: later call says only "Fatal error".
        self.fatal: KafkaError | None = None
        self.producer = Producer(conf)
        self.topic = topic
        self._call(lambda: self.producer.init_transactions(30))

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except KafkaException as exc:
            self._fail(exc)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() and self.fatal is None:
            self.fatal = err

    def _fail(self, exc: KafkaException) -> NoReturn:
        """Abort the open transaction (when that is what the error asks) and say why."""
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.txn_requires_abort():
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(30)
        why = _reason(exc)
        if (isinstance(err, KafkaError) and err.fatal()) or "Fatal error" in why:
            why = self._fatal_reason() or why
        raise DeadLetterError(f"replay: {why}") from None

    def _fatal_reason(self) -> str | None:
        """Why the producer became unusable, once _on_error heard of it (within a second)."""
        deadline = time.monotonic() + 1.0
        while self.fatal is None and time.monotonic() < deadline:
            try:
                self.producer.poll(0.1)  # serves _on_error
            except KafkaException as exc:  # the fatal error itself may surface here
                return _reason(exc)
        return None if self.fatal is None else self.fatal.str()

    def _produce(self, target: str, letter: DeadLetter) -> None:
        while True:
            try:
                self.producer.produce(
                    target, letter.value, letter.key, headers=letter.replay_headers()
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)
        self.producer.poll(0)

    def commit(
        self,
        batch: list[tuple[str, DeadLetter]],
        positions: dict[int, int],
        group_metadata: Any,
        bucket: TokenBucket | None,
    ) -> None:
        self._call(self.producer.begin_transaction)
        for target, letter in batch:
            if bucket is not None:
                bucket.take()
            self._call(self._produce, target, letter)
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(positions.items())]
        self._call(lambda: self.producer.send_offsets_to_transaction(offsets, group_metadata, 30))
        self._call(lambda: self.producer.commit_transaction(60))


def _check_target(consumer: Consumer, name: str, known: set[str]) -> None:
    if name not in known:
        meta = consumer.list_topics(name, timeout=10).topics.get(name)
        if meta is None or meta.error is not None or not meta.partitions:
            raise DeadLetterError(f"replay target topic {name!r} does not exist (--to TOPIC?)")
        known.add(name)


def _committed(
    consumer: Consumer, topic: str, partitions: list[int], group: str
) -> dict[int, int | None]:
    """The group's committed offset per partition (None: nothing committed yet)."""
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
    except KafkaException as exc:
        raise DeadLetterError(f"group {group}: {_reason(exc)}") from None
    return {
        tp.partition: None if tp.offset == OFFSET_INVALID or tp.offset < 0 else tp.offset
        for tp in committed
    }


def replay(
    settings: Settings,
    bootstrap: str,
    topic: str,
    selection: Selection,
    options: ReplayOptions,
    *,
    on_batch: Callable[[ReplayResult], None] = lambda _r: None,
    on_letter: Callable[[DeadLetter, str], None] = lambda _l, _t: None,
) -> ReplayResult:
    """Replay the selected dead letters of ``topic`` from the group's committed offsets to the
    ends captured at start (see the module docstring). ``--until``: a partition stops at its
    first newer dead letter, uncommitted, so a later replay carries on from there. Dead letters
    not selected by reason or ``since`` are passed over and committed with the batch: a replay
    with other filters over the same range needs another group. ``on_letter`` sees each one
    selected (dry run: would be replayed), ``on_batch`` the counts after each batch."""
    run = _Replay(settings, topic, selection, options, on_batch, on_letter)
    run.consumer = _consumer(settings, bootstrap, options.group)
    try:
        partitions = _partitions(run.consumer, topic)
        if not options.dry_run:
            # First: this fences a killed replay and ends its open transaction, so the
            # committed offsets read next are final.
            run.txn = _Transactions(settings, bootstrap, topic, options.group)
        starts = _committed(run.consumer, topic, partitions, options.group)
        run.read = BoundedRead(run.consumer, topic, starts)
        for msg in run.read:
            run.take(DeadLetter.from_message(msg))
        run.flush()
    except KafkaException as exc:
        raise DeadLetterError(f"{topic}: {_reason(exc)}") from None
    finally:
        run.consumer.close()  # an unfinished transaction: the broker aborts it (or the next run)
    return run.result


class _Replay:
    """The state of one replay: the batch being gathered, and the counts so far."""

    consumer: Consumer
    read: BoundedRead

    def __init__(
        self,
        settings: Settings,
        topic: str,
        selection: Selection,
        options: ReplayOptions,
        on_batch: Callable[[ReplayResult], None],
        on_letter: Callable[[DeadLetter, str], None],
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.selection = selection
        self.options = options
        self.on_batch = on_batch
        self.on_letter = on_letter
        self.result = ReplayResult()
        self.txn: _Transactions | None = None
        self.bucket = TokenBucket(options.rate) if options.rate else None
        self.batch_size = options.batch_size
        if options.rate:  # a transaction open for at most ~TXN_SECONDS while rate-limited
            self.batch_size = max(1, min(self.batch_size, int(options.rate * TXN_SECONDS)))
        self.batch: list[tuple[str, DeadLetter]] = []
        self.positions: dict[int, int] = {}  # partition -> offset to commit
        self.targets: set[str] = set()  # known to exist

    def take(self, letter: DeadLetter) -> None:
        result = self.result
        if self.selection.until is not None and letter.when > self.selection.until:
            self.read.stop(letter.partition)
            result.left += 1
            return
        result.read += 1
        self.positions[letter.partition] = letter.offset + 1
        if self.selection.matches(letter):
            target = self.options.to or letter.source_topic or self.settings.input_topic
            _check_target(self.consumer, target, self.targets)
            self.batch.append((target, letter))
            self.on_letter(letter, target)
        else:
            result.skipped += 1
        if len(self.batch) >= self.batch_size or result.read % 10_000 == 0:
            self.flush()

    def flush(self) -> None:
        if self.txn is not None and (self.batch or self.positions):
            metadata = self.consumer.consumer_group_metadata()
            self.txn.commit(self.batch, self.positions, metadata, self.bucket)
        self.result.replayed += len(self.batch)
        self.result.targets.update(t for t, _ in self.batch)
        self.batch.clear()
        self.positions.clear()
        self.result.remaining = self.read.remaining
        self.on_batch(self.result)


def pretty_payload(value: bytes | None) -> tuple[str, str]:
    """(what it is, printable text): indented JSON when it is JSON, else escaped text."""
    if value is None:
        return "no value (a tombstone)", ""
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return f"{len(value)} bytes, not JSON, shown escaped", safe_text(value)
    text = orjson.dumps(decoded, option=orjson.OPT_INDENT_2).decode()
    return f"{len(value)} bytes, JSON", "\n".join(safe_text(line) for line in text.splitlines())
