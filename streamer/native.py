"""Which record path runs: the native one (the Rust module ``streamer._native``) or Python's.

The native path routes a whole slice of messages in one call (:meth:`NativeRecords.route`),
exactly as ``records.accept`` and ``Pipeline.process`` do: it reads each message, writes each
enriched record by splicing ``bounce_classification`` and ``classification`` into the original
bytes (``native/``), makes the outputs (``pipeline.Output``) and the suppression events with
their source partition and offset (a Delivery's: gathered per events partition, see
``streamer.analytics.delivery_batches``), and returns them with the slice's counts (``BatchStats``'
counters), so Python does nothing per record it decides. Lines are classified through native
LRU caches of the Python classifier's sizes; a miss asks the Python classifier (its RE2 sets),
so labels, rules and evidence are the reference's. Whatever the native path cannot decide
exactly (a malformed message, a Feedback record, odd JSON) it hands back, record by record, to
the Python path, which stays the reference; their outputs go in their places.

With analytics on, the native path also counts each record it decides into the aggregator's
tally (``streamer._native.Tally``, which the Python path then counts into as well, so the fold
sees the records in their order), adds ``category`` and ``provider`` to the enrichment and
makes the suppression events of a Delivery and of a hard Bounce or OOB (label, rule, response
line, provider, tenant, sender domain: ``SuppressionEvents.update``'s values, byte for byte);
OOB records (tenant from ``oob_tenant_meta``) and Rejections (the address their ``RCPT TO``
refused) are counted natively too. The provider and category of a value it has not seen come
from the analyzer (``Analyzer.native_lookups``). What only the Python analytics count exactly
(a log hook's record, a label on weak evidence, an event time in another form, a non-ASCII
recipient, sender, command or Feedback-Type, a report labelled hard, an OOB whose tally and
events read different tenant keys) takes the Python path. A Feedback record is labelled from
its ARF report natively too (``native/src/feedback.rs``), counted with its complainer's
provider and tenant, and a suppressing report makes its complaint event.

Where the extension is not built (no cargo at install time) every record takes the Python
path: the same results, at a higher cost. ``STREAMER_REQUIRE_NATIVE=1`` makes that an error
(CI sets it, so a build that lost the module fails).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from streamer.analytics.categories import HARD
from streamer.analytics.heavy import OTHER
from streamer.analytics.suppressions import rule_object
from streamer.classifier import Classification, Classifier
from streamer.evidence import FEEDBACK_REPORT
from streamer.feedback import FEEDBACK_TYPES, feedback_type_of_label
from streamer.records import (
    CLASSIFIABLE_TYPES,
    LOG_HOOK_TYPE,
    RECORD_TYPES,
    classification_object,
)
from streamer.rules import UNCATEGORIZED

if TYPE_CHECKING:
    from streamer.analytics.analyzer import Analyzer

try:
    from streamer import _native
except ImportError:  # built without cargo: the Python path runs every record
    _native = None

log = logging.getLogger("streamer.native")

#: Whether the native extension is built.
AVAILABLE = _native is not None
#: Set to 1 to make a missing native extension an error instead of a warning.
REQUIRE_ENV = "STREAMER_REQUIRE_NATIVE"
#: Set to 0 to run the Python path (worker and ``streamer classify``) where the native one is built.
NATIVE_ENV = "STREAMER_NATIVE"
NATIVE = "native"
PYTHON = "python"
#: What a missing extension means, for the start-up warning and the error.
MISSING = (
    "the native record path (streamer._native) is not built: every record takes the Python "
    "path (same results, slower); install with cargo on PATH (README: Installing)"
)

#: A Delivery counted by the analytics: its type and its suppression events (key, value).
Counted = tuple[str, tuple[tuple[bytes, bytes], ...]]
#: A classified record: (enriched value, type, label, site or None, classify seconds, a hard
#: bounce's suppression events or None).
Enriched = tuple[bytes, str, str, str | None, float, tuple[tuple[bytes, bytes], ...] | None]
#: One answer of :meth:`NativeRecords.decide`: None (the Python path decides), the type of a
#: record routed unchanged, :data:`Counted` or :data:`Enriched`.
Answer = None | str | Counted | Enriched
#: Where :meth:`NativeRecords.route` sends outputs: (output topic, topic of the records routed
#: unchanged or None to drop them, suppression events topic, the output class, the label
#: counted for an unclassified output, the events topic's partitions to place deliveries for
#: or 0 for an event per delivery).
Routes = tuple[str, str | None, str, type, str, int]
#: :meth:`NativeRecords.route`'s answer: (outputs of the messages decided natively, in order;
#: (index, position) of each message handed back, whose outputs go before that position;
#: events_in, events_out, sites, dropped and classify seconds of those decided natively; with
#: partitions in the :data:`Routes`, their deliveries as ``{partition: {recipient: latest
#: time}}``, for ``delivery_batches.DeliveryBatches``).
Routed = tuple[
    list[Any],
    list[tuple[int, int]],
    dict[str, int],
    dict[tuple[str, str], int],
    dict[tuple[str, str], int],
    int,
    list[float],
    dict[int, dict[str, int]],
]


class NativeMissing(RuntimeError):
    """The native extension is required (:data:`REQUIRE_ENV`) but not built."""


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "1"


def check_required() -> None:
    """Raise :class:`NativeMissing` when the extension is required but not built."""
    if required() and not AVAILABLE:
        raise NativeMissing(f"{REQUIRE_ENV}=1 but {MISSING}")


def switched_off() -> bool:
    """Whether :data:`NATIVE_ENV` is 0: the Python path everywhere (the reference), e.g. to
    compare the two paths on one's own records, or to step around a fault of the native one."""
    return os.environ.get(NATIVE_ENV, "") == "0"


