"""Flow control: stop fetching while too many records are in flight, go on once half drained.

The limit is ``back_pressure`` (KumoMTA's option of the same name): records consumed whose
outputs are not all acknowledged yet (``OffsetTracker.unsettled``). At the limit the fetch loop
first waits for room (``wait_for_room``) without fetching: librdkafka keeps what it prefetched
and stops at its own queue bound, and fetching goes on from that queue at once. Only when no
room comes within ``PAUSE_AFTER_S`` (a slow or unreachable broker) are the assigned partitions
paused: librdkafka then drops its prefetched records, and a resumed partition fetches again only
~0.5 s later (its broker thread's next fetch decision), which a worker pausing at every burst
paid again and again. Either way memory stays bounded however far the producer side falls
behind; going on at half the limit (hysteresis) avoids flapping at the boundary.

With analytics, a record whose outputs are acknowledged still waits for the stats update that
counts it before its offset may be committed (*settled*). It holds no memory but that offset,
so it does not count against ``back_pressure``: pausing for it stalled the partitions until the
next update while nothing was left to process. Settled records have their own, wider bound
(``SETTLED_FACTOR`` x ``back_pressure``) that an early stats update keeps them under
(``streamer.worker.stats.flush_due``); it is reached only when updates are not acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.offsets import OffsetTracker

log = logging.getLogger("streamer.worker")

#: Settled records (waiting only for a stats update) that may wait, in ``back_pressure``s.
SETTLED_FACTOR = 8
#: How long the fetch loop waits for room at the limit before it pauses the partitions.
PAUSE_AFTER_S = 1.0


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
        self.settled_limit = limit * SETTLED_FACTOR
        self.metrics = metrics
        self.source: Pausable | None = None
        self.peak = 0
        #: Once stopping, nothing is resumed: the worker is draining.
        self.stopping = False
        #: Set when there is room again (``maybe_resume``), for ``wait_for_room``.
        self._room = asyncio.Event()

    def full(self) -> bool:
        """At a bound: the records whose outputs wait, or the settled ones."""
        tracker = self.tracker
        return tracker.unsettled >= self.limit or tracker.settled >= self.settled_limit

    def after_fetch(self) -> None:
        """A batch was registered: track the peak."""
        unsettled = self.tracker.unsettled
        if unsettled > self.peak:
            self.peak = unsettled
            self.metrics.in_flight_max.set(unsettled)

    async def wait_for_room(self) -> None:
        """Before a fetch: at the limit, wait until half drained; pause the partitions if that
        takes longer than ``PAUSE_AFTER_S`` (fetching then goes on, serving rebalances, and
        returns nothing until ``maybe_resume``)."""
        source = self.source
        if source is None or source.want_paused or self.stopping or not self.full():
            return
        self._room.clear()
        try:
            await asyncio.wait_for(self._room.wait(), PAUSE_AFTER_S)
            return
        except TimeoutError:
            pass
        if self.stopping or not self.full():
            return
        self.pause()

    def pause(self) -> None:
        """Pause every assigned partition (applied before the next fetch), once."""
        source = self.source
        unsettled = self.tracker.unsettled
        if source is not None and not source.want_paused:
            n = source.pause()
            self.metrics.backpressure_pauses.inc()
            self.metrics.paused_partitions.set(n + len(source.paused))  # applied at next fetch
            log_event(
                log,
                logging.INFO,
                "back-pressure: partitions paused",
                in_flight=unsettled,
                counted_waiting_for_stats=self.tracker.settled,
                limit=self.limit,
                partitions=n,
            )

    def maybe_resume(self) -> None:
        """Resume once the records whose outputs wait fell to half the limit (and the settled
        ones under theirs)."""
        tracker = self.tracker
        if tracker.unsettled > self.low_water or tracker.settled >= self.settled_limit:
            return
        self._room.set()
        source = self.source
        if source is not None and source.want_paused and not self.stopping:
            n = source.resume()
            self.metrics.paused_partitions.set(0)
            log_event(
                log,
                logging.INFO,
                "back-pressure: partitions resumed",
                in_flight=tracker.unsettled,
                partitions=n,
            )
