"""The keyed stages' metrics: the suppression stage and the stats rollup stage."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class KeyedStageMetrics:
    """What the suppression and stats rollup stages folded, wrote and hold."""

    def __init__(self, r: CollectorRegistry) -> None:
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
