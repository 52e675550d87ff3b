"""The suppression stage: folds the suppression events per recipient, writes the suppressions.

Every worker process runs one, in its own thread, beside the record path: a consumer in the
group ``<group_id>.suppressions`` reads the internal events topic (keyed by recipient, so all
events of a recipient meet in one partition, owned by one stage), ``SuppressionStore`` folds
them (``streamer.analytics.suppression_fold``), and a producer writes what changed:

- the public, compacted ``suppressions_topic``: a recipient's entry, or a tombstone;
- the changelog, compacted ``suppression_state_topic`` (co-partitioned with the events topic:
  a recipient's state sits in the partition number of its events), from which a stage that
  is assigned a partition restores its recipients before folding more.

A separate consumer group rather than the record consumer subscribing to both topics: the two
loads scale and rebalance independently, the record path's batching, back-pressure and
transactions stay as they are, and the stage's own transactions (exactly-once) commit its own
offsets.

Delivery, at least once: per batch, the public writes are acknowledged first, then the
changelog writes, then the events' offsets are committed. A crash anywhere replays events the
changelog may already hold: the fold is idempotent, so nothing is counted twice, and a public
write lost before its changelog write is made again (the restored state lacks the change).
Exactly once: per batch, one transaction holds the public and changelog writes and the events'
offsets; a failed one is aborted and the stage restores its partitions and reads them again.

On assignment the stage also reads again the last ``suppression_replay`` seconds of events
before its committed position: the delivery times of recipients that were never suppressed
are kept in memory only (writing them would cost a write per delivery), and this replay brings
them back after a restart, so a hard bounce older than a delivery that arrives late is still
recognised as stale.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streamer.analytics.suppression_fold import (
    BadEvent,
    Change,
    SuppressionStore,
    decode_event,
    encode_state,
    public_value,
)
from streamer.config import Settings
from streamer.kafka.clients import consumer_config, producer_config
from streamer.kafka.sink import TRANSACTION_TIMEOUT_MS
from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.suppression_restore import (
    CALL_TIMEOUT_S,
    RESTORE_TIMEOUT_S,
    StageError,
    check_partitions,
    read_changelog,
    restore_config,
    retried,
    start_offsets,
)
from streamer.worker.watchdog import Watchdog

log = logging.getLogger("streamer.suppressions")

#: Events folded per batch (one commit, or one transaction, each).
BATCH = 2000
#: A transactional call (retried while retriable) still blocked after this hangs.
HANG_S = RESTORE_TIMEOUT_S + CALL_TIMEOUT_S + 5.0


class SuppressionStage:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        worker_id: str,
        on_failure: Callable[[], object] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        s = settings
        self.settings = settings
        self.bootstrap = bootstrap
        self.events_topic = s.suppression_events_topic or ""
        self.state_topic = s.suppression_state_topic or ""
        self.public_topic = s.suppressions_topic
        self.exactly_once = s.exactly_once
        self.group_id = f"{s.group_id}.suppressions"
        self.replay_ms = s.suppression_replay * 1000
        self.on_failure = on_failure
        self.metrics = metrics or Metrics()
        self.store = SuppressionStore(s.suppressions_memory)
        self.consumer = Consumer(_consumer_config(s, bootstrap, self.group_id, worker_id))
        self.producer = Producer(_producer_config(s, bootstrap, worker_id))
        if self.exactly_once:
            self.producer.init_transactions(CALL_TIMEOUT_S)
        self.owned: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suppression-stage", daemon=True)
        self._failed_deliveries: list[str] = []
        self._watchdog = Watchdog()
        #: Counts for ``/status`` and the stop log line.
        self.counts = {"events": 0, "public_writes": 0, "state_writes": 0, "bad_events": 0}
        self.error: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, commit, leave the group (blocking: call off the loop)."""
        self._stop.set()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """What ``/status`` reports of the stage."""
        return {
            **self.counts,
            "assigned": sorted(self.owned),
            "remembered": len(self.store),
            "evicted": self.store.evicted,
            "error": self.error,
        }

    def _run(self) -> None:
        try:
            check_partitions(self.consumer, self.events_topic, self.state_topic)
            self.consumer.subscribe(
                [self.events_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            while not self._stop.is_set():
                messages = self.consumer.consume(BATCH, 0.1)
                if messages:
                    self._process(messages)
        except (StageError, KafkaException) as exc:
            self.error = str(exc)
            log_event(log, logging.CRITICAL, "suppression stage failed; stopping", error=str(exc))
            self.on_failure()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("suppression stage failed")
            self.on_failure()
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self.consumer.close()
        except KafkaException as exc:
            log_event(log, logging.WARNING, "suppression consumer close failed", error=str(exc))
        self.producer.flush(5.0)
        log_event(log, logging.INFO, "suppression stage stopped", **self.counts)

    # --- one batch -------------------------------------------------------------------------------
    def _process(self, messages: list[Message]) -> None:
        store, owned = self.store, self.owned
        changed: dict[str, tuple[int, bytes | None, bytes]] = {}  # recipient -> its writes
        positions: dict[int, int] = {}
        folded = 0
        for m in messages:
            err = m.error()
            if err is not None:
                log_event(log, logging.WARNING, "suppression consume error", error=str(err))
                continue
            p = m.partition()
            if p not in owned:
                continue  # revoked meanwhile: its next owner reads it (never commit it here)
            positions[p] = (m.offset() or 0) + 1
            key = m.key()
            try:
                if not key:
                    raise BadEvent("suppression event without a key")
                recipient = key.decode()
                event = decode_event(m.value())
            except (BadEvent, UnicodeDecodeError) as exc:
                self.counts["bad_events"] += 1
                log_event(log, logging.WARNING, "bad suppression event skipped", error=str(exc))
                continue
            change, state = store.apply(p, recipient, event)
            if change is Change.PUBLIC:
                changed[recipient] = (p, public_value(recipient, state), encode_state(state))
            folded += 1
        if self.exactly_once:
            self._commit_transaction(changed, positions)
        else:
            self._commit_at_least_once(changed, positions)
        self.counts["events"] += folded
        self.metrics.suppression_events.inc(folded)
        self.metrics.suppression_recipients.set(len(store))

    def _write_public(self, changed: dict[str, tuple[int, bytes | None, bytes]]) -> None:
        for recipient, (_p, value, _state) in changed.items():
            self._produce(self.public_topic, recipient.encode(), value)
        self.counts["public_writes"] += len(changed)
        self.metrics.suppression_writes.labels("public").inc(len(changed))

    def _write_state(self, changed: dict[str, tuple[int, bytes | None, bytes]]) -> None:
        for recipient, (p, _value, state) in changed.items():
            self._produce(self.state_topic, recipient.encode(), state, p)
        self.counts["state_writes"] += len(changed)
        self.metrics.suppression_writes.labels("changelog").inc(len(changed))

    def _produce(self, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
        while True:
            try:
                # positional: keywords cost a dict per call (``streamer.kafka.sink``)
                self.producer.produce(topic, value, key, partition, self._delivered, None, 0)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed_deliveries.append(f"{msg.topic()}: {err.str()}")

    def _flush(self) -> None:
        """Wait until every write is acknowledged; librdkafka retries them until its message
        timeout (a broker away for a while), after which they fail: StageError."""
        while self.producer.flush(1.0) and not self._failed_deliveries:
            pass
        if self._failed_deliveries:
            failed, self._failed_deliveries = self._failed_deliveries, []
            raise StageError(f"suppression writes failed: {failed[:3]}")

    def _commit_at_least_once(
        self, changed: dict[str, tuple[int, bytes | None, bytes]], positions: dict[int, int]
    ) -> None:
        if changed:
            self._write_public(changed)
            self._flush()  # the public value before the state that says it was written
            self._write_state(changed)
            self._flush()
        if positions:
            offsets = [TopicPartition(self.events_topic, p, o) for p, o in positions.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # e.g. a rebalance overtook it: whoever reads these events next folds them
                # again, which changes nothing already written (the fold is idempotent)
                log_event(log, logging.WARNING, "suppression commit failed", error=str(exc))

    def _commit_transaction(
        self, changed: dict[str, tuple[int, bytes | None, bytes]], positions: dict[int, int]
    ) -> None:
        producer = self.producer
        try:
            producer.begin_transaction()
            self._write_public(changed)
            self._write_state(changed)
            offsets = [TopicPartition(self.events_topic, p, o) for p, o in positions.items()]
            meta = self.consumer.consumer_group_metadata()
            # a retriable failure (the broker away for a moment) may be asked again; a call
            # that hangs past its timeout (librdkafka 5456, 5511) ends the process, like the
            # record path's (streamer.worker.watchdog)
            with self._watchdog.guard(HANG_S, "suppression send_offsets_to_transaction"):
                retried(
                    partial(producer.send_offsets_to_transaction, offsets, meta, CALL_TIMEOUT_S)
                )
            with self._watchdog.guard(HANG_S, "suppression commit_transaction"):
                retried(partial(producer.commit_transaction, CALL_TIMEOUT_S))
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                raise
            log_event(log, logging.WARNING, "suppression transaction aborted", error=str(err))
            producer.abort_transaction(CALL_TIMEOUT_S)
            # the memory holds the aborted batch's changes: start the partitions over
            self._start_over(sorted(self.owned))
        self._failed_deliveries.clear()  # in a transaction, its commit (or abort) says it all

    # --- assignment --------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        starts = self._restore(ps)
        consumer.incremental_assign([TopicPartition(self.events_topic, p, starts[p]) for p in ps])
        self.owned.update(ps)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are committed before the next consume() (whose callbacks these are): nothing
        # of these partitions is left to commit.
        ps = [tp.partition for tp in partitions]
        self.owned.difference_update(ps)
        self.store.drop(ps)
        consumer.incremental_unassign(partitions)
        log_event(log, logging.INFO, "suppression partitions revoked", partitions=_fmt(ps))

    def _start_over(self, ps: list[int]) -> None:
        """Exactly-once, after an abort: restore the partitions and read them from the commit."""
        starts = self._restore(ps)
        for p in ps:
            self.consumer.seek(TopicPartition(self.events_topic, p, starts[p]))

    def _restore(self, ps: list[int]) -> dict[int, int]:
        """Read the partitions' changelog into the store; returns where to read events from."""
        if not ps:
            return {}
        t0 = time.monotonic()
        self.store.drop(ps)
        reader = Consumer(restore_config(self.settings, self.bootstrap, self.group_id))
        try:
            restored = read_changelog(reader, self.state_topic, ps, self.store)
        finally:
            reader.close()
        starts = start_offsets(self.consumer, self.events_topic, ps, self.replay_ms)
        log_event(
            log,
            logging.INFO,
            "suppression partitions restored",
            partitions=_fmt(ps),
            recipients=restored,
            seconds=round(time.monotonic() - t0, 3),
        )
        return starts


def _consumer_config(s: Settings, bootstrap: str, group_id: str, worker_id: str) -> dict[str, Any]:
    return consumer_config(
        s,
        bootstrap,
        group_id,
        **{
            "client.id": f"{worker_id}-suppressions-in",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "isolation.level": "read_committed",
            # events are small: a little prefetch keeps batches full and RSS flat
            # (librdkafka's default holds up to 64 MiB)
            "queued.max.messages.kbytes": 4_096,
            "fetch.max.bytes": 2_097_152,
            "logger": logging.getLogger("streamer.librdkafka.consumer"),
        },
    )


def _producer_config(s: Settings, bootstrap: str, worker_id: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "client.id": f"{worker_id}-suppressions-out",
        "partitioner": "murmur2_random",  # the public topic: where Java producers put a key
        "linger.ms": 5,
        "queue.buffering.max.kbytes": 16_384,  # a batch's writes at most, flushed each time
        # only failures need the stage (its flush waits for the rest): no Python callback per
        # delivered write
        "delivery.report.only.error": True,
        "logger": logging.getLogger("streamer.librdkafka.producer"),
    }
    if s.exactly_once:
        # under the worker's prefix (streamer-<group_id>-: one ACL), its own id
        conf["transactional.id"] = f"streamer-{s.group_id}-{worker_id}-suppressions"
        conf["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
    return producer_config(s, bootstrap, **conf)


def _fmt(ps: list[int]) -> str:
    return ",".join(map(str, sorted(ps)))
