"""Prometheus metrics of the worker (names are part of the project's contract).

Counters are updated once per batch from the pipeline's aggregated counts, never per event. The
classification latency histogram is fed with a whole batch of per-record durations at once
(``BulkHistogram``), which costs a bisect per record instead of a lock and a label lookup.

One module per concern: ``collectors`` (generic collectors), ``traffic``, ``rules``, ``flow`` and
``keyed`` (the worker's metrics, gathered by ``worker.Metrics``), ``deliverability`` (the
deliverability dashboard's) and ``serving`` (the HTTP endpoint).
"""

from streamer.metrics.collectors import BulkHistogram, RollingTop
from streamer.metrics.deliverability import (
    DIMENSIONS,
    METRIC_VALUES_PER_DIMENSION,
    DeliverabilityMetrics,
)
from streamer.metrics.serving import serve_registry
from streamer.metrics.traffic import CLASSIFY_BUCKETS, SERIES_TYPES, STAGE_BUCKETS, STAGES, TopSites
from streamer.metrics.worker import Metrics

__all__ = [
    "CLASSIFY_BUCKETS",
    "DIMENSIONS",
    "METRIC_VALUES_PER_DIMENSION",
    "SERIES_TYPES",
    "STAGES",
    "STAGE_BUCKETS",
    "BulkHistogram",
    "DeliverabilityMetrics",
    "Metrics",
    "RollingTop",
    "TopSites",
    "serve_registry",
]
