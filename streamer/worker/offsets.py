"""Which input offsets may be committed: the contiguous prefix whose outputs were all acknowledged.

The worker consumes in batches and splits each batch by partition into *chunks* (a run of
offsets of one partition, produced together). A chunk is done when it is sealed (every output it
will produce has been handed to the producer) and every one of those outputs has been
acknowledged by the broker. For each partition the committable position is one past the last
offset of the longest run of done chunks at the front of its queue, so an offset is never
committed while an earlier offset of the same partition still waits for an acknowledgement.

Bookkeeping is per chunk, not per event: a delivery acknowledgement costs one decrement. All
methods are meant to be called from one thread (the worker's event loop thread: delivery
callbacks only fire from ``Producer.poll``/``flush`` called there).

Partitions belong to an *assignment generation*: revoking a partition drops its tracker, and
chunks created for it before the revocation are abandoned: their late acknowledgements are
ignored and they can never produce a commit, even if the partition is assigned again later.

Exactly-once mode can also *rewind* (``rewind``): an aborted transaction abandons every
uncommitted chunk, and each partition is read again from its first uncommitted offset. Records
fetched before the consumer's seek took effect are refused (``track`` returns None) until the
source says the partition is read from there again (``positioned``); the first chunk after that
must start exactly at that offset, or ``RewindError``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer.kafka.source import TP


class RewindError(Exception):
    """After a seek, a partition's records did not start where the seek put it."""


class OffsetChunk:
    """Offsets ``first..last`` (``count`` records) of one partition, produced together.

    With analytics a chunk is also *held* (``hold``) until the stats update counting its records
    is acknowledged (``release``). Once its own outputs are all acknowledged it is *settled*: it
    waits only for that update, holds no record in memory, and no longer counts against
    ``back_pressure`` (``OffsetTracker.unsettled``), only against the commit.
    """

    __slots__ = (
        "_owner",
        "abandoned",
        "count",
        "done",
        "first",
        "held",
        "last",
        "pending",
        "sealed",
        "settled",
    )

    def __init__(self, owner: PartitionTracker, first: int, last: int, count: int) -> None:
        self._owner = owner
        self.first = first
        self.last = last
        self.count = count
        self.pending = 0  # outputs handed to the producer and not yet acknowledged
        self.sealed = False  # no more outputs will be added
        self.held = False  # a stats update counting these records is still to come
        self.settled = False  # held, every output acknowledged
        self.done = False
        self.abandoned = False

    @property
    def topic(self) -> str:
        return self._owner.topic

    @property
    def partition(self) -> int:
        return self._owner.partition

    def add_pending(self, n: int = 1) -> None:
        self.pending += n

    def ack(self) -> None:
        """One output of this chunk was acknowledged by the broker (the sink inlines this)."""
        self.pending -= 1
        if self.pending == 0 and self.sealed:
            self.outputs_acknowledged()

    def seal(self) -> None:
        """Every output of this chunk has been handed to the producer."""
        self.sealed = True
        if self.pending == 0:
            self.outputs_acknowledged()

    def hold(self) -> None:
        """The chunk's records were tallied: it waits for the stats update that counts them."""
        self.held = True

    def release(self) -> None:
        """The stats update counting these records was acknowledged."""
        self.held = False
        if self.pending == 0 and self.sealed:  # settled: ``finish`` counts it out of both
            self.finish()

    def outputs_acknowledged(self) -> None:
        """Sealed and every output acknowledged: done, or settled while still held."""
        if not self.held:
            self.finish()
        elif not self.settled and not self.done:
            self.settled = True
            if not self.abandoned:
                self._owner.tracker.settled += self.count

    def finish(self) -> None:
        """The chunk's offsets may be committed (exactly-once: its transaction committed)."""
        if self.done:
            return
        self.done = True
        if not self.abandoned:
            tracker = self._owner.tracker
            tracker.in_flight -= self.count
            if self.settled:
                tracker.settled -= self.count
        self.settled = False

    def __repr__(self) -> str:
        state = "abandoned" if self.abandoned else "done" if self.done else "open"
        return (
            f"OffsetChunk({self.topic}[{self.partition}] {self.first}..{self.last}, "
            f"pending={self.pending}, sealed={self.sealed}, {state})"
        )


class PartitionTracker:
    """The chunks of one partition in consume order, for one assignment generation."""

    __slots__ = ("chunks", "committed", "generation", "partition", "topic", "tracker")

    def __init__(self, tracker: OffsetTracker, topic: str, partition: int, generation: int) -> None:
        self.tracker = tracker
        self.topic = topic
        self.partition = partition
        self.generation = generation
        self.chunks: deque[OffsetChunk] = deque()
        self.committed: int | None = None  # last position handed out by committable()

    def acked_position(self) -> int | None:
        """One past the last offset of the done prefix (drops done chunks); None if none yet."""
        position = None
        chunks = self.chunks
        while chunks and chunks[0].done:
            position = chunks.popleft().last + 1
        return position

    @property
    def open_records(self) -> int:
        return sum(c.count for c in self.chunks if not c.done)


