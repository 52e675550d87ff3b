"""The input side: a confluent-kafka Consumer in the worker's group, driven from asyncio.

- ``consume(num_messages, timeout)`` runs in one dedicated thread (it releases the GIL while it
  waits), so the event loop never blocks on Kafka and a whole batch arrives per call.
- Offsets are committed explicitly (``enable.auto.commit=false``); the worker decides what.
- Partitions are assigned with the cooperative-sticky strategy: a rebalance only revokes the
  partitions that move, and the others keep flowing.
- Rebalance callbacks run inside ``consume()`` in the fetch thread. They hand the work to the
  event loop (``RebalanceHandler``) and wait for it, so the worker can finish the revoked
  partitions' in-flight records and commit them *before* librdkafka gives the partitions away.
  The synchronous commit on revoke is made from the fetch thread, inside the callback.
- Every other call on the consumer is made from the fetch thread too. confluent-kafka
  serializes the calls on one consumer: a ``commit``/``pause``/``position`` from the event loop
  waits until the running ``consume()`` returns (up to its timeout: latency spikes), and while
  ``consume()`` sits in a rebalance callback waiting for the event loop, it never returns (two
  workers starting together deadlocked this way). So the loop only *requests* pauses, resumes,
  commits and lag readings; the fetch thread applies them around each ``consume()``.
- Exactly-once recovery rewinds partitions (``rewind``): the fetch thread seeks them around a
  ``consume()`` and reports them read from there (``RebalanceHandler.on_rewound``) with the
  batch of the first ``consume()`` that started after the seek. Records fetched before it are
  the tracker's to drop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamer.config import Settings
from streamer.kafka.clients import consumer_config
from streamer.logs import log_event

log = logging.getLogger("streamer.source")

#: A partition of a topic: (topic, partition).
TP = tuple[str, int]
#: How long a rebalance callback waits for the event loop (must stay below the group's
#: rebalance timeout, which is max.poll.interval.ms).
REBALANCE_WAIT_S = 60.0


def _tps(partitions: Sequence[TopicPartition]) -> list[TP]:
    return [(p.topic, p.partition) for p in partitions]


class RebalanceHandler:
    """What the worker does on assignment changes (coroutines run on the event loop)."""

    async def on_assigned(self, tps: list[TP]) -> None: ...

    async def on_revoking(self, tps: list[TP]) -> dict[TP, int]:
        """Finish the partitions' in-flight work; returns the positions to commit."""
        return {}

    async def on_revoked(self, tps: list[TP], *, lost: bool) -> None: ...

    def on_committed(self, positions: dict[TP, int]) -> None:
        """Called on the event loop when an asynchronous commit succeeded."""

    def on_rewound(self, tps: set[TP], failed: dict[TP, str]) -> None:
        """On the event loop: these partitions are now read from their ``rewind`` offsets (the
        batch this comes with was fetched after the seek); ``failed``: seeks that did not."""


def take(consumer: Consumer, num_messages: int, timeout: float) -> list[Message]:
    """What is queued already, at once; else the first record to come (or nothing within
    ``timeout``) and whatever came with it: at most ``num_messages``. ``consume(n, timeout)``
    alone waits for ``n`` records or the whole timeout: at moderate rates every batch of the
    worker waited out its timeout, and the records that came meanwhile with it."""
    messages: list[Message] = consumer.consume(num_messages, 0)
    if not messages and timeout > 0:
        first = consumer.poll(timeout)
        if first is not None:
            messages = [first]
            if num_messages > 1:
                messages += consumer.consume(num_messages - 1, 0)
    return messages


