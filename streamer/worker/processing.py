"""Processing: one batch through the pipeline to the producer, under the checkpoint's mode.

A batch arrives grouped by partition (``Batch``: one chunk of tracked offsets per partition).
Each chunk is classified and produced slice by slice: a slice's outputs go to librdkafka before
the next slice is classified, so a big batch (a backlog after a pause) starts reaching the
broker at once, and between slices the loop serves acknowledgements and timers. Metrics are
updated once per batch, never per event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.kafka.sink import Sink
from streamer.metrics import Metrics
from streamer.pipeline import BatchStats, Pipeline
from streamer.worker.checkpoint import Checkpoint
from streamer.worker.offsets import OffsetChunk, OffsetTracker
from streamer.worker.stats import StatsPublisher

#: Records classified before their outputs are handed to the producer.
SLICE_RECORDS = 500


@dataclass(slots=True)
class Batch:
    """One consume() call's records, grouped by partition, each group with its chunk."""

    groups: list[tuple[OffsetChunk, list[Any]]]
    count: int
    consumed_at: float = field(default_factory=time.monotonic)
    #: Seconds from the broker timestamp of the batch's oldest record to its fetch.
    fetch_wait: float = 0.0


def make_batch(tracker: OffsetTracker, messages: Sequence[Any]) -> Batch | None:
    """Group messages by partition (order kept) and register each group's offsets.

    Messages carrying a consumer error must have been filtered out already. None when no
    message belongs to a partition still assigned.
    """
    by_tp: dict[tuple[str, int], list[Any]] = {}
    for m in messages:
        tp = (m.topic(), m.partition())
        group = by_tp.get(tp)
        if group is None:
            by_tp[tp] = [m]
        else:
            group.append(m)
    groups: list[tuple[OffsetChunk, list[Any]]] = []
    count = 0
    oldest_ms = 0
    for (topic, partition), msgs in by_tp.items():
        chunk = tracker.track(topic, partition, msgs[0].offset(), msgs[-1].offset(), len(msgs))
        if chunk is None:  # revoked since consume() (someone else reads it), or being rewound
            continue
        groups.append((chunk, msgs))
        count += len(msgs)
        ts_type, ts_ms = msgs[0].timestamp()
        if ts_type and ts_ms > 0 and (oldest_ms == 0 or ts_ms < oldest_ms):
            oldest_ms = ts_ms
    if not groups:
        return None
    wait = max(0.0, time.time() - oldest_ms / 1000) if oldest_ms else 0.0
    return Batch(groups, count, fetch_wait=wait)


class BatchProcessor:
    """Runs batches: the pipeline slice by slice, outputs to the sink, counts to the metrics.

    With analytics, the batch's records are tallied into the analyzer as they are classified.
    Each chunk carries a hold from its first slice on and goes to the stats publisher after the
    batch; the publisher's next flush folds the tally into the windows and releases the holds
    once the rows counting them are delivered (exactly-once: inside the batch's transaction).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        sink: Sink,
        metrics: Metrics,
        stats: StatsPublisher | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.metrics = metrics
        self.stats = stats
        self._stats = BatchStats()
        self._held: list[OffsetChunk] = []  # this batch's chunks, held until a stats flush

    async def process(self, batch: Batch, checkpoint: Checkpoint) -> int:
        """Run a batch; returns the records that went through (0 when the mode failed)."""
        self._stats = BatchStats()
        started = time.monotonic()
        publish = self._hold_and_flush if self.stats is not None else None
        done = await checkpoint.process(batch.groups, self.send_chunk, publish)
        if done and self.stats is not None:
            self.stats.settle_metrics()  # exactly-once: their transaction committed
        handed = time.monotonic()
        self.sink.mark_handed()
        if self._held:  # at-least-once: the timer's flush publishes (and releases) them
            self._hand_held()
        self.sink.poll(0)
        if done:
            s = self._stats
            m = self.metrics
            m.batches.inc()
            stage = m.stage_seconds
            stage["fetch"].observe(batch.fetch_wait)
            stage["queue"].observe(started - batch.consumed_at)
            stage["process"].observe(handed - started)
            m.record_batch(s)
        return done

    async def send_chunk(self, chunk: OffsetChunk, messages: Sequence[Any]) -> None:
        """Process and produce a chunk slice by slice, then seal it."""
        sink = self.sink
        if self.stats is not None:
            chunk.hold()  # released by the stats flush that counts it
            self._held.append(chunk)
        n = len(messages)
        for start in range(0, n, SLICE_RECORDS):
            part = messages if n <= SLICE_RECORDS else messages[start : start + SLICE_RECORDS]
            outputs, stats = self.pipeline.process(part)
            last = start + SLICE_RECORDS >= n
            await sink.send(outputs, chunk, seal=last)
            self._stats.merge(stats)
            if not last:
                sink.poll(0)
                await asyncio.sleep(0)

    def _hand_held(self) -> None:
        assert self.stats is not None
        self.stats.hold(self._held)
        self._held = []

    async def _hold_and_flush(self) -> int:
        """Exactly-once: inside the batch's transaction."""
        self._hand_held()
        assert self.stats is not None
        return await self.stats.flush()