def wanted(native: bool | None) -> bool:
    """Whether a pipeline runs the native path: by default wherever it is built (analytics on
    or off) and not :func:`switched_off`; ``native=False`` forces the Python path,
    ``native=True`` requires the native one (an error where it is not built)."""
    if native and not AVAILABLE:
        raise NativeMissing(MISSING)
    return AVAILABLE and not switched_off() if native is None else native


def module() -> Any:
    """The native extension (``streamer._native``); :class:`NativeMissing` where not built."""
    if _native is None:
        raise NativeMissing(MISSING)
    return _native


class NativeRecords:
    """The native path over one classifier (one rule set: a reload makes a new one), counting
    the analytics into ``analyzer``'s aggregator when there is one."""

    def __init__(
        self,
        classifier: Classifier,
        max_bytes: int,
        analyzer: Analyzer | None = None,
        routes: Routes | None = None,
    ) -> None:
        if _native is None:
            raise NativeMissing(MISSING)
        self.classifier = classifier
        self.analyzer = analyzer
        self._version = classifier.version
        # id(result) -> what the native caches keep of it; results are long-lived, one per
        # (rule, evidence) of this rule set, so the ids are stable and the dict is small.
        self._encoded: dict[int, tuple[bool, str, bytes, bytes, bool, bytes]] = {}
        cache_size, uncategorized_cache_size = classifier.cache_sizes
        self._path = _native.RecordPath(
            self._resolve,
            max_bytes,
            cache_size,
            uncategorized_cache_size,
            [*RECORD_TYPES, LOG_HOOK_TYPE],  # answered as shared strings
            sorted(CLASSIFIABLE_TYPES),
        )
        # a Feedback record's label comes from its ARF report (``streamer.feedback``)
        types = [(t, label, feedback_type_of_label(label)) for t, label in FEEDBACK_TYPES.items()]
        self._path.label_feedback(types, self._resolve_feedback)
        if routes is not None:
            self._path.routes(*routes)
        if analyzer is not None:
            aggregator = analyzer.aggregator
            if aggregator.elsewhere is None:  # one tally per aggregator, across reloads
                aggregator.elsewhere = _native.Tally()
            self._path.count_into(
                aggregator.elsewhere,
                aggregator.window_ms,
                analyzer.cache_size,
                (OTHER, HARD, UNCATEGORIZED),
                *analyzer.native_lookups(),
                analyzer.oob_tenant_meta(),
                sorted(analyzer.suppressions.suppress_feedback),
            )

    def decide(self, values: Sequence[bytes | None]) -> list[Answer]:
        """One answer per value, in order (see :data:`Answer`)."""
        values = values if type(values) is list else [*values]
        try:
            answers: list[Answer] = self._path.decide(values)
        except BaseException as exc:  # a Rust panic arrives as a BaseException
            _native_fault(exc)
            return [None] * len(values)
        self._after()
        return answers

    def route(self, messages: Sequence[Any]) -> Routed | None:
        """The outputs and counts of a slice of messages (see :data:`Routed`; the
        :data:`Routes` given when made); None when the native path failed (a fault of its
        own, never the records'): the whole slice takes the Python path."""
        messages = messages if type(messages) is list else [*messages]
        try:
            routed: Routed = self._path.route(messages)
        except BaseException as exc:  # a Rust panic arrives as a BaseException
            _native_fault(exc)
            return None
        self._after()
        return routed

    def _after(self) -> None:
        """What a slice leaves: the cache hits, the watermark."""
        self.classifier.count_hits(*self._path.take_hits())
        if self.analyzer is not None:
            latest = self._path.take_watermark()
            aggregator = self.analyzer.aggregator
            if latest is not None and (
                aggregator.watermark is None or latest > aggregator.watermark
            ):
                aggregator.watermark = latest

    def count_until(self, until: int | None = None) -> None:
        """Count into the tally the records of the last slice decided natively before the
        ``until``-th (all without it): the Python path counts the ``until``-th next, so the
        tally keeps the records' order (what the bounded dimensions and gap sketches see)."""
        self._path.count_until(until)

    def _resolve(self, line: str) -> tuple[bool, str, bytes, bytes, bool, bytes]:
        """A native cache miss: the Python classifier's result, encoded once per result,
        whether the native analytics may count its records (by its evidence), and its rule as
        a hard bounce's suppression event names it."""
        result: Classification = self.classifier.classify(line)
        encoded = self._encoded.get(id(result))
        if encoded is None:
            encoded = self._encoded[id(result)] = (
                result.rule is not None,  # else Uncategorized: its own cache
                result.label,
                orjson.dumps(result.label),
                orjson.dumps(classification_object(result, self._version)),
                self.analyzer is None or result.evidence in self.analyzer.observer_evidence,
                orjson.dumps(rule_object(result.rule)),
            )
        return encoded

    def _resolve_feedback(self, label: str) -> tuple[bool, str, bytes, bytes, bool, bytes]:
        """What the native caches keep of a Feedback label (``records.feedback_classification``:
        no rule, the report as evidence)."""
        result = Classification(label, None, FEEDBACK_REPORT)
        return (
            True,
            label,
            orjson.dumps(label),
            orjson.dumps(classification_object(result, self._version)),
            self.analyzer is None or FEEDBACK_REPORT in self.analyzer.observer_evidence,
            b"null",
        )


