"""Flow control: pause fetching while too many records are in flight, resume once half drained.

The limit is ``back_pressure`` (KumoMTA's option of the same name): records consumed whose
outputs are not all acknowledged yet. Pausing every assigned partition stops librdkafka from
fetching more, so memory stays bounded however far the producer side falls behind; resuming at
half the limit (hysteresis) avoids flapping at the boundary.
"""

from __future__ import annotations

import logging
from typing import Protocol

from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.offsets import OffsetTracker

log = logging.getLogger("streamer.worker")


class Pausable(Protocol):
    """What can be paused (``streamer.kafka.source.Source``: applied before its next fetch)."""

    @property
    def want_paused(self) -> bool: ...
    @property
    def paused(self) -> set[tuple[str, int]]: ...
    def pause(self) -> int: ...
    def resume(self) -> int: ...


class FlowControl:
    def __init__(self, tracker: OffsetTracker, limit: int, metrics: Metrics) -> None:
        self.tracker = tracker
        self.limit = limit
        self.low_water = max(0, limit // 2)
        self.metrics = metrics
        self.source: Pausable | None = None
        self.peak = 0
        #: Once stopping, nothing is resumed: the worker is draining.
        self.stopping = False

    def after_fetch(self) -> None:
        """A batch was registered: track the peak and pause at the limit."""
        in_flight = self.tracker.in_flight
        if in_flight > self.peak:
            self.peak = in_flight
            self.metrics.in_flight_max.set(in_flight)
        source = self.source
        if source is not None and in_flight >= self.limit and not source.want_paused:
            n = source.pause()
            self.metrics.backpressure_pauses.inc()
            self.metrics.paused_partitions.set(n + len(source.paused))  # applied at next fetch
            log_event(
                log,
                logging.INFO,
                "back-pressure: partitions paused",
                in_flight=in_flight,
                limit=self.limit,
                partitions=n,
            )

    def maybe_resume(self) -> None:
        """Resume once the in-flight records fell to half the limit."""
        source = self.source
        if source is None or not source.want_paused or self.stopping:
            return
        if self.tracker.in_flight <= self.low_water:
            n = source.resume()
            self.metrics.paused_partitions.set(0)
            log_event(
                log,
                logging.INFO,
                "back-pressure: partitions resumed",
                in_flight=self.tracker.in_flight,
                partitions=n,
            )
