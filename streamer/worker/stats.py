"""Windowed statistics published with the records they count (analytics on).

The pipeline tallies each record into the analyzer's ``BatchAggregator``; ``fold`` counts that
tally into this worker's windows once per distinct key (``fold_into``) and feeds the
deliverability metrics. ``flush`` folds, then publishes the rows that changed to the stats topic:
every ``stats_flush_interval`` in at-least-once mode (sooner when many settled records wait for
it: ``flush_due``), inside each transaction in exactly-once mode. Folding and
publishing seldom matters: both cost per distinct key or row, and keys repeat (a batch of 500
sample records holds ~350 distinct keys, 12,000 records 0.24 per record, 48,000 records 0.10).
A chunk's offsets may only be committed once a published update covers its records, so every
chunk that was counted is held (``OffsetChunk.hold``) until the next flush releases it, once all
its rows are acknowledged. A crash therefore never loses a count: what was committed
was published, and what was not is consumed and counted again (at-least-once: extra counts only
from replays; exactly-once: the rows commit in the same transaction as the offsets).

Rows are cumulative per key and go to the internal partials topic (``stats_partials_topic``),
keyed by window start and dimensions, each naming this worker's *session* (a token drawn at
start), the window's serial and the update's ``seq`` (growing with every flush): a session's
latest row per key and serial is the truth for the records that session counted, whatever other
sessions (other workers, restarts, rebalances) counted. The stats rollup stage
(``streamer.worker.rollup``) sums the instances' latest partials per key into the stats topic.
No state has to be recovered on start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from streamer.analytics.batch import BatchAggregator, Folded
from streamer.analytics.windows import WindowedStats, row_key
from streamer.kafka.sink import Sink
from streamer.pipeline import Output
from streamer.worker.flow import SETTLED_FACTOR
from streamer.worker.offsets import OffsetChunk


class StatsRelease:
    """Stands in for the chunks one stats update covers (the sink's ``InputRange`` protocol).

    When every row of the update is acknowledged, each covered chunk's hold is released. A row
    the broker refuses is retried or dead-lettered by the sink like any output; its dead-letter
    copy names the first covered chunk as its source.
    """

    __slots__ = ("_chunks", "abandoned", "first", "last", "partition", "pending", "sealed", "topic")

    def __init__(self, chunks: list[OffsetChunk]) -> None:
        self._chunks = chunks
        first = chunks[0]
        self.topic, self.partition = first.topic, first.partition
        self.first, self.last = first.first, first.last
        self.pending = 0
        self.sealed = False
        self.abandoned = False  # always retried: a lost row would undercount its window

    def add_pending(self, n: int) -> None:
        self.pending += n

    def ack(self) -> None:
        self.pending -= 1
        if self.pending == 0 and self.sealed:
            self._release()

    def seal(self) -> None:
        self.sealed = True
        if self.pending == 0:
            self._release()

    def _release(self) -> None:
        chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            chunk.release()


#: The shortest time between two stats flushes that back-pressure brings forward.
EARLY_FLUSH_S = 0.25


#: Distinct keys tallied since the last update at which the next one comes early: an update's
#: memory (its changed rows, built at once) and cost go with its keys, not its records.
UPDATE_AT_KEYS = 5_000


def flush_due(
    since_s: float, interval_s: float, settled: int, back_pressure: int, pending_keys: int = 0
) -> bool:
    """Whether the stats update is due ``since_s`` after the last one (at-least-once): every
    ``interval_s``; sooner (at most every ``EARLY_FLUSH_S``) once the ``settled`` records
    (outputs acknowledged, waiting only for this update) reach half of what may wait
    (``SETTLED_FACTOR`` x ``back_pressure``), so that fetching never pauses for them, or once
    the tally holds ``UPDATE_AT_KEYS`` distinct keys (traffic whose keys seldom repeat).

    An update costs per changed row (~50 µs each), whatever it releases: the bound lets one
    update release many records, and the interval bounds what a crash consumes again."""
    if since_s >= interval_s:
        return True
    return since_s >= EARLY_FLUSH_S and (
        settled * 2 >= back_pressure * SETTLED_FACTOR or pending_keys >= UPDATE_AT_KEYS
    )


#: Distinct keys the aggregator may tally before a fold that does not wait for the flush
#: (memory stays flat whatever ``stats_flush_interval`` and the traffic's cardinality).
FOLD_AT_KEYS = 20_000
#: Rows of a stats update encoded and handed to the producer at a time (a whole update of a
#: replay that touches every row at once would otherwise be held encoded all together).
SEND_SLICE = 1_000


class StatsPublisher:
    def __init__(
        self,
        windows: WindowedStats,
        sink: Sink,
        topic: str,
        worker_id: str,
        aggregator: BatchAggregator,
        on_folded: Callable[[Folded], None] = lambda folded: None,
        *,
        defer_metrics: bool = False,
    ) -> None:
        self.windows = windows
        self.sink = sink
        self.topic = topic
        self.worker_id = worker_id
        self.session = _session(worker_id)
        self.aggregator = aggregator
        self.on_folded = on_folded  # the deliverability metrics
        #: Exactly-once: folds reach the metrics only once their transaction committed
        #: (``settle_metrics``), so records read again after an abort count once.
        self.defer_metrics = defer_metrics
        self._unsettled: list[Folded] = []
        self._held: list[OffsetChunk] = []
        self.rows_published = 0
        #: The update number (``seq``) of the session's partials: the rollup keeps the highest.
        self.seq = 0

    def hold(self, chunks: list[OffsetChunk]) -> None:
        """Take chunks whose records were tallied (each with one extra pending output): the
        next flush releases them (abandoned ones need no release). A tally grown past
        ``FOLD_AT_KEYS`` is folded at once."""
        for chunk in chunks:
            if not chunk.abandoned:
                self._held.append(chunk)
        if self.aggregator.pending_keys > FOLD_AT_KEYS:
            self.fold()

    def fold(self) -> None:
        """Count the aggregator's tally into the windows, and into the metrics."""
        if self.aggregator.pending_keys:
            folded = self.aggregator.fold_into(self.windows, time.time())
            if self.defer_metrics:
                self._unsettled.append(folded)
            else:
                self.on_folded(folded)

    def settle_metrics(self) -> None:
        """The transaction holding the folds since the last call committed: count them."""
        unsettled, self._unsettled = self._unsettled, []
        for folded in unsettled:
            self.on_folded(folded)

    async def flush(self) -> int:
        """Fold, then publish the changed rows; returns how many. Releases the held chunks once
        their rows are delivered."""
        self.fold()
        held, self._held = self._held, []
        rows = self.windows.updates(self.aggregator.watermark, time.time())
        if not rows:
            for chunk in held:
                chunk.release()
            return 0
        n = len(rows)
        self.seq += 1
        # nothing new is committed behind rows without held chunks (windows that just closed)
        release: Any = StatsRelease(held) if held else _NO_CHUNK
        while rows:  # encoded a slice at a time: each encoded row holds ~4 KB until produced
            part, rows = rows[:SEND_SLICE], rows[SEND_SLICE:]
            await self.sink.send([self._output(row) for row in part], release, seal=False)
        release.seal()
        self.rows_published += n
        return n

    def new_session(self) -> None:
        """Count afresh under a new session (exactly-once, after an aborted transaction).

        The windows had counted the aborted records; the rows earlier transactions committed
        under the old session stay true for what they counted. Records read again are counted
        in the new session's rows. The tally not folded yet goes with the old windows, and what
        the aborted transaction folded never reaches the metrics.
        """
        self.aggregator.fold_into(self.windows, time.time())
        self.windows = self.windows.empty_copy()
        self._held = []
        self._unsettled = []  # their transaction was aborted
        self.session = _session(self.worker_id)

    def _output(self, row: dict[str, Any]) -> Output:
        key = row_key(row)  # window and dimensions: one key per summed row, whoever counted
        row["session"] = self.session
        row["seq"] = self.seq
        return Output(self.topic, key, orjson.dumps(row), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every row held now, for ``/stats``."""
        return self.windows.snapshot()


def _session(worker_id: str) -> str:
    return f"{worker_id}/{uuid.uuid4().hex[:8]}"


class _Unheld:
    """The chunk of rows that no chunk waits for (their acknowledgement releases nothing)."""

    topic, partition, first, last = "", -1, -1, -1
    abandoned = False

    def add_pending(self, n: int) -> None:
        pass

    def ack(self) -> None:
        pass

    def seal(self) -> None:
        pass


_NO_CHUNK: Any = _Unheld()
