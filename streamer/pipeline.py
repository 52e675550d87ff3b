"""The data path, framework-free: a batch of raw Kafka messages in, routed outputs out.

Each input message becomes at most one output:

- a classifiable record (``streamer.records.CLASSIFIABLE_TYPES``) is enriched with
  ``bounce_classification`` and ``classification`` and goes to the output topic;
- any other record type follows ``non_classifiable``: ``pass`` (to the output topic unchanged),
  ``drop`` (no output) or ``topic:NAME`` (to NAME unchanged); so does a log hook's bookkeeping
  record (``streamer.records.is_log_hook_record``) whatever its type, counted as
  ``streamer.records.LOG_HOOK_TYPE``: never classified, never a delivery, never a suppression;
- a malformed message (see ``streamer.records.decode_record``) goes to the dead-letter topic
  byte for byte, with headers naming the reason, the source topic/partition/offset and the time.

Keys and headers are kept. Nothing here talks to Kafka or awaits: the worker hands a whole batch
to ``Pipeline.process`` and produces the outputs it returns. The classifier is read once per
batch, so a hot reload takes effect at a batch boundary and a batch is classified by one rule set.

Two paths give the same outputs, counts and analytics: the native record path
(``streamer.native``: one call per batch makes its outputs and counts, enrichment spliced into
the input bytes, analytics tallied natively), used wherever the extension is built, and the
Python path below, the reference, which takes every record the native path hands back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from streamer import native as native_path
from streamer.analytics.analyzer import Analyzer
from streamer.analytics.delivery_batches import DeliveryBatches
from streamer.analytics.suppressions import SuppressionEvent, with_source
from streamer.classifier import Classification
from streamer.config import parse_non_classifiable
from streamer.deadletter import Headers, dead_letter_headers
from streamer.native import NativeRecords
from streamer.records import (
    CLASSIFIABLE_TYPES,
    LOG_HOOK_TYPE,
    LOG_RECORD_PROTOCOL,
    PROCESSING_ERROR,
    accept,
    classification_object,
    feedback_classification,
    refusal_reason,
    response_line,
    set_classification,
    with_analytics,
)

#: Pseudo record type counted for messages that did not decode.
MALFORMED_TYPE = "malformed"
#: Label counted for outputs that were not classified (passed through or re-routed).
UNCLASSIFIED_LABEL = "none"
#: Enrichment objects with analytics kept per rule set (ids are only valid while it lives).
ENRICHMENT_CACHE = 10_000


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
    """Routes each message of a batch (see the module docstring). The Python path decodes a
    message once (``records.accept``; a refused one again, to name the reason) and builds each
    rule's ``classification`` once per rule set. With an ``analyzer``, every decoded record is
    counted, a classified one's ``classification`` gains ``category`` and ``provider``, and its
    suppression events (with its partition and offset) follow its own output; with
    ``events_partitions`` (the events topic's), a Delivery's go instead into one record per
    partition before the batch's outputs (``streamer.analytics.delivery_batches``)."""

    def __init__(
        self,
        classifiers: ClassifierSource,
        *,
        output_topic: str,
        dlq_topic: str,
        non_classifiable: str = "pass",
        max_message_bytes: int = 1_048_576,
        clock: Callable[[], float] = time.time,
        analyzer: Analyzer | None = None,
        suppression_events_topic: str = "",
        events_partitions: int = 0,
        native: bool | None = None,
    ) -> None:
        self.classifiers = classifiers
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic
        self.other_topic = parse_non_classifiable(non_classifiable, output_topic)
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.analyzer = analyzer
        self.suppression_events_topic = suppression_events_topic
        #: The events topic's partitions to place a batch's deliveries for (0: an event each).
        self.events_partitions = events_partitions
        self._deliveries: DeliveryBatches | None = None  # the batch's, while it is processed
        self._placed_for = 0  # the events_partitions the native path was made with
        # id(Classification) -> its ``classification`` object, shared by every record it
        # classifies (encoded, never mutated); valid for the classifier in _enrichment_owner,
        # whose results are long-lived, one per rule, so their ids are stable.
        self._enrichment_owner: Any = None
        self._enrichments: dict[int, dict[str, Any]] = {}
        # (id of such an object, category, provider) -> the object with both added
        self._analytics: dict[tuple[int, str | None, str], dict[str, Any]] = {}
        self._feedback: dict[str, Classification] = {}  # one result per feedback label
        self.use_native = native_path.wanted(native)
        self.native: NativeRecords | None = None  # the native path, made per rule set by _begin

    def process(self, messages: Sequence[RawMessage]) -> tuple[list[Output], BatchStats]:
        """A record per events partition of the batch's deliveries, then the outputs in input
        order (dropped records have none), and the batch's counts."""
        classifier = self.classifiers.current  # one rule set for the whole batch
        self._begin(classifier)
        stats = BatchStats()
        batching = self.analyzer is not None and self.events_partitions > 0
        self._deliveries = DeliveryBatches(self.events_partitions) if batching else None
        outputs: list[Output] | None = None
        if self.native is not None:
            routed = self.native.route(messages)
            if routed is not None:
                outputs = self._native_outputs(messages, routed, classifier, stats)
        if outputs is None:
            outputs = []
            append = outputs.append
            route = self._route
            for msg in messages:
                route(msg, msg.value(), classifier, append, stats)
        if self._deliveries is not None:
            outputs = _deliveries_first(outputs, self._deliveries, self.suppression_events_topic)
            self._deliveries = None
        return outputs, stats

    def _route(
        self,
        msg: RawMessage,
        raw: bytes | None,
        classifier: Any,
        append: Callable[[Output], None],
        stats: BatchStats,
    ) -> None:
        """The reference path for one message (the native path's fallback too)."""
        record = accept(raw, self.max_message_bytes)
        if record is None:
            reason, detail = refusal_reason(raw, self.max_message_bytes)
            append(dead_letter(msg, raw, reason, detail, self.dlq_topic, self.clock(), stats))
            return
        rtype = record["type"]
        if record.get("reception_protocol") == LOG_RECORD_PROTOCOL:  # records.effective_type
            rtype = LOG_HOOK_TYPE
        elif rtype in CLASSIFIABLE_TYPES:
            self._classified(msg, raw, record, rtype, classifier, append, stats)
            return
        self._other(msg, raw, rtype, append, stats)
        analyzer = self.analyzer
        if analyzer is not None:
            events = analyzer.observe(record, rtype, None, None, None)[2]
            if not events:
                return
            deliveries = self._deliveries
            if deliveries is not None and rtype == "Delivery":
                for key, value in events:
                    deliveries.add(key, orjson.loads(value)["t"])
            else:
                self._suppress(msg, events, append)

    def _other(
        self,
        msg: RawMessage,
        raw: bytes | None,
        rtype: str,
        append: Callable[[Output], None],
        stats: BatchStats,
    ) -> None:
        """Route a record that is not classified by ``non_classifiable``, unchanged."""
        stats.events_in[rtype] += 1
        other_topic = self.other_topic
        if other_topic is None:
            stats.dropped += 1
        else:
            stats.events_out[rtype, UNCLASSIFIED_LABEL] += 1
            append(Output(other_topic, msg.key(), raw, msg.headers()))

    def _native_outputs(
        self,
        messages: Sequence[RawMessage],
        routed: native_path.Routed,
        classifier: Any,
        stats: BatchStats,
    ) -> list[Output]:
        """The batch's outputs from the native path's answer: its outputs, with those of the
        messages it handed back (the Python path's, :meth:`_route`) in their places, and its
        counts added to ``stats``. Same outputs and counts as the reference."""
        made, handed, events_in, events_out, sites, dropped, seconds, placed = routed
        if placed and self._deliveries is not None:
            self._deliveries.by_partition = placed  # the Python path's go in with them
        stats.events_in.update(events_in)
        stats.events_out.update(events_out)
        stats.sites.update(sites)
        stats.dropped += dropped
        stats.classify_seconds.extend(seconds)
        if not handed:
            return made
        # with analytics, the records counted natively before one the Python path counts go
        # into the tally first: one tally in the records' order
        count_until = self.native.count_until if self.native and self.analyzer else None
        outputs: list[Output] = []
        append = outputs.append
        done = 0
        for i, at in handed:
            outputs += made[done:at]
            done = at
            if count_until is not None:
                count_until(i)
            msg = messages[i]
            self._route(msg, msg.value(), classifier, append, stats)
        outputs += made[done:]
        if count_until is not None:
            count_until()
        return outputs

    def _classified(
        self,
        msg: RawMessage,
        raw: bytes | None,
        record: dict[str, Any],
        rtype: str,
        classifier: Any,
        append: Callable[[Output], None],
        stats: BatchStats,
    ) -> None:
        """Classify, enrich and route one record of a classifiable type."""
        try:
            t0 = time.perf_counter()
            result = feedback_classification(record)
            if result is None:
                line: str | None = response_line(record["response"])
                result = classifier.classify(line)
            else:  # one result per label: the enrichments below are cached by the result
                line = None
                result = self._feedback.setdefault(result.label, result)
            stats.classify_seconds.append(time.perf_counter() - t0)
            cls = self._enrichments.get(id(result))
            if cls is None:
                cls = self._enrichments[id(result)] = classification_object(
                    result, classifier.version
                )
            label = result.label
            events: Sequence[SuppressionEvent] = ()
            analyzer = self.analyzer
            if analyzer is not None:
                evidence = result.evidence
                if evidence in analyzer.observer_evidence:
                    evidence = None  # trusted, no rule gap: what observe assumes untold
                category, provider, events = analyzer.observe(
                    record, rtype, label, result.rule, line, evidence
                )
                cls = self._with_analytics(cls, category, provider)
            value = orjson.dumps(set_classification(record, label, cls))
        except Exception as exc:  # a bad record must never stop the worker
            detail = f"{type(exc).__name__}: {exc}"
            dlq = self.dlq_topic
            append(dead_letter(msg, raw, PROCESSING_ERROR, detail, dlq, self.clock(), stats))
            return
        stats.events_in[rtype] += 1
        stats.events_out[rtype, label] += 1
        site = record.get("site")
        if site and type(site) is str:
            stats.sites[site, label] += 1
        append(Output(self.output_topic, msg.key(), value, msg.headers()))
        if events:
            self._suppress(msg, events, append)

    def _with_analytics(
        self, cls: dict[str, Any], category: str | None, provider: str
    ) -> dict[str, Any]:
        """``cls`` plus ``category`` and ``provider``: one shared object per combination, like
        ``cls`` itself (bounded: rules x categories x providers, emptied when full)."""
        key = (id(cls), category, provider)
        enriched = self._analytics.get(key)
        if enriched is None:
            if len(self._analytics) >= ENRICHMENT_CACHE:
                self._analytics.clear()
            enriched = self._analytics[key] = with_analytics(cls, category, provider)
        return enriched

    def _suppress(
        self,
        msg: RawMessage,
        events: Sequence[SuppressionEvent],
        append: Callable[[Output], None],
    ) -> None:
        partition, offset, topic = (
            msg.partition() or 0,
            msg.offset() or 0,
            self.suppression_events_topic,
        )
        for key, value in events:
            append(Output(topic, key, with_source(value, partition, offset), None))

    def _begin(self, classifier: Any) -> None:
        """The ``classification`` objects belong to one rule set: start over after a reload."""
        fresh = classifier is not self._enrichment_owner
        if fresh:
            self._enrichment_owner = classifier
            self._enrichments = {}
            self._analytics = {}
        if self.use_native and (fresh or self._placed_for != self.events_partitions):
            self._placed_for = partitions = self.events_partitions  # the worker sets it at start
            topics = (self.output_topic, self.other_topic, self.suppression_events_topic)
            routes = (*topics, Output, UNCLASSIFIED_LABEL, partitions if self.analyzer else 0)
            self.native = NativeRecords(classifier, self.max_message_bytes, self.analyzer, routes)


def dead_letter(
    msg: RawMessage,
    raw: bytes | None,
    reason: str,
    detail: str | None,
    dlq_topic: str,
    now: float,
    stats: BatchStats,
) -> Output:
    """The dead-letter output of a message (its bytes as they came, headers naming why and
    where from), counted in ``stats``."""
    stats.events_in[MALFORMED_TYPE] += 1
    stats.dlq[reason] += 1
    headers = dead_letter_headers(
        msg.headers(),
        reason,
        topic=msg.topic() or "",
        partition=msg.partition(),
        offset=msg.offset(),
        detail=detail,
        now=now,
    )
    return Output(dlq_topic, msg.key(), raw, headers)


def _deliveries_first(
    outputs: list[Output], deliveries: DeliveryBatches, topic: str
) -> list[Output]:
    """A batch's delivery records (``streamer.analytics.delivery_batches``) before its other
    outputs: the stage folds them before the batch's OOBs, which a delivery vouches for."""
    placed = [Output(topic, key, value, None) for key, value in deliveries.records()]
    return placed + outputs if placed else outputs
