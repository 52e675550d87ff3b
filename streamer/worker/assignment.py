"""Partition assignment: what the worker does when its consumer group rebalances.

Callbacks arrive from the fetch thread (``streamer.kafka.source``) and run on the event loop.
A revoked partition's queued and in-flight records are finished first (bounded in time), so the
checkpoint can commit them before the partition moves; whatever is left is abandoned: never
committed, consumed again by the next owner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from streamer.kafka.sink import Sink
from streamer.kafka.source import TP, RebalanceHandler
from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.checkpoint import Checkpoint
from streamer.worker.flow import FlowControl
from streamer.worker.offsets import RewindError

log = logging.getLogger("streamer.worker")

#: How long a revoke waits for in-flight records before giving them up.
DRAIN_TIMEOUT_S = 20.0


class PartitionLifecycle(RebalanceHandler):
    def __init__(
        self,
        checkpoint: Checkpoint,
        sink: Sink,
        flow: FlowControl,
        metrics: Metrics,
        publish: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        #: Publishes what holds chunks back (the stats update), so revoked ones can finish.
        self.publish = publish
        self.tracker = checkpoint.tracker
        self.sink = sink
        self.flow = flow
        self.metrics = metrics

    async def on_assigned(self, tps: list[TP]) -> None:
        self.tracker.assign(tps)
        log_event(log, logging.INFO, "partitions assigned", partitions=format_partitions(tps))

    async def on_revoking(self, tps: list[TP]) -> dict[TP, int]:
        """Finish what is queued or in flight for the partitions, then say what to commit."""
        if self.publish is not None:
            await self.publish()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        # a fatal producer (e.g. no ACL to write) acknowledges nothing more: no use waiting
        while (
            self.tracker.open_records(tps)
            and time.monotonic() < deadline
            and self.sink.fatal is None
        ):
            self.sink.poll(0)
            await asyncio.sleep(0.005)
        return self.checkpoint.positions_to_commit(tps)

    async def on_revoked(self, tps: list[TP], *, lost: bool) -> None:
        n = self.checkpoint.forget(tps)
        self.metrics.abandoned.inc(n)
        log_event(
            log,
            logging.WARNING if (lost or n) else logging.INFO,
            "partitions lost" if lost else "partitions revoked",
            partitions=format_partitions(tps),
            abandoned_records=n,
        )
        self.flow.maybe_resume()

    def on_committed(self, positions: dict[TP, int]) -> None:
        self.checkpoint.on_committed(positions)

    def on_rewound(self, tps: set[TP], failed: dict[TP, str]) -> None:
        """Exactly-once recovery (``streamer.worker.rewind``): the consumer reads ``tps`` from
        their rewind offsets now. A failed seek of a partition still owned leaves no safe way
        on: RewindError."""
        self.tracker.positioned(tps)
        failed = {tp: why for tp, why in failed.items() if self.tracker.owns(tp)}
        if failed:
            raise RewindError(
                "seek failed: "
                + ", ".join(f"{t}:{p} ({e})" for (t, p), e in sorted(failed.items()))
            )


def format_partitions(tps: Iterable[TP]) -> str:
    """``topic:partition,...``, or "none" (a log field never reads as empty)."""
    return ",".join(f"{t}:{p}" for t, p in sorted(tps)) or "none"
