"""The records a worker moves: in, out, dead-lettered, dropped, how long each step took."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from streamer.metrics.collectors import BulkHistogram, RollingTop
from streamer.records import LOG_HOOK_TYPE, RECORD_TYPES

if TYPE_CHECKING:
    from streamer.pipeline import BatchStats

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

SiteLabel = tuple[str, str]


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


#: Record types exported as themselves (and ``log_hook``: a log hook's bookkeeping records,
#: ``streamer.records.is_log_hook_record``); any other type (an input value: a newer KumoMTA's, or
#: garbage) is counted as ``other``, so the series stay bounded whatever the input says.
SERIES_TYPES = frozenset({*RECORD_TYPES, LOG_HOOK_TYPE, "malformed"})


def _series_type(rtype: str) -> str:
    return rtype if rtype in SERIES_TYPES else "other"


class TrafficMetrics:
    """Records in and out, per batch (``record_batch``), and where they waited."""

    def __init__(self, r: CollectorRegistry, top_keys: int) -> None:
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
        self.batches = Counter(
            "streamer_batches", "Batches processed (one consume() call each).", registry=r
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

    def record_batch(self, stats: BatchStats) -> None:
        """Count one batch's records (the pipeline's aggregated counts, never per event)."""
        for rtype, n in stats.events_in.items():
            self.events_in.labels(_series_type(rtype)).inc(n)
        for (rtype, label), n in stats.events_out.items():
            self.events_out.labels(_series_type(rtype), label).inc(n)
        for reason, n in stats.dlq.items():
            self.dlq.labels(reason).inc(n)
        if stats.dropped:
            self.dropped.inc(stats.dropped)
        if stats.classify_seconds:
            self.classify_seconds.observe_many(stats.classify_seconds)
        if stats.sites:
            self.top_sites.add(stats.sites)
