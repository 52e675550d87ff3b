"""Checkpointing: when consumed offsets become committed, in one of two delivery modes.

Every mode tracks consumed offsets in chunks (``streamer.worker.offsets``) and differs only in
how a batch's outputs and its input offsets reach Kafka:

- ``AtLeastOnce``: outputs are produced as the batch is processed; a timer commits, without
  waiting, the prefix of offsets whose outputs were all acknowledged. A crash re-delivers what
  was not committed yet (duplicates, never losses).
- ``ExactlyOnce``: each batch is one Kafka transaction holding its outputs and its input
  offsets. A transaction that a rebalance of the group overtook is aborted, and the worker
  reads its partitions again from the last commit (``on_aborted``: ``streamer.worker.rewind``).
  Any other failed transaction is aborted and the worker stops (its partitions move on to a
  worker that starts from the last committed transaction).

The worker calls the same four methods whatever the mode (the interface below), so the mode is
decided once, in ``make_checkpoint``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamer.kafka.sink import NOT_AUTHORIZED, TRANSACTION_TIMEOUT_MS
from streamer.kafka.source import TP
from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.offsets import OffsetChunk, OffsetTracker
from streamer.worker.watchdog import Watchdog

log = logging.getLogger("streamer.worker")

#: A transaction failing with these was overtaken by a rebalance of the group (its offsets carry
#: a generation that is no longer current): no fault of the worker's.
REBALANCED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
    }
)

#: Failures an abort clears, after which the worker reads the transaction's records again in
#: place: a rebalance overtook the transaction, or the producer's sequence numbers need the new
#: epoch an abort brings. (After an abort that purged outputs in flight, librdkafka 2.16's next
#: transactions can fail with OUT_OF_ORDER_SEQUENCE_NUMBER; produce() reports such a
#: transaction's failed state as _STATE, which counts only once a transaction was aborted.)
REWINDABLE = REBALANCED | {KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER}

#: A call still blocked this long after its own timeout hangs (``streamer.worker.watchdog``).
HANG_GRACE_S = 5.0
#: Tries of an abort that fails with a retriable error (librdkafka: call it again).
ABORT_ATTEMPTS = 3

#: Sends one chunk's records through the pipeline to the producer.
SendChunk = Callable[[OffsetChunk, Sequence[Any]], Awaitable[None]]
#: What a batch is made of: each partition's chunk with its messages.
Groups = Sequence[tuple[OffsetChunk, Sequence[Any]]]
#: Publishes what must commit with the batch's offsets (the stats update); None: nothing.
Publish = Callable[[], Awaitable[int]] | None


class Committer(Protocol):
    """Where offsets are committed (``streamer.kafka.source.Source``)."""

    def commit_async(self, positions: dict[TP, int]) -> None: ...
    @property
    def group_metadata(self) -> Any: ...


class TransactionalProducer(Protocol):
    """The transactional calls of ``confluent_kafka.Producer``."""

    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], meta: Any, timeout: float
    ) -> None: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...


class Checkpoint(ABC):
    """Offset tracking plus a commit policy (see the module doc)."""

    exactly_once: bool

    def __init__(self, tracker: OffsetTracker, committer: Committer, metrics: Metrics) -> None:
        self.tracker = tracker
        self.committer = committer
        self.metrics = metrics
        #: Last committed position per owned partition (for ``/status``).
        self.committed: dict[TP, int] = {}
        #: Set once the mode cannot go on: the worker must stop and commit nothing more.
        self.failed = False
        #: ... because the group rebalanced under a transaction, or rewinds came too often (a
        #: restart is all it takes: exit 75).
        self.overtaken = False
        #: ... because the broker refused it for want of an ACL (no restart cures that: exit 77).
        self.denied = False
        #: A transaction is open (a graceful stop waits for it: leaving the group first fails it).
        self.busy = False

    @abstractmethod
    async def process(self, groups: Groups, send: SendChunk, publish: Publish = None) -> int:
        """Send every live chunk of a batch; returns how many records went through.

        ``publish`` runs where the mode needs it: inside the transaction in exactly-once mode;
        at-least-once mode publishes on its timer instead (the chunks stay held until then).
        """

    @abstractmethod
    def commit_due(self) -> None:
        """The timer's commit (asynchronous: ``on_committed`` follows when the broker agrees)."""

    @abstractmethod
    def positions_to_commit(self, tps: Sequence[TP] | None = None) -> dict[TP, int]:
        """What to commit synchronously when partitions are revoked (None: all, at shutdown)."""

    def on_committed(self, positions: dict[TP, int]) -> None:
        """The broker accepted these positions."""
        self.tracker.mark_committed(positions)
        self.committed.update(positions)

    def forget(self, tps: Sequence[TP]) -> int:
        """Partitions revoked or lost: drop their state; returns the records abandoned."""
        for tp in tps:
            self.committed.pop(tp, None)
        return sum(c.count for c in self.tracker.revoke(tps))

    def fail(self) -> int:
        """Give up every partition's uncommitted work; returns the records abandoned."""
        self.failed = True
        return self.forget(list(self.tracker.partitions))