class Source:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        client_id: str,
        handler: RebalanceHandler | None = None,
        loop: asyncio.AbstractEventLoop,
        group_metadata: bool = False,
        **overrides: Any,
    ) -> None:
        self.topic = settings.input_topic
        #: Told about assignment changes; may be set after construction, before subscribe().
        self.handler = handler or RebalanceHandler()
        self.loop = loop
        conf: dict[str, Any] = {
            "client.id": client_id,
            "partition.assignment.strategy": "cooperative-sticky",
            # A dead worker's partitions move after this long (librdkafka's default is 45 s).
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            # Bound the prefetched data held in librdkafka (defaults: 64 MiB queued, 50 MiB per
            # fetch response) to keep RSS small; a few MiB per fetch still fills big batches.
            # The worker passes its own, from memory_budget_mb (streamer.memory.KAFKA_CLIENTS).
            "queued.max.messages.kbytes": 16_384,
            "fetch.max.bytes": 8_388_608,
            # When that prefetch queue is full, librdkafka postpones the partition's next fetch
            # by this much (default 1 s): the worker then drained the queue and sat idle for
            # most of every second (~23k/s instead of ~60k/s). Check again soon instead.
            "fetch.queue.backoff.ms": 10,
            # At moderate rates, let the broker gather ~64 KB (or wait 5 ms) per fetch response
            # instead of answering every few records: far fewer requests for the broker and
            # librdkafka to serve on a busy host, at most 5 ms added when traffic is light.
            "fetch.min.bytes": 65_536,
            "fetch.wait.max.ms": 5,
            "on_commit": self._on_commit,
            "logger": logging.getLogger("streamer.librdkafka.consumer"),
        }
        conf.update(overrides)
        self.consumer = Consumer(consumer_config(settings, bootstrap, **conf))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kafka-fetch")
        self.assignment: set[TP] = set()
        self.paused: set[TP] = set()
        self.want_paused = False
        self.closed = False
        # Requests from the event loop, applied by the fetch thread around each consume().
        self._ops: deque[Callable[[], None]] = deque()
        #: Last lag reading (see ``request_lag``).
        self.lags: dict[TP, int] = {}
        #: Exactly-once: the group metadata for ``send_offsets_to_transaction``, refreshed by
        #: the fetch thread after each consume() and on each rebalance.
        self._want_group_metadata = group_metadata
        self.group_metadata: Any = None
        self._seeks = Seeks()

    # --- lifecycle ---------------------------------------------------------------------------
    def subscribe(self) -> None:
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._cb_assign,
            on_revoke=self._cb_revoke,
            on_lost=self._cb_lost,
        )

    async def fetch(self, num_messages: int, timeout: float) -> list[Message]:
        """The next batch (:func:`take`; possibly empty); rebalance callbacks may run during
        the call."""
        messages, sought, failed = await self.loop.run_in_executor(
            self._executor, self._consume, num_messages, timeout
        )
        if sought or failed:  # before the batch is tracked: its records are from the new offsets
            self.handler.on_rewound(sought, failed)
        return messages

    def _consume(
        self, num_messages: int, timeout: float
    ) -> tuple[list[Message], set[TP], dict[TP, str]]:
        # fetch thread
        self._run_ops()
        # Seeks applied before this consume(): its records are read from the new offsets.
        sought, failed = self._seeks.applied()
        messages = take(self.consumer, num_messages, timeout)
        self._run_ops()
        if self._want_group_metadata:
            self.group_metadata = self.consumer.consumer_group_metadata()
        return messages, sought, failed

    def _run_ops(self) -> None:
        ops = self._ops
        while ops:
            op = ops.popleft()
            try:
                op()
            except KafkaException as exc:
                log_event(log, logging.WARNING, "consumer request failed", error=str(exc.args[0]))

    async def run_in_fetch_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Leave the group (revoke callbacks run first) and release the client."""
        if self.closed:
            return
        self.closed = True
        await self.run_in_fetch_thread(self.consumer.close)
        self._executor.shutdown(wait=False)

    # --- rewinding (requested on the event loop, applied in the fetch thread) -----------------
    def rewind(self, positions: dict[TP, int]) -> None:
        """Read these partitions again from these offsets, from the next fetch on."""
        if positions:
            self._seeks.request(positions)
            self._ops.append(lambda: self._seeks.apply(self.consumer, self.assignment))

    # --- flow control (requested on the event loop, applied in the fetch thread) ---------------
    def pause(self) -> int:
        """Pause every assigned partition before the next fetch; returns how many are affected."""
        self.want_paused = True
        self._ops.append(self._apply_pause)
        return len(self.assignment - self.paused)

    def resume(self) -> int:
        """Resume the paused partitions before the next fetch; returns how many are affected."""
        self.want_paused = False
        self._ops.append(self._apply_resume)
        return len(self.paused & self.assignment)

    def _apply_pause(self) -> None:
        if not self.want_paused:
            return  # resumed again before this ran
        todo = [TopicPartition(t, p) for (t, p) in self.assignment - self.paused]
        if todo:
            self.consumer.pause(todo)
            self.paused.update(_tps(todo))

    def _apply_resume(self) -> None:
        if self.want_paused:
            return  # paused again before this ran
        todo = [TopicPartition(t, p) for (t, p) in self.paused & self.assignment]
        if todo:
            self.consumer.resume(todo)
        self.paused.clear()

    # --- commits -------------------------------------------------------------------------------
    def commit_async(self, positions: dict[TP, int]) -> None:
        """Commit before the next fetch, without waiting; ``on_committed`` reports success."""
        self._ops.append(lambda: self._commit_owned(positions))

    def _commit_owned(self, positions: dict[TP, int]) -> None:
        # Fetch thread. A partition revoked since the request was committed (synchronously, at
        # least as far) by the revoke callback: committing it again could move it backwards.
        offsets = [
            TopicPartition(t, p, o) for (t, p), o in positions.items() if (t, p) in self.assignment
        ]
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=True)

    def commit_sync(self, positions: dict[TP, int]) -> bool:
        """Commit and wait (call from the fetch thread); False if the broker refused."""
        if not positions:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log_event(log, logging.WARNING, "commit failed", error=str(exc.args[0]))
            return False
        failed = [tp for tp in result or () if tp.error is not None]
        for tp in failed:
            log_event(
                log, logging.WARNING, "commit failed", partition=tp.partition, error=str(tp.error)
            )
        return not failed

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # Runs in the fetch thread (served by consume()); the tracker lives on the event loop.
        if err is not None and err.code() == KafkaError._NO_OFFSET:
            return
        ok = {(p.topic, p.partition): p.offset for p in partitions if p.error is None}
        if err is not None:
            log_event(log, logging.WARNING, "commit failed", error=str(err))
            return
        if ok:
            self.loop.call_soon_threadsafe(self.handler.on_committed, ok)

    # --- lag -------------------------------------------------------------------------------------
    def request_lag(self) -> None:
        """Refresh ``lags`` before the next fetch (read it later: one reading behind)."""
        self._ops.append(self._read_lag)

    def _read_lag(self) -> None:
        if not self.assignment or self.closed:
            self.lags = {}
            return
        lags = read_lags(self.consumer, self.assignment)
        if lags is not None:
            self.lags = lags

    # --- rebalance callbacks (fetch thread) ---------------------------------------------------
    def _wait(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(REBALANCE_WAIT_S)  # type: ignore[arg-type]

    def _refresh_group_metadata(self, consumer: Consumer) -> None:
        if self._want_group_metadata:
            self.group_metadata = consumer.consumer_group_metadata()

    def _cb_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = _tps(partitions)
        self._refresh_group_metadata(consumer)
        self._wait(self.handler.on_assigned(tps))
        # After the tracker's fresh start: a seek asked for before it belonged to the old
        # assignment (the new one reads from the committed offset).
        self._seeks.cancel(tps)
        self.assignment.update(tps)
        consumer.incremental_assign(partitions)
        if self.want_paused and partitions:
            # back-pressure is on: new partitions start paused like the others
            consumer.pause(partitions)
            self.paused.update(tps)

    def _cb_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = _tps(partitions)
        self._refresh_group_metadata(consumer)
        self._seeks.cancel(tps)
        try:
            positions = self._wait(self.handler.on_revoking(tps))
            self.commit_sync(positions)
            if positions and not self.closed:
                self.loop.call_soon_threadsafe(self.handler.on_committed, positions)
        finally:
            self._wait(self.handler.on_revoked(tps, lost=False))
            self.assignment.difference_update(tps)
            self.paused.difference_update(tps)

    def _cb_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group moved on without us: others may own these already; never commit them.
        tps = _tps(partitions)
        self._seeks.cancel(tps)
        self._wait(self.handler.on_revoked(tps, lost=True))
        self.assignment.difference_update(tps)
        self.paused.difference_update(tps)


def read_lags(consumer: Consumer, assignment: set[TP]) -> dict[TP, int] | None:
    """High watermark (as last seen by the fetcher) minus the position, per partition; None
    when the positions cannot be read."""
    out: dict[TP, int] = {}
    try:
        positions = consumer.position([TopicPartition(t, p) for (t, p) in sorted(assignment)])
    except KafkaException:
        return None
    for tp in positions:
        try:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            continue
        if high < 0:
            continue
        pos = tp.offset if tp.offset >= 0 else high  # nothing consumed yet: unknown, say 0
        out[tp.topic, tp.partition] = max(0, high - pos)
    return out


class Seeks:
    """Seeks asked for on the event loop (``request``), applied by the fetch thread (``apply``)
    before a consume(), and reported with the batch that consume() returns (``applied``).

    An assignment change of a partition cancels its seek (``cancel``): its new owner, or this
    worker's new assignment, reads from the committed offset.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: dict[TP, int] = {}
        self._done: set[TP] = set()  # fetch thread only, like _failed
        self._failed: dict[TP, str] = {}

    def request(self, positions: dict[TP, int]) -> None:
        with self._lock:
            self._wanted.update(positions)

    def cancel(self, tps: list[TP]) -> None:
        """Fetch thread (assignment callbacks): forget these partitions' seeks and reports."""
        with self._lock:
            for tp in tps:
                self._wanted.pop(tp, None)
        for tp in tps:
            self._done.discard(tp)
            self._failed.pop(tp, None)

    def apply(self, consumer: Consumer, assignment: set[TP]) -> None:
        with self._lock:
            wanted, self._wanted = self._wanted, {}
        for (topic, partition), offset in wanted.items():
            if (topic, partition) not in assignment:
                continue  # revoked meanwhile: the next owner reads from the committed offset
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                self._failed[topic, partition] = str(exc.args[0])
            else:
                self._done.add((topic, partition))

    def applied(self) -> tuple[set[TP], dict[TP, str]]:
        """The seeks applied (and failed) since the last call."""
        if not (self._done or self._failed):
            return set(), {}
        done, failed = self._done, self._failed
        self._done, self._failed = set(), {}
        return done, failed
