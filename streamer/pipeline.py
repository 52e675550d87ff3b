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
from typing import Any, NamedTuple, Protocol

import orjson

from streamer.config import parse_non_classifiable
from streamer.deadletter import Headers, dead_letter_headers
from streamer.records import (
    CLASSIFIABLE_TYPES,
    MalformedRecord,
    accept,
    classification_object,
    decode_record,
    response_line,
    set_classification,
)

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
    sites: Counter[tuple[str, str]] = field(default_factory=Counter)  # (site, label) -> n

    def merge(self, other: BatchStats) -> None:
        self.events_in.update(other.events_in)
        self.events_out.update(other.events_out)
        self.dlq.update(other.dlq)
        self.dropped += other.dropped
        self.classify_seconds.extend(other.classify_seconds)
        self.sites.update(other.sites)


class Pipeline:
    """Routes each message of a batch; see the module docstring.

    The hot path decodes and checks each message once (``records.accept``); a message it refuses
    is decoded again by ``decode_record`` only to name the reason (rare). The ``classification``
    object of each rule is built once per rule set. (Splicing the enrichment into the input
    bytes instead of re-encoding was tried: orjson encodes a 1.4 KB record in ~1 µs, faster
    than the Python needed to splice safely.)
    """

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
        # id(Classification) -> its ``classification`` object, shared by every record it
        # classifies (encoded, never mutated); valid for the classifier in _enrichment_owner,
        # whose results are long-lived, one per rule, so their ids are stable.
        self._enrichment_owner: Any = None
        self._enrichments: dict[int, dict[str, Any]] = {}

    def process(self, messages: Sequence[RawMessage]) -> tuple[list[Output], BatchStats]:
        """Outputs in input order (dropped records have none) and the batch's counts."""
        classifier = self.classifiers.current  # one rule set for the whole batch
        enrichments = self._enrichments_of(classifier)
        version: str | None = None
        classify = classifier.classify
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
        sites = stats.sites
        outputs: list[Output] = []
        append = outputs.append
        dropped = 0

        for msg in messages:
            raw = msg.value()
            record = accept(raw, max_bytes)
            if record is None:
                self._dead_letter(msg, raw, *_malformed_reason(raw, max_bytes), append, stats)
                continue
            rtype = record["type"]
            if rtype not in classifiable:
                events_in[rtype] += 1
                if other_topic is None:
                    dropped += 1
                else:
                    events_out[rtype, UNCLASSIFIED_LABEL] += 1
                    append(Output(other_topic, msg.key(), raw, msg.headers()))
                continue
            try:
                t0 = perf()
                result = classify(response_line(record["response"]))
                durations.append(perf() - t0)
                cls = enrichments.get(id(result))
                if cls is None:
                    if version is None:
                        version = classifier.version
                    cls = classification_object(result, version)
                    enrichments[id(result)] = cls
                label = result.label
                value = dumps(set_classification(record, label, cls))
            except Exception as exc:  # a bad record must never stop the worker
                detail = f"{type(exc).__name__}: {exc}"
                self._dead_letter(msg, raw, PROCESSING_ERROR, detail, append, stats)
                continue
            events_in[rtype] += 1
            events_out[rtype, label] += 1
            site = record.get("site")
            if site and type(site) is str:
                sites[site, label] += 1
            append(Output(output_topic, msg.key(), value, msg.headers()))
        stats.dropped = dropped
        return outputs, stats

    def _enrichments_of(self, classifier: Any) -> dict[int, dict[str, Any]]:
        """The ``classification`` objects of ``classifier``'s results (reset on a reload)."""
        if classifier is not self._enrichment_owner:
            self._enrichment_owner = classifier
            self._enrichments = {}
        return self._enrichments

    def _dead_letter(
        self,
        msg: RawMessage,
        raw: bytes | None,
        reason: str,
        detail: str | None,
        append: Callable[[Output], None],
        stats: BatchStats,
    ) -> None:
        stats.events_in[MALFORMED_TYPE] += 1
        stats.dlq[reason] += 1
        headers = dead_letter_headers(
            msg.headers(),
            reason,
            topic=msg.topic() or "",
            partition=msg.partition(),
            offset=msg.offset(),
            detail=detail,
            now=self.clock(),
        )
        append(Output(self.dlq_topic, msg.key(), raw, headers))


def _malformed_reason(raw: bytes | None, max_bytes: int) -> tuple[str, str | None]:
    """The dead-letter reason of a message ``accept`` refused (decoded again, slowly: rare)."""
    if raw is None:
        return EMPTY, None
    try:
        decode_record(raw, max_bytes)
    except MalformedRecord as exc:
        return exc.reason, exc.detail or None
    return PROCESSING_ERROR, "accepted by decode_record but not by accept"  # cannot happen