class AtLeastOnce(Checkpoint):
    exactly_once = False

    async def process(self, groups: Groups, send: SendChunk, publish: Publish = None) -> int:
        done = 0
        for chunk, messages in groups:
            if chunk.abandoned:
                continue  # revoked while queued: not committed, the next owner reprocesses it
            await send(chunk, messages)
            done += chunk.count
        return done

    def commit_due(self) -> None:
        positions = self.tracker.committable()
        if positions:
            self.committer.commit_async(positions)
            self.metrics.commits.inc()

    def positions_to_commit(self, tps: Sequence[TP] | None = None) -> dict[TP, int]:
        return self.tracker.committable(tps)


class ExactlyOnce(Checkpoint):
    exactly_once = True

    def __init__(
        self,
        tracker: OffsetTracker,
        committer: Committer,
        metrics: Metrics,
        producer: TransactionalProducer,
        watchdog: Watchdog | None = None,
        call_timeout: float = TRANSACTION_TIMEOUT_MS / 1000,
    ) -> None:
        super().__init__(tracker, committer, metrics)
        self.producer = producer
        self.watchdog = watchdog or Watchdog()
        #: Longest a transactional call may block the event loop (librdkafka's default: for
        #: ever); the producer's transaction timeout, after which the broker aborts anyway.
        self.call_timeout = call_timeout
        #: After a transaction failed with a rewindable error and was aborted: reads the
        #: uncommitted records again (``streamer.worker.rewind``). False, or none set: the
        #: worker stops.
        self.on_aborted: Callable[[], bool] | None = None
        self.aborts = 0  # transactions aborted so far

    async def process(self, groups: Groups, send: SendChunk, publish: Publish = None) -> int:
        live = [(c, m) for c, m in groups if not c.abandoned]
        if self.failed or not live:
            return 0
        producer = self.producer
        positions: dict[TP, int] = {}
        self.busy = True
        try:
            producer.begin_transaction()
            for chunk, messages in live:
                await send(chunk, messages)
                positions[chunk.topic, chunk.partition] = chunk.last + 1
            if publish is not None:
                await publish()
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            timeout = self.call_timeout
            with self.watchdog.guard(timeout + HANG_GRACE_S, "send_offsets_to_transaction"):
                # the group metadata is read by the fetch thread: the consumer is not called here
                # (reading it fresh from this thread deadlocked during rebalances)
                producer.send_offsets_to_transaction(
                    offsets, self.committer.group_metadata, timeout
                )
            # Blocks the loop until the broker committed (outputs flushed first): one round
            # trip per batch, the price of exactly-once.
            with self.watchdog.guard(timeout + HANG_GRACE_S, "commit_transaction"):
                producer.commit_transaction(timeout)
        except KafkaException as exc:
            err = exc.args[0]
            code = err.code()
            rebalanced = code in REBALANCED
            rewindable = code in REWINDABLE or (code == KafkaError._STATE and self.aborts > 0)
            aborted = (rewindable or err.txn_requires_abort()) and self._abort()
            why = "overtaken by a rebalance" if rebalanced else "producer needs a new epoch"
            if aborted and rewindable and self.on_aborted is not None:
                log_event(log, logging.WARNING, "transaction aborted", why=why, error=str(err))
                if self.on_aborted():
                    return 0
            self.overtaken = rebalanced or (aborted and rewindable)
            self.denied = code in NOT_AUTHORIZED
            if self.denied:
                why = "not authorized to write: check the worker principal's ACLs"
            log_event(
                log,
                logging.WARNING if self.overtaken else logging.CRITICAL,
                "transaction failed; stopping",
                why=why if self.overtaken or self.denied else None,
                error=str(err),
            )
            self.failed = True  # the worker calls fail() and stops
            return 0
        finally:
            self.busy = False
        # Committed: every output of these chunks was delivered (librdkafka reports only
        # failures in this mode, which fail the commit). committable() then drops them.
        for chunk, _messages in live:
            chunk.finish()
        self.tracker.committable(list(positions))
        self.on_committed(positions)
        self.metrics.commits.inc()
        return sum(c.count for c, _ in live)

    def _abort(self) -> bool:
        """Abort the open transaction; False if that failed too. A retriable failure (say, a
        timeout while outputs still drain on a loaded broker) is tried again, as librdkafka
        asks of ``abort_transaction``, up to ``ABORT_ATTEMPTS`` times."""
        for attempt in range(1, ABORT_ATTEMPTS + 1):
            try:
                with self.watchdog.guard(self.call_timeout + HANG_GRACE_S, "abort_transaction"):
                    self.producer.abort_transaction(self.call_timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if attempt < ABORT_ATTEMPTS and isinstance(err, KafkaError) and err.retriable():
                    log_event(log, logging.WARNING, "abort retried", error=str(err))
                    continue
                log_event(log, logging.ERROR, "abort failed", error=str(err))
                return False
            self.aborts += 1
            return True
        return False  # not reached: the last attempt returns

    def commit_due(self) -> None:
        pass  # every batch committed its own offsets

    def positions_to_commit(self, tps: Sequence[TP] | None = None) -> dict[TP, int]:
        return {}  # likewise


def make_checkpoint(
    exactly_once: bool,
    tracker: OffsetTracker,
    committer: Committer,
    metrics: Metrics,
    producer: TransactionalProducer,
    transaction_timeout: float = TRANSACTION_TIMEOUT_MS / 1000,
) -> Checkpoint:
    if exactly_once:
        return ExactlyOnce(tracker, committer, metrics, producer, call_timeout=transaction_timeout)
    return AtLeastOnce(tracker, committer, metrics)
