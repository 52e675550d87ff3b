"""Every metric of one worker, in its own registry (names are part of the project's contract)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, GCCollector, ProcessCollector

from streamer.metrics.deliverability import METRIC_VALUES_PER_DIMENSION, DeliverabilityMetrics
from streamer.metrics.flow import FlowMetrics
from streamer.metrics.keyed import KeyedStageMetrics
from streamer.metrics.rules import ClassifierMetrics
from streamer.metrics.serving import serve_registry
from streamer.metrics.traffic import TrafficMetrics


class Metrics(TrafficMetrics, ClassifierMetrics, FlowMetrics, KeyedStageMetrics):
    """Every metric of one worker, in its own registry (so several can live in one process).

    One class per concern (its base classes); the worker reads them all as one object.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_values: int = METRIC_VALUES_PER_DIMENSION,
        top_keys: int = 2000,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        TrafficMetrics.__init__(self, r, top_keys)
        ClassifierMetrics.__init__(self, r)
        FlowMetrics.__init__(self, r)
        KeyedStageMetrics.__init__(self, r)
        self.deliverability = DeliverabilityMetrics(r, max_values, top_keys)
        # process_* (CPU seconds, resident memory, open fds, start time) and python_gc_*, as the
        # default registry has them; this registry is the worker's own.
        ProcessCollector(registry=r)
        GCCollector(registry=r)

    @staticmethod
    def total(metric: Counter) -> float:
        """A counter's value summed over all its label values (for ``/status`` and logs)."""
        return sum(
            s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total")
        )

    def serve(self, host: str, port: int, *, fallback: bool = True) -> int:
        """Start the /metrics HTTP endpoint in a thread (``serve_registry``)."""
        return serve_registry(self.registry, host, port, fallback=fallback)
