"""The data path, framework-free: a batch of raw Kafka messages in, routed outputs out.

Each input message becomes at most one output:

- a classifiable record (``streamer.records.CLASSIFIABLE_TYPES``) is enriched with
  ``bounce_classification`` and ``classification`` and goes to the output topic;
- any other record type follows ``non_classifiable``: ``pass`` (to the output topic unchanged),
  ``drop`` (no output) or ``topic:NAME`` (to NAME unchanged);
- a malformed message (see ``streamer.records.decode_record``) goes to the dead-letter topic
  byte for byte, with headers naming the reason, the source topic/partition/offset and the time.

Keys and headers are kept. Nothing here talks to Kafka or awaits: the worker hands a whole batch
to ``Pipeline.process`` and produces the outputs it returns. The classifier is read once per
batch, so a hot reload takes effect at a batch boundary and a batch is classified by one rule set.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import orjson

from streamer.records import CLASSIFIABLE_TYPES, MalformedRecord, decode_record, enrich

Headers = list[tuple[str, bytes]]

DLQ_REASON = "streamer.dlq.reason"
DLQ_SOURCE_TOPIC = "streamer.dlq.source.topic"
DLQ_SOURCE_PARTITION = "streamer.dlq.source.partition"
DLQ_SOURCE_OFFSET = "streamer.dlq.source.offset"
DLQ_TIME = "streamer.dlq.time"
DLQ_DETAIL = "streamer.dlq.detail"

#: DLQ reason when enrichment itself failed (a bug, never the record's fault alone): the record
#: is kept rather than lost, and the worker carries on.
PROCESSING_ERROR = "processing-error"
#: DLQ reason for a message without a value (a tombstone): there is no record to route.
EMPTY = "empty"
#: Pseudo record type counted for messages that did not decode.
MALFORMED_TYPE = "malformed"
#: Label counted for outputs that were not classified (passed through or re-routed).
UNCLASSIFIED_LABEL = "none"


class RawMessage(Protocol):
    """What the pipeline reads from a consumed message (confluent_kafka.Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers | None: ...


class ClassifierSource(Protocol):
    """Something holding the current classifier (``ReloadableClassifier`` fits)."""

    @property
    def current(self) -> Any: ...


class Output(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None


@dataclass(slots=True)
class BatchStats:
    """Counts of one batch, for metrics (aggregated so metrics cost is per batch, not per event)."""

    events_in: Counter[str] = field(default_factory=Counter)  # record_type -> n
    events_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, label) -> n
    dlq: Counter[str] = field(default_factory=Counter)  # reason -> n
    dropped: int = 0
    classify_seconds: list[float] = field(default_factory=list)  # one per classified record

    def merge(self, other: BatchStats) -> None:
        self.events_in.update(other.events_in)
        self.events_out.update(other.events_out)
        self.dlq.update(other.dlq)
        self.dropped += other.dropped
        self.classify_seconds.extend(other.classify_seconds)


def parse_non_classifiable(policy: str, output_topic: str) -> str | None:
    """Where non-classifiable records go: a topic name, or None to drop them."""
    if policy == "pass":
        return output_topic
    if policy == "drop":
        return None
    if policy.startswith("topic:") and len(policy) > len("topic:"):
        return policy[len("topic:") :]
    raise ValueError(f"non_classifiable: {policy!r} is not pass, drop or topic:NAME")


def utc_timestamp(now: float) -> str:
    """RFC 3339 UTC time with milliseconds, as written in the DLQ time header."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dlq_headers(msg: RawMessage, reason: str, now: float, detail: str | None = None) -> Headers:
    """The original headers plus the dead-letter headers."""
    headers = list(msg.headers() or ())
    headers.append((DLQ_REASON, reason.encode()))
    headers.append((DLQ_SOURCE_TOPIC, (msg.topic() or "").encode()))
    headers.append((DLQ_SOURCE_PARTITION, str(msg.partition()).encode()))
    headers.append((DLQ_SOURCE_OFFSET, str(msg.offset()).encode()))
    headers.append((DLQ_TIME, utc_timestamp(now).encode()))
    if detail:
        headers.append((DLQ_DETAIL, detail.encode("utf-8", "replace")[:1024]))
    return headers


class Pipeline:
    """Routes each message of a batch; see the module docstring."""

    def __init__(
        self,
        classifiers: ClassifierSource,
        *,
        output_topic: str,
        dlq_topic: str,
        non_classifiable: str = "pass",
        max_message_bytes: int = 1_048_576,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.classifiers = classifiers
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic
        self.other_topic = parse_non_classifiable(non_classifiable, output_topic)
        self.max_message_bytes = max_message_bytes
        self.clock = clock

    def process(self, messages: Sequence[RawMessage]) -> tuple[list[Output], BatchStats]:
        """Outputs in input order (dropped records have none) and the batch's counts."""
        classifier = self.classifiers.current  # one rule set for the whole batch
        output_topic = self.output_topic
        other_topic = self.other_topic
        max_bytes = self.max_message_bytes
        classifiable = CLASSIFIABLE_TYPES
        dumps = orjson.dumps
        perf = time.perf_counter
        stats = BatchStats()
        events_in = stats.events_in
        events_out = stats.events_out
        durations = stats.classify_seconds
        outputs: list[Output] = []
        append = outputs.append
        now: float | None = None

        for msg in messages:
            raw = msg.value()
            try:
                if raw is None:
                    raise MalformedRecord(EMPTY)
                record = decode_record(raw, max_bytes)
                rtype = record["type"]
                if rtype in classifiable:
                    t0 = perf()
                    enrich(record, classifier)
                    durations.append(perf() - t0)
                    value = dumps(record)
                    label = record["bounce_classification"]
                    events_in[rtype] += 1
                    events_out[rtype, label] += 1
                    append(Output(output_topic, msg.key(), value, msg.headers()))
                    continue
            except MalformedRecord as exc:
                reason = exc.reason
                detail = getattr(exc, "detail", None) or None
                rtype = MALFORMED_TYPE
            except Exception as exc:  # a bad record must never stop the worker
                reason = PROCESSING_ERROR
                detail = f"{type(exc).__name__}: {exc}"
                rtype = MALFORMED_TYPE
            else:
                # not classifiable: routed unchanged
                events_in[rtype] += 1
                if other_topic is None:
                    stats.dropped += 1
                else:
                    events_out[rtype, UNCLASSIFIED_LABEL] += 1
                    append(Output(other_topic, msg.key(), raw, msg.headers()))
                continue
            if now is None:
                now = self.clock()
            events_in[rtype] += 1
            stats.dlq[reason] += 1
            append(
                Output(
                    self.dlq_topic,
                    msg.key(),
                    raw,
                    dlq_headers(msg, reason, now, detail),
                )
            )
        return outputs, stats