def _native_fault(exc: BaseException) -> None:
    """Log a fault of the native path (the slice then takes the Python path); re-raise
    what is no fault of it (KeyboardInterrupt, SystemExit...)."""
    if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
        log.exception("native record path failed: this batch takes the Python path")
        return
    raise exc


def describe(use_native: bool) -> str:
    """:data:`NATIVE` or :data:`PYTHON`: the path a pipeline's records take (its
    ``use_native``), as ``/status`` and the start-up log name it."""
    return NATIVE if use_native else PYTHON


#: Set to 0 to make offline ``streamer classify`` take the Python loop even where the native
#: one is built (to compare the two: ``streamer bench files``).


class Rows(Protocol):
    """``streamer._native.Rows``: the output rows of one block of response lines."""

    def __len__(self) -> int: ...

    def __bytes__(self) -> bytes: ...

    def write_to(self, fd: int) -> None: ...


class LineLabeller(Protocol):
    """``streamer._native.LineLabeller``: response lines to ``streamer classify`` rows."""

    def label(self, data: bytes) -> tuple[Rows, int, list[int]]: ...


def line_labeller(
    resolve: Callable[[str], bytes], cache_size: int, not_utf8_row: bytes, native: bool | None
) -> LineLabeller | None:
    """The native loop of ``streamer classify --lines`` (None: the Python loop runs): by
    default wherever it is built and not :func:`switched_off`; ``native=False`` forces
    the Python loop, ``native=True`` requires the native one. ``resolve(line)`` makes the row
    of a line the native cache lacks (the Python labeller's)."""
    if native and not AVAILABLE:
        raise NativeMissing(MISSING)
    if native is None:
        native = AVAILABLE and not switched_off()
    if not native or _native is None:
        return None
    made: LineLabeller = _native.LineLabeller(resolve, cache_size, not_utf8_row)
    return made