class OffsetTracker:
    """Per-partition trackers for the current assignment, plus the global in-flight count."""

    def __init__(self) -> None:
        self.partitions: dict[TP, PartitionTracker] = {}
        #: Records consumed whose chunk is not done yet (not committable yet).
        self.in_flight = 0
        #: Of those, the records of settled chunks: outputs acknowledged, waiting only for the
        #: stats update that counts them.
        self.settled = 0
        self.generation = 0
        # Positions computed by committable() but not yet confirmed by mark_committed().
        self._pending_positions: dict[TP, int] = {}
        #: Partitions being rewound: [offset read again from, whether the seek took effect].
        self._rewinding: dict[TP, list[Any]] = {}

    # --- assignment -------------------------------------------------------------------------
    def assign(self, tps: Iterable[TP]) -> None:
        """Start tracking newly assigned partitions (a fresh generation for each)."""
        self.generation += 1
        for tp in tps:
            old = self.partitions.get(tp)
            if old is not None:  # assigned again without a revoke (lost session): start over
                self._abandon(old)
            self._rewinding.pop(tp, None)  # a new assignment reads from the committed offset
            self.partitions[tp] = PartitionTracker(self, tp[0], tp[1], self.generation)

    def revoke(self, tps: Iterable[TP]) -> list[OffsetChunk]:
        """Stop tracking partitions; returns the chunks abandoned (consumed, never committed)."""
        abandoned: list[OffsetChunk] = []
        for tp in tps:
            pt = self.partitions.pop(tp, None)
            self._pending_positions.pop(tp, None)
            self._rewinding.pop(tp, None)
            if pt is not None:
                abandoned.extend(self._abandon(pt))
        return abandoned

    def _abandon(self, pt: PartitionTracker) -> list[OffsetChunk]:
        left = [c for c in pt.chunks if not c.done]
        for c in left:
            c.abandoned = True
            self.in_flight -= c.count
            if c.settled:
                self.settled -= c.count
        pt.chunks.clear()
        return left

    @property
    def unsettled(self) -> int:
        """Records in flight whose outputs are not all acknowledged (what back-pressure limits)."""
        return self.in_flight - self.settled

    def owns(self, tp: TP) -> bool:
        return tp in self.partitions

    # --- consuming ---------------------------------------------------------------------------
    def track(
        self, topic: str, partition: int, first: int, last: int, count: int
    ) -> OffsetChunk | None:
        """Register consumed offsets; None when the partition is not (any more) assigned, or
        when it is being rewound and these records were fetched before the seek."""
        pt = self.partitions.get((topic, partition))
        if pt is None:
            return None
        if self._rewinding and not self._resumes((topic, partition), first):
            return None  # fetched before the seek: read again later
        chunk = OffsetChunk(pt, first, last, count)
        pt.chunks.append(chunk)
        self.in_flight += count
        return chunk

    # --- committing --------------------------------------------------------------------------
    def committable(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Positions (next offset to read) that advanced since the last commit, per partition."""
        out: dict[TP, int] = {}
        keys = list(self.partitions) if tps is None else [tp for tp in tps if tp in self.partitions]
        for tp in keys:
            pt = self.partitions[tp]
            position = pt.acked_position()
            if position is not None:
                self._pending_positions[tp] = position
            pending = self._pending_positions.get(tp)
            if pending is not None and (pt.committed is None or pending > pt.committed):
                out[tp] = pending
        return out

    def mark_committed(self, positions: dict[TP, int]) -> None:
        """The broker accepted these positions (only those of still-owned partitions count)."""
        for tp, position in positions.items():
            pt = self.partitions.get(tp)
            if pt is not None and (pt.committed is None or position > pt.committed):
                pt.committed = position
                if self._pending_positions.get(tp) == position:
                    del self._pending_positions[tp]

    def open_records(self, tps: Iterable[TP]) -> int:
        """Records of these partitions whose outputs are not all acknowledged yet."""
        return sum(self.partitions[tp].open_records for tp in tps if tp in self.partitions)

    # --- rewinding (exactly-once: the transaction was aborted) --------------------------------
    def rewind(self) -> tuple[dict[TP, int], int]:
        """Abandon every uncommitted chunk. Returns where each partition must be read again
        from (its first uncommitted offset; partitions with nothing uncommitted are left out)
        and how many records that gives up."""
        positions: dict[TP, int] = {}
        records = 0
        for tp, pt in self.partitions.items():
            committed = pt.committed if pt.committed is not None else -1
            uncommitted = [c for c in pt.chunks if c.last >= committed]
            self._abandon(pt)  # done chunks too: the transaction that covered them was aborted
            self._pending_positions.pop(tp, None)
            if uncommitted:
                positions[tp] = uncommitted[0].first
                self._rewinding[tp] = [uncommitted[0].first, False]
                records += sum(c.count for c in uncommitted)
        return positions, records

    def positioned(self, tps: Iterable[TP]) -> None:
        """The consumer reads these partitions from their rewind offsets now."""
        for tp in tps:
            state = self._rewinding.get(tp)
            if state is not None:
                state[1] = True

    @property
    def rewinding(self) -> int:
        """Partitions whose seek has not taken effect yet, or whose records have not resumed."""
        return len(self._rewinding)

    def _resumes(self, tp: TP, first: int) -> bool:
        state = self._rewinding.get(tp)
        if state is None:
            return True
        offset, positioned = state
        if not positioned:
            return False
        del self._rewinding[tp]
        if first != offset:
            raise RewindError(f"{tp[0]}:{tp[1]} resumed at offset {first}, not at {offset}")
        return True
