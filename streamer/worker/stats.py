"""Windowed statistics published with the records they count (analytics on).

Each batch's counts are folded into this worker's windows once per batch (``fold_into``).
The rows that changed are published to the stats topic by ``flush``: every
``stats_flush_interval`` in at-least-once mode, inside each transaction in exactly-once mode.
A chunk's offsets may only be committed once a published update covers its records, so every
chunk that was counted carries one extra pending output (a *hold*) that the next flush releases
when all its rows are acknowledged. A crash therefore never loses a count: what was committed
was published, and what was not is consumed and counted again (at-least-once: extra counts only
from replays; exactly-once: the rows commit in the same transaction as the offsets).

Rows are cumulative per key, and the key names this worker's *session* (a token drawn at start)
and the window's serial, so a session's latest row per key is the truth for the records that
session counted, whatever other sessions (other workers, restarts, rebalances) counted: a
consumer of the topic sums the latest rows over keys. No state has to be recovered on start.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from streamer.analytics.windows import WindowedStats, row_key
from streamer.kafka.sink import Sink
from streamer.pipeline import Output
from streamer.worker.offsets import Chunk


class StatsRelease:
    """Stands in for the chunks one stats update covers (the sink's ``Chunk`` protocol).

    When every row of the update is acknowledged, each covered chunk's hold is released. A row
    the broker refuses is retried or dead-lettered by the sink like any output; its dead-letter
    copy names the first covered chunk as its source.
    """

    __slots__ = ("_chunks", "abandoned", "first", "last", "partition", "pending", "sealed", "topic")

    def __init__(self, chunks: list[Chunk]) -> None:
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
            chunk.ack()


class StatsPublisher:
    def __init__(self, windows: WindowedStats, sink: Sink, topic: str, worker_id: str) -> None:
        self.windows = windows
        self.sink = sink
        self.topic = topic
        self.session = f"{worker_id}/{uuid.uuid4().hex[:8]}"
        self._held: list[Chunk] = []
        self._watermark: int | None = None
        self.rows_published = 0

    def add(self, watermark: int | None, held: list[Chunk]) -> None:
        """A batch was counted into ``windows`` (``watermark``: the largest event time seen):
        take its ``held`` chunks (each with one extra pending output); the next flush releases
        them."""
        if watermark is not None and (self._watermark is None or watermark > self._watermark):
            self._watermark = watermark
        self._held.extend(held)

    async def flush(self) -> int:
        """Publish the changed rows; returns how many. Releases the held chunks once delivered."""
        held, self._held = self._held, []
        rows = self.windows.updates(self._watermark, time.time())
        if not rows:
            for chunk in held:
                chunk.ack()
            return 0
        outputs = [self._output(row) for row in rows]
        if held:
            release = StatsRelease(held)
            await self.sink.send(outputs, release)
        else:  # nothing new is committed behind these (windows that just closed): no hold
            await self.sink.send(outputs, _NO_CHUNK)
        self.rows_published += len(outputs)
        return len(outputs)

    def _output(self, row: dict[str, Any]) -> Output:
        row["session"] = self.session
        return Output(self.topic, row_key(row), orjson.dumps(row), None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every row held now, for ``/stats``."""
        return self.windows.snapshot()


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
