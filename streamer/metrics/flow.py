"""The consumer's flow: what is in flight, paused, lagging, committed, produced again."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge


class FlowMetrics:
    """Back-pressure, the assignment and its lag, commits, retries and records read again."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.in_flight = Gauge(
            "streamer_in_flight",
            "Records consumed whose outputs are not acknowledged yet.",
            registry=r,
        )
        self.awaiting_stats = Gauge(
            "streamer_awaiting_stats",
            "Records whose outputs are acknowledged, waiting for the stats update that counts "
            "them before their offsets may be committed (analytics on).",
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

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series with the current assignment's."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
