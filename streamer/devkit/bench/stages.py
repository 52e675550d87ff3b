"""Where a record's latency goes: the workers' ``streamer_stage_seconds`` over a measured run.

Each worker observes four stages once per batch (``streamer.metrics.STAGES``): ``fetch`` (broker
append of the batch's oldest record to its fetch: the input topic has log-append time), ``queue``
(fetched to processing), ``process`` (to the last output handed to the producer) and ``deliver``
(to the outputs' acknowledgement). The benchmark snapshots the histograms of every worker before
and after the measured run and reports, per stage, the mean and the 99th percentile of the
difference (the percentile is the upper bound of its bucket). ``produce`` (the benchmark's own
producer: produce() call to input append) is measured from the input topic's timestamps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from streamer.devkit.harness import scrape_metrics
from streamer.metrics import STAGES


@dataclass
class StageHistogram:
    """Cumulative bucket counts (``le`` -> count), sum and count of one stage."""

    buckets: dict[float, float] = field(default_factory=dict)
    total: float = 0.0
    count: float = 0.0

    def minus(self, other: StageHistogram) -> StageHistogram:
        return StageHistogram(
            {le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.total - other.total,
            self.count - other.count,
        )

    def quantile(self, q: float) -> float:
        """Upper bound (seconds) of the bucket holding the q-quantile; 0 without data."""
        if self.count <= 0:
            return 0.0
        rank = q * self.count
        for le in sorted(self.buckets):
            if self.buckets[le] >= rank:
                return le
        return math.inf


Snapshot = dict[str, StageHistogram]


def snapshot(ports: Iterable[int]) -> Snapshot:
    """The stage histograms summed over the workers listening on ``ports``."""
    out = {stage: StageHistogram() for stage in STAGES}
    for port in ports:
        samples = scrape_metrics(port)
        for labels, value in samples.get("streamer_stage_seconds_bucket", []):
            h = out.get(labels.get("stage", ""))
            if h is not None:
                le = float(labels["le"])
                h.buckets[le] = h.buckets.get(le, 0.0) + value
        for name, attr in (("_sum", "total"), ("_count", "count")):
            for labels, value in samples.get(f"streamer_stage_seconds{name}", []):
                h = out.get(labels.get("stage", ""))
                if h is not None:
                    setattr(h, attr, getattr(h, attr) + value)
    return out


def breakdown(
    before: Snapshot, after: Snapshot, produce_ms: Sequence[float]
) -> dict[str, dict[str, float]]:
    """``stage -> {"mean_ms", "p99_ms", "batches"}`` for the run between the snapshots."""
    out: dict[str, dict[str, float]] = {}
    if produce_ms:
        ordered = sorted(produce_ms)
        out["produce"] = {
            "mean_ms": round(sum(ordered) / len(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
            "batches": float(len(ordered)),
        }
    for stage in STAGES:
        h = after[stage].minus(before.get(stage, StageHistogram()))
        mean = h.total / h.count if h.count > 0 else 0.0
        out[stage] = {
            "mean_ms": round(1000 * mean, 2),
            "p99_ms": round(1000 * h.quantile(0.99), 2),
            "batches": h.count,
        }
    return out


def table(stages: dict[str, dict[str, float]]) -> str:
    """One line: ``fetch 3.1/12 ms · queue ...`` (mean/p99)."""
    return (
        " · ".join(f"{name} {v['mean_ms']:.1f}/{v['p99_ms']:.0f}" for name, v in stages.items())
        + " ms (mean/p99)"
    )
