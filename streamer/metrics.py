"""Prometheus metrics of the worker (names are part of the project's contract).

Counters are updated once per batch from the pipeline's aggregated counts, never per event. The
classification latency histogram is fed with a whole batch of per-record durations at once
(``BulkHistogram``), which costs a bisect per record instead of a lock and a label lookup.
"""

from __future__ import annotations

import errno
import heapq
import logging
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streamer.analytics.batch import Folded
from streamer.analytics.heavy import OTHER, BoundedDimension
from streamer.analytics.windows import DIMENSIONS as STATS_DIMENSIONS
from streamer.records import LOG_HOOK_TYPE, RECORD_TYPES

#: Where a record waits (``streamer_stage_seconds``), one observation per batch: ms to seconds.
STAGES = ("fetch", "queue", "process", "deliver")
STAGE_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip

#: Buckets for per-record classification time: a cache hit is ~µs, a regex-set scan ~10-100 µs.
CLASSIFY_BUCKETS: tuple[float, ...] = (
    0.000_002,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.1,
)


class BulkHistogram(Collector):
    """A histogram that takes many observations per call (exported like a normal histogram)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # last slot: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self.bounds
        counts = [0] * len(self._counts)
        total = 0.0
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            total += v
        with self._lock:
            for i, n in enumerate(counts):
                self._counts[i] += n
            self._sum += total

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum

    def collect(self) -> Iterator[Metric]:
        counts, total = self.snapshot()
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, n in zip(self.bounds, counts, strict=False):
            cumulative += n
            buckets.append((repr(bound), cumulative))
        cumulative += counts[-1]
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


SiteLabel = tuple[str, str]
LabelValues = tuple[str, ...]


class RollingTop(Collector):
    """A gauge of the ``top`` keys with the most counts over the last ``window`` seconds.

    Keys are tuples of label values. With ``per`` set, each value of that label gets its own top
    list (``streamer_top_sites``: the top sites of each label); without, there is one list.
    Bounded cardinality: at most ``top`` series per list, and a key that drops out of its list
    (or out of the window) is no longer exported. Cheap: ``add`` merges a batch's counts into
    the current time bucket, and ``refresh`` (from the worker's timer) closes buckets as their
    time passes, keeping a running total (add the new bucket, subtract the one leaving the
    window) and recomputing the top lists once per bucket. Memory stays bounded however many
    keys the traffic names: a bucket keeps at most ``max_keys`` keys (its largest), and the
    current bucket is trimmed to that as soon as it holds twice as many.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: LabelValues,
        *,
        per: int | None = None,
        top: int = 20,
        window: float = 300.0,
        buckets: int = 30,
        max_keys: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.per = per
        self.top = top
        self.buckets = buckets
        self.width = window / buckets
        self.max_keys = max_keys
        self.clock = clock
        self._closed: deque[Tally[LabelValues]] = deque()
        self._total: Tally[LabelValues] = Tally()
        self._current: Tally[LabelValues] = Tally()
        self._bucket_start = clock()
        self._series: list[tuple[LabelValues, float]] = []  # replaced whole: read by the scraper

    def add(self, counts: Mapping[Any, int]) -> None:
        if counts:
            self._current.update(counts)
            if len(self._current) > 2 * self.max_keys:
                self._current = Tally(dict(self._current.most_common(self.max_keys)))

    def refresh(self) -> bool:
        """Close the buckets whose time is up; True when the exported top lists changed."""
        elapsed = int((self.clock() - self._bucket_start) // self.width)
        if elapsed < 1:
            return False
        self._bucket_start += elapsed * self.width
        current, self._current = self._current, Tally()
        if len(current) > self.max_keys:
            current = Tally(dict(current.most_common(self.max_keys)))
        # the closed bucket, then one empty bucket per bucket time that passed without a refresh
        for bucket in [current, *([Tally()] * min(elapsed - 1, self.buckets))]:
            self._closed.append(bucket)
            self._total.update(bucket)
            if len(self._closed) > self.buckets:
                self._total.subtract(self._closed.popleft())
        self._total = +self._total  # drop keys whose count fell to zero
        lists: dict[str, list[tuple[int, LabelValues]]] = {}
        for key, n in self._total.items():
            lists.setdefault("" if self.per is None else key[self.per], []).append((n, key))
        self._series = [
            (key, float(n))
            for _group, counts in sorted(lists.items())
            for n, key in heapq.nlargest(self.top, counts)
        ]
        return True

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for key, n in self._series:
            family.add_metric(list(key), n)
        yield family


class TopSites(RollingTop):
    """``streamer_top_sites{site,label}``: for each label, the ``top`` receiving sites with the
    most classified records over the last ``window`` seconds, as seen by this worker."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            "streamer_top_sites",
            "Classified records per receiving site and label over the last 5 minutes; only "
            "each label's top sites of this worker are exported.",
            ("site", "label"),
            per=1,
            **kwargs,
        )


#: Delivery outcomes exported per dimension value: ``delivered`` for Delivery records, else the
#: category of a classified record.
DIMENSIONS = STATS_DIMENSIONS
#: Distinct values per dimension exported as series (the heaviest; the rest count as "other").
METRIC_VALUES_PER_DIMENSION = 50


class DeliverabilityMetrics:
    """The deliverability dashboard's metrics, fed from the analytics' partial counts per batch.

    ``streamer_outcomes_total{dimension,value,outcome}``, ``streamer_labels_total{provider,label}``
    and ``streamer_rule_gaps{template}`` (top rule-gap templates over 5 minutes: Uncategorized, or
    classified by the reply code alone). Label
    values are bounded: the stats dimensions are bounded already, and each dimension exports at
    most ``METRIC_VALUES_PER_DIMENSION`` values (its heaviest) plus ``other``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        max_values: int = METRIC_VALUES_PER_DIMENSION,
        top_keys: int = 2000,
    ) -> None:
        self.outcomes = Counter(
            "streamer_outcomes",
            "Delivery outcomes (delivered, or the category of a classified record) per value "
            "of a dimension (provider, egress_pool, egress_source, tenant).",
            ["dimension", "value", "outcome"],
            registry=registry,
        )
        self.labels = Counter(
            "streamer_labels",
            "Classified records per mailbox provider and label.",
            ["provider", "label"],
            registry=registry,
        )
        self.rule_gaps = RollingTop(
            "streamer_rule_gaps",
            "Rule gaps (Uncategorized, or by the reply code alone) per template, last 5 minutes.",
            ("template",),
            max_keys=top_keys,
        )
        registry.register(self.rule_gaps)
        self._values = {
            d: BoundedDimension(max_values, rebalance_every=100_000) for d in DIMENSIONS
        }
        # bounded: every label value comes through a BoundedDimension or a finite table
        self._children: dict[tuple[str, ...], Any] = {}
        #: The values each dimension exported at the last fold: a value its BoundedDimension
        #: no longer admits (a rebalance) loses its series, so they stay bounded over time.
        self._exported: dict[str, frozenset[str]] = {d: frozenset() for d in DIMENSIONS}

    def record(self, batch: Folded) -> None:
        """Count one fold of the tally (``BatchAggregator.fold_into``).

        Runs once per fold: each dimension value is bounded once per fold, and the counters'
        children are kept (their label sets are bounded), so the cost is per distinct series,
        not per record.
        """
        outcomes: Tally[tuple[str, str, str]] = Tally()
        for i, dim in enumerate(DIMENSIONS):
            volume: Tally[str] = Tally()
            for dims, n in batch.volume.items():
                volume[dims[i]] += n
            if "*" in volume:
                continue  # a dimension the stats leave out
            bounded = {v: self._values[dim].map(v, n) for v, n in volume.items()}
            for dims, tally in batch.outcomes.items():
                v = bounded[dims[i]]
                for outcome, n in tally.items():
                    outcomes[dim, v, outcome] += n
        for series, n in outcomes.items():
            self._child(self.outcomes, series).inc(n)
        for dim in DIMENSIONS:
            self._retire(dim)
        for series2, n in batch.labels.items():
            self._child(self.labels, series2).inc(n)
        self.rule_gaps.add({(t,): n for t, n in batch.gaps.items()})

    def _retire(self, dim: str) -> None:
        """Remove the outcome series of values ``dim`` no longer admits (after a rebalance)."""
        admitted = self._values[dim].admitted
        if admitted == self._exported[dim]:
            return  # the common case: no rebalance since the last fold
        self._exported[dim] = admitted
        name = self.outcomes._name
        for key in [
            k
            for k in self._children
            if k[0] == name and k[1] == dim and k[2] not in admitted and k[2] != OTHER
        ]:
            del self._children[key]
            self.outcomes.remove(*key[1:])

    def _child(self, counter: Counter, series: tuple[str, ...]) -> Any:
        """``counter.labels(*series)``, remembered (a lookup there costs microseconds)."""
        key = (counter._name, *series)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*series)
        return child


