"""A keyed stage: an internal topic folded per key by whichever worker owns the key's partition.

The suppression stage (``streamer.worker.suppressor``) and the stats rollup
(``streamer.worker.rollup``) are both this shape, Kafka Streams' repartition + state store:

- workers write *inputs* to an internal topic keyed so that everything of one key meets in one
  partition;
- every worker process runs one stage per kind, in its own thread, a consumer in its own group
  (``<group_id>.<suffix>``) that reads that topic; the subclass folds each batch into its store
  and says what to write;
- writes go to the public topic (the answer, keyed by the same key) and to a changelog (its
  state, compacted, co-partitioned with the inputs: a key's state sits in the partition number
  of its inputs), from which a stage assigned a partition restores before folding more.

A separate consumer group rather than the record consumer subscribing to more topics: the loads
scale and rebalance independently, the record path's batching, back-pressure and transactions
stay as they are, and the stage's own transactions (exactly-once) commit its own offsets.

Delivery, at least once: per batch, the public writes are acknowledged first, then the
changelog writes, then the inputs' offsets are committed. A crash anywhere replays inputs the
changelog may already hold: the folds are idempotent, so nothing is counted twice, and a public
write lost before its changelog write is made again (the restored state lacks the change).
Exactly once: per batch, one transaction holds the public and changelog writes and the inputs'
offsets; a failed one is aborted and the stage restores its partitions and reads them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sized
from functools import partial
from typing import Any, ClassVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streamer.config import Settings
from streamer.kafka.clients import consumer_config
from streamer.logs import log_event
from streamer.memory import kafka_client_config
from streamer.metrics import Metrics
from streamer.worker.stage_output import StageOutput, Writes
from streamer.worker.suppression_restore import (
    StageError,
    StageStopped,
    check_partitions,
    read_changelog,
    restore_config,
    start_offsets,
)

#: Inputs folded per batch (one commit, or one transaction, each).
BATCH = 2000
#: Longest a stopping stage folds what its partitions hold before it leaves (``drain_on_stop``).
DRAIN_S = 5.0
#: Of a stop's time, what the drain leaves for the commit, the consumer's close (leaving the
#: group) and the producer's flush.
CLOSE_S = 3.0


class KeyedStage:
    """The Kafka wiring of a keyed stage; a subclass folds (see the module doc)."""

    #: Names the stage in log lines, errors and its clients' ids ("suppression", "rollup").
    kind: ClassVar[str]
    #: What an input is called in the counts ("events": ``events``, ``bad_events``).
    unit: ClassVar[str]
    log: ClassVar[logging.Logger]
    #: Stopping, fold what the owned partitions hold first: a graceful stop publishes the
    #: worker's last inputs just before (the stats rollup: its last partials).
    drain_on_stop: ClassVar[bool] = False
    store: Sized  # the subclass's keys in memory

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        worker_id: str,
        inputs_topic: str,
        state_topic: str,
        public_topic: str,
        group_suffix: str,
        replay_ms: int = 0,
        on_failure: Callable[[], object] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        s = settings
        self.settings = settings
        self.bootstrap = bootstrap
        self.inputs_topic = inputs_topic
        self.state_topic = state_topic
        self.public_topic = public_topic
        self.exactly_once = s.exactly_once
        self.group_id = f"{s.group_id}.{group_suffix}"
        self.replay_ms = replay_ms
        self.input_partitions = 0  # the inputs topic's, once the stage's thread checked them
        self.on_failure = on_failure
        self.metrics = metrics or Metrics()
        self.consumer = Consumer(
            _consumer_config(s, bootstrap, self.group_id, worker_id, group_suffix)
        )
        self.owned: set[int] = set()
        self._stop = threading.Event()
        self._deadline = float("inf")  # set by request_stop()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-stage", daemon=True)
        #: Counts for ``/status`` and the stop log line (a subclass adds its own).
        self.counts = {self.unit: 0, "public_writes": 0, "state_writes": 0, f"bad_{self.unit}": 0}
        self.error: str | None = None
        #: Whether the worker is stopping (set by the worker: it stops its stages last).
        self.worker_stopping: Callable[[], bool] = lambda: False
        self.output = StageOutput(
            s,
            bootstrap,
            worker_id=worker_id,
            suffix=group_suffix,
            kind=self.kind,
            public_topic=public_topic,
            state_topic=state_topic,
            counts=self.counts,
            log=self.log,
            stopping=lambda: self._stop.is_set() or self.worker_stopping(),
        )

    # --- what a subclass does ------------------------------------------------------------------
    def fold(self, messages: list[Message]) -> Writes:
        """Fold a batch (messages of owned partitions, without errors) into the store."""
        raise NotImplementedError

    def restored(self, partition: int, key: bytes, value: bytes | None) -> None:
        """A changelog record read back on assignment."""
        raise NotImplementedError

    def drop(self, partitions: list[int]) -> None:
        """Forget the keys of partitions no longer owned (or about to be restored)."""
        raise NotImplementedError

    def stage_metrics(self) -> tuple[Any, Any, Any]:
        """The stage's inputs counter, writes counter (by ``topic``) and keys-held gauge."""
        raise NotImplementedError

    def counted(self, writes: Writes) -> None:
        """A batch was committed: its metrics."""
        inputs, written, held = self.stage_metrics()
        inputs.inc(writes.folded)
        written.labels("public").inc(len(writes.public) + len(writes.elsewhere))
        written.labels("changelog").inc(len(writes.state))
        held.set(len(self.store))

    def status(self) -> dict[str, Any]:
        """What ``/status`` reports of the stage."""
        return {**self.counts, "assigned": sorted(self.owned), "error": self.error}

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish the batch in hand, commit, leave the group (blocking: call off the loop);
        False when the stage is still at it after ``timeout``."""
        self.request_stop(time.monotonic() + timeout)
        return self.join()

    def request_stop(self, deadline: float) -> None:
        """Ask the stage to stop by ``deadline`` (``time.monotonic()``): a restore in progress
        gives up, the drain and the last calls are cut short to meet it."""
        self._deadline = deadline
        self._stop.set()

    def join(self) -> bool:
        """Wait for the stage to stop, at most until its deadline; False when it did not.

        A stage still blocked then (a broker call, its consumer's close) is left behind: what
        it did not commit (offsets, an open transaction) is folded by the next owner."""
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        if not self._thread.is_alive():
            return True
        log_event(
            self.log,
            logging.WARNING,
            f"{self.kind} stage did not stop in time; its unfinished inputs go to the next owner",
            assigned=_fmt(sorted(self.owned)),
            in_call=self.output.in_call or "-",
        )
        return False

    def _left_s(self, most: float) -> float:
        """Seconds a blocking call may take: ``most``, less once stopping (at least a moment)."""
        if not self._stop.is_set():
            return most
        return max(0.1, min(most, self._deadline - time.monotonic()))

    def _run(self) -> None:
        try:
            topics = self.inputs_topic, self.state_topic
            self.input_partitions = check_partitions(self.consumer, self.kind, *topics)
            self.consumer.subscribe(
                [self.inputs_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            while not self._stop.is_set():
                messages = self.consumer.consume(BATCH, 0.1)
                if messages:
                    self._process(messages)
            if self.drain_on_stop:
                try:
                    _drain(self)
                except KafkaException as exc:  # what is left is folded by the next owner
                    log_event(
                        self.log, logging.WARNING, f"{self.kind} drain failed", error=str(exc)
                    )
        except StageStopped:
            pass  # a restore after an aborted transaction, cut short: the next owner restores
        except (StageError, KafkaException) as exc:
            self.error = str(exc)
            log_event(
                self.log, logging.CRITICAL, f"{self.kind} stage failed; stopping", error=str(exc)
            )
            self.on_failure()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.log.exception(f"{self.kind} stage failed")
            self.on_failure()
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self.consumer.close()
        except KafkaException as exc:
            log_event(
                self.log, logging.WARNING, f"{self.kind} consumer close failed", error=str(exc)
            )
        self.output.close(self._left_s(5.0))
        log_event(self.log, logging.INFO, f"{self.kind} stage stopped", **self.counts)

    # --- one batch -------------------------------------------------------------------------------
    def _process(self, messages: list[Message]) -> None:
        owned = self.owned
        positions: dict[int, int] = {}
        batch: list[Message] = []
        for m in messages:
            err = m.error()
            if err is not None:
                log_event(self.log, logging.WARNING, f"{self.kind} consume error", error=str(err))
                continue
            p = m.partition()
            if p not in owned:
                continue  # revoked meanwhile: its next owner reads it (never commit it here)
            positions[p] = (m.offset() or 0) + 1
            batch.append(m)
        writes = self.fold(batch)
        self._commit(writes, positions)
        self.counts[self.unit] += writes.folded
        self.counted(writes)

    def skipped(self, why: str) -> None:
        """An input that does not decode: counted, logged, never folded."""
        self.counts[f"bad_{self.unit}"] += 1
        log_event(self.log, logging.WARNING, f"bad {self.kind} input skipped", error=why)

    def _commit(self, writes: Writes, positions: dict[int, int]) -> None:
        offsets = [TopicPartition(self.inputs_topic, p, o) for p, o in positions.items()]
        if self.exactly_once:
            meta = self.consumer.consumer_group_metadata()
            if not self.output.in_transaction(writes, offsets, meta):
                self._start_over(sorted(self.owned))
            return
        self.output.at_least_once(writes, partial(self._commit_offsets, offsets))

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # e.g. a rebalance overtook it: whoever reads these inputs next folds them
            # again, which changes nothing already written (the fold is idempotent)
            log_event(self.log, logging.WARNING, f"{self.kind} commit failed", error=str(exc))

    # --- assignment --------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        try:
            starts = _restore(self, ps)
        except StageStopped:
            # stopping: the group still expects the assignment, but the stage neither owns
            # nor reads these (nothing folded, nothing committed: the next owner restores)
            consumer.incremental_assign(partitions)
            log_event(self.log, logging.INFO, f"{self.kind} restore cut short: stopping")
            return
        consumer.incremental_assign([TopicPartition(self.inputs_topic, p, starts[p]) for p in ps])
        self.owned.update(ps)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are committed before the next consume() (whose callbacks these are): nothing
        # of these partitions is left to commit.
        ps = [tp.partition for tp in partitions]
        self.owned.difference_update(ps)
        self.drop(ps)
        consumer.incremental_unassign(partitions)
        log_event(self.log, logging.INFO, f"{self.kind} partitions revoked", partitions=_fmt(ps))

    def _start_over(self, ps: list[int]) -> None:
        """Exactly-once, after an abort: restore the partitions and read them from the commit."""
        starts = _restore(self, ps)
        for p in ps:
            self.consumer.seek(TopicPartition(self.inputs_topic, p, starts[p]))


def _drain(stage: KeyedStage) -> None:
    """Fold the owned partitions up to their current end (at most ``DRAIN_S``, and only
    while the stop's deadline leaves time to close; records of transactions still open are
    left to the next owner)."""
    deadline = min(time.monotonic() + DRAIN_S, stage._deadline - CLOSE_S)
    tps = [TopicPartition(stage.inputs_topic, p) for p in sorted(stage.owned)]
    if not tps or time.monotonic() >= deadline:
        return
    call_s = max(0.1, deadline - time.monotonic())
    ends = {tp.partition: stage.consumer.get_watermark_offsets(tp, call_s)[1] for tp in tps}
    committed = {tp.partition: tp.offset for tp in stage.consumer.committed(tps, call_s)}
    while time.monotonic() < deadline:
        done = all(
            ends[tp.partition] <= 0
            or max(tp.offset, committed.get(tp.partition, -1)) >= ends[tp.partition]
            for tp in stage.consumer.position(tps)
        )
        if done:
            return
        messages = stage.consumer.consume(BATCH, 0.1)
        if messages:
            stage._process(messages)


def _restore(stage: KeyedStage, ps: list[int]) -> dict[int, int]:
    """Read the partitions' changelog into the store; returns where to read inputs from."""
    if not ps:
        return {}
    t0 = time.monotonic()
    log_event(stage.log, logging.INFO, f"{stage.kind} restoring partitions", partitions=_fmt(ps))
    stage.drop(ps)
    reader = Consumer(restore_config(stage.settings, stage.bootstrap, stage.group_id))
    try:
        restored = read_changelog(
            reader, stage.state_topic, ps, stage.restored, stopping=stage._stop.is_set
        )
    finally:
        reader.close()
    starts = start_offsets(
        stage.consumer, stage.inputs_topic, ps, stage.replay_ms, stopping=stage._stop.is_set
    )
    log_event(
        stage.log,
        logging.INFO,
        f"{stage.kind} partitions restored",
        partitions=_fmt(ps),
        keys=restored,
        seconds=round(time.monotonic() - t0, 3),
    )
    return starts


def _consumer_config(
    s: Settings, bootstrap: str, group_id: str, worker_id: str, suffix: str
) -> dict[str, Any]:
    return consumer_config(
        s,
        bootstrap,
        group_id,
        **{
            "client.id": f"{worker_id}-{suffix}-in",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "isolation.level": "read_committed",
            # inputs are small: a little prefetch keeps batches full and RSS flat
            # (librdkafka's default holds up to 64 MiB): the stage's part of the budget
            **kafka_client_config(s.memory_budget_mb, "stage_consumer"),
            "logger": logging.getLogger("streamer.librdkafka.consumer"),
        },
    )


def _fmt(ps: list[int]) -> str:
    return ",".join(map(str, sorted(ps)))