#: Record types exported as themselves (and ``log_hook``: a log hook's bookkeeping records,
#: ``streamer.records.is_log_hook_record``); any other type (an input value: a newer KumoMTA's, or
#: garbage) is counted as ``other``, so the series stay bounded whatever the input says.
SERIES_TYPES = frozenset({*RECORD_TYPES, LOG_HOOK_TYPE, "malformed"})


def _series_type(rtype: str) -> str:
    return rtype if rtype in SERIES_TYPES else "other"


class Metrics:
    """Every metric of one worker, in its own registry (so several can live in one process)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_values: int = METRIC_VALUES_PER_DIMENSION,
        top_keys: int = 2000,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "streamer_events_in", "Records consumed, by record type.", ["record_type"], registry=r
        )
        self.events_out = Counter(
            "streamer_events_out",
            "Records published to an output topic, by record type and label.",
            ["record_type", "label"],
            registry=r,
        )
        self.dlq = Counter(
            "streamer_dlq",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.dropped = Counter(
            "streamer_events_dropped", "Records dropped by non_classifiable=drop.", registry=r
        )
        self.classify_seconds = BulkHistogram(
            "streamer_classify_seconds", "Time to classify one record.", CLASSIFY_BUCKETS
        )
        r.register(self.classify_seconds)
        self.cache_hits = Counter(
            "streamer_cache_hits", "Classifier cache hits.", ["cache"], registry=r
        )
        self.cache_misses = Counter(
            "streamer_cache_misses", "Classifier cache misses.", ["cache"], registry=r
        )
        self.in_flight = Gauge(
            "streamer_in_flight",
            "Records consumed whose outputs are not acknowledged yet.",
            registry=r,
        )
        self.in_flight_max = Gauge(
            "streamer_in_flight_max",
            "Most records in flight at once since the worker started (memory bound check).",
            registry=r,
        )
        self.paused_partitions = Gauge(
            "streamer_paused_partitions",
            "Assigned partitions paused by back-pressure.",
            registry=r,
        )
        self.backpressure_pauses = Counter(
            "streamer_backpressure_pauses", "Times the worker paused fetching.", registry=r
        )
        self.rules_info = Gauge(
            "streamer_rules_info",
            "The loaded rules' version (value is always 1).",
            ["version"],
            registry=r,
        )
        self.native_path = Gauge(
            "streamer_native_path",
            "1: records take the native record path (streamer._native); 0: the Python path.",
            registry=r,
        )
        self.rules_reloads = Counter(
            "streamer_rules_reloads", "Successful rules reloads.", registry=r
        )
        self.rules_reload_failures = Counter(
            "streamer_rules_reload_failures", "Failed rules reloads (old rules kept).", registry=r
        )
        self.consumer_lag = Gauge(
            "streamer_consumer_lag",
            "High watermark minus the consumer position, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "streamer_assigned_partitions", "Input partitions assigned to this worker.", registry=r
        )
        self.commits = Counter(
            "streamer_commits", "Offset commits sent (one per commit call).", registry=r
        )
        self.produce_retries = Counter(
            "streamer_produce_retries",
            "Outputs produced again after a failed delivery, by outcome.",
            ["action"],
            registry=r,
        )
        self.batches = Counter(
            "streamer_batches", "Batches processed (one consume() call each).", registry=r
        )
        self.abandoned = Counter(
            "streamer_abandoned_records",
            "Records consumed but never committed by this worker (partition revoked or lost, "
            "or a failed transaction): the next owner consumes them again.",
            registry=r,
        )
        self.rewinds = Counter(
            "streamer_rewinds",
            "Exactly-once transactions aborted and read again from the last commit, in place "
            "(overtaken by a rebalance, or the producer needed a new epoch).",
            registry=r,
        )
        self.suppression_events = Counter(
            "streamer_suppression_events",
            "Suppression events the suppression stage folded.",
            registry=r,
        )
        self.suppression_writes = Counter(
            "streamer_suppression_writes",
            "Writes of the suppression stage: public (the suppressions topic), changelog.",
            ["topic"],
            registry=r,
        )
        self.suppression_untrusted = Counter(
            "streamer_suppression_untrusted_oob",
            "Hard OOBs (DSNs) the suppression stage held without suppressing: no delivery to "
            "the recipient within oob_trust_period is known (forged, or forgotten).",
            registry=r,
        )
        self.suppression_recipients = Gauge(
            "streamer_suppression_recipients",
            "Recipients the suppression stage remembers (bounded by suppressions_memory).",
            registry=r,
        )
        self.rollup_partials = Counter(
            "streamer_stats_partials",
            "Partial stats rows the stats rollup stage folded.",
            registry=r,
        )
        self.rollup_writes = Counter(
            "streamer_stats_rollup_writes",
            "Writes of the stats rollup stage: public (the stats topic), changelog.",
            ["topic"],
            registry=r,
        )
        self.rollup_keys = Gauge(
            "streamer_stats_rollup_keys",
            "Window and dimension keys the stats rollup stage holds (bounded by "
            "stats_rollup_rows and stats_rollup_retention).",
            registry=r,
        )
        self.rollup_late = Counter(
            "streamer_stats_late_partials",
            "Partial stats rows for windows the rollup stage had retired: not folded.",
            registry=r,
        )
        stage = Histogram(
            "streamer_stage_seconds",
            "Where records wait, per batch: fetch (broker timestamp of the batch's oldest record "
            "to its fetch), queue (fetched to processing), process (to the last output handed "
            "to the producer), deliver (to the broker's acknowledgement of the outputs).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        #: stage -> its histogram child (observed once per batch)
        self.stage_seconds = {name: stage.labels(name) for name in STAGES}
        self.top_sites = TopSites(max_keys=top_keys)
        r.register(self.top_sites)
        self.deliverability = DeliverabilityMetrics(r, max_values, top_keys)
        # process_* (CPU seconds, resident memory, open fds, start time) and python_gc_*, as the
        # default registry has them; this registry is the worker's own.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self._rules_version: str | None = None
        self._cache_seen: dict[tuple[str, str], int] = {}

    @staticmethod
    def total(metric: Counter) -> float:
        """A counter's value summed over all its label values (for ``/status`` and logs)."""
        return sum(
            s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")
        )

    def serve(self, host: str, port: int, *, fallback: bool = True) -> int:
        """Start the /metrics HTTP endpoint in a thread (``serve_registry``)."""
        return serve_registry(self.registry, host, port, fallback=fallback)

    def record_batch(
        self,
        events_in: Mapping[str, int],
        events_out: Mapping[tuple[str, str], int],
        dlq: Mapping[str, int],
        dropped: int,
        classify_seconds: list[float],
        sites: Mapping[SiteLabel, int] | None = None,
    ) -> None:
        for rtype, n in events_in.items():
            self.events_in.labels(_series_type(rtype)).inc(n)
        for (rtype, label), n in events_out.items():
            self.events_out.labels(_series_type(rtype), label).inc(n)
        for reason, n in dlq.items():
            self.dlq.labels(reason).inc(n)
        if dropped:
            self.dropped.inc(dropped)
        if classify_seconds:
            self.classify_seconds.observe_many(classify_seconds)
        if sites:
            self.top_sites.add(sites)

    def set_rules_version(self, version: str) -> None:
        if self._rules_version is not None and self._rules_version != version:
            self.rules_info.remove(self._rules_version)
        self._rules_version = version
        self.rules_info.labels(version).set(1)

    def update_cache_stats(self, stats: Mapping[str, Mapping[str, int]], *, reset: bool) -> None:
        """Feed the cumulative counts of the current classifier's caches (reset: a new one)."""
        if reset:
            self._cache_seen.clear()
        for cache, s in stats.items():
            for kind, counter in (("hits", self.cache_hits), ("misses", self.cache_misses)):
                now = int(s.get(kind, 0))
                delta = now - self._cache_seen.get((cache, kind), 0)
                if delta > 0:
                    counter.labels(cache).inc(delta)
                self._cache_seen[cache, kind] = now

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series with the current assignment's."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)


def serve_registry(
    registry: CollectorRegistry, host: str, port: int, *, fallback: bool = True
) -> int:
    """Start the /metrics HTTP endpoint in a thread; returns the bound port (0 = disabled).

    When ``port`` is taken (another worker on this host) it listens on a free port instead
    and logs a warning naming ``metrics_port``; without ``fallback`` it raises
    ``streamer.ports.PortInUseError`` naming the setting.
    """
    if port == 0:
        return 0
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        from streamer.ports import PortInUseError

        if not fallback:
            raise PortInUseError(
                errno.EADDRINUSE, f"metrics_port: {host}:{port} is in use by another process"
            ) from None
        server, _thread = start_http_server(0, addr=host, registry=registry)
        logging.getLogger(__name__).warning(
            "metrics_port: %s:%d is in use; serving metrics on port %d instead",
            host,
            port,
            server.server_port,
        )
    return int(server.server_port)
