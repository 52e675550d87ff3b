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
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamer.analytics.suppression_fold import (
    BadEvent,
    Change,
    SuppressionStore,
    decode_event,
    decode_state,
    encode_state,
    public_value,
)
from streamer.config import Settings
from streamer.kafka.clients import consumer_config, producer_config
from streamer.kafka.sink import TRANSACTION_TIMEOUT_MS
from streamer.logs import log_event

log = logging.getLogger("streamer.suppressions")
T = TypeVar("T")
#: Errors of a topic or group just created (the client does not know its leader or
#: coordinator yet) or of a broker busy restarting: asked again.
TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._WAIT_COORD,
    }
)

#: Events folded per batch (one commit, or one transaction, each).
BATCH = 2000
#: Longest a restore may take (an open transaction of a dead producer holds read_committed
#: readers until the broker aborts it: TRANSACTION_TIMEOUT_MS).
RESTORE_TIMEOUT_S = 60.0
#: Blocking calls to the broker (commit, flush, transactions).
CALL_TIMEOUT_S = 30.0


class StageError(Exception):
    """The stage cannot go on (the worker stops; its successor reads the events again)."""


class SuppressionStage:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        worker_id: str,
        on_failure: Callable[[], object] = lambda: None,
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
        self.store = SuppressionStore(s.suppressions_memory)
        common = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000}
        self.consumer = Consumer(
            consumer_config(
                s,
                bootstrap,
                self.group_id,
                **{
                    "client.id": f"{worker_id}-suppressions-in",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "isolation.level": "read_committed",
                    # events are small: a little prefetch keeps batches full and RSS flat
                    # (librdkafka's default holds up to 64 MiB)
                    "queued.max.messages.kbytes": 4_096,
                    "fetch.max.bytes": 2_097_152,
                    "logger": logging.getLogger("streamer.librdkafka.consumer"),
                    **common,
                },
            )
        )
        conf: dict[str, Any] = {
            "client.id": f"{worker_id}-suppressions-out",
            "partitioner": "murmur2_random",  # the public topic: where Java producers put a key
            "linger.ms": 5,
            "queue.buffering.max.kbytes": 16_384,  # a batch's writes at most, flushed each time
            "logger": logging.getLogger("streamer.librdkafka.producer"),
        }
        if self.exactly_once:
            # under the worker's prefix (streamer-<group_id>-: one ACL), its own id
            conf["transactional.id"] = f"streamer-{s.group_id}-{worker_id}-suppressions"
            conf["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
        self.producer = Producer(producer_config(s, bootstrap, **conf))
        if self.exactly_once:
            self.producer.init_transactions(CALL_TIMEOUT_S)
        self.owned: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suppression-stage", daemon=True)
        self._failed_deliveries: list[str] = []
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
            self._check_partitions()
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

    def _check_partitions(self) -> None:
        """The changelog must have the events topic's partitions: a recipient's state goes to the
        partition number of its events."""
        topics = self.consumer.list_topics(timeout=CALL_TIMEOUT_S).topics
        internal = (self.events_topic, self.state_topic)
        counts = {t: len(topics[t].partitions) if t in topics else 0 for t in internal}
        if len(set(counts.values())) != 1 or 0 in counts.values():
            found = ", ".join(f"{t}: {n}" for t, n in counts.items())
            raise StageError(f"the suppression topics need as many partitions each ({found})")

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
            self.counts["events"] += 1
            change, state = store.apply(p, recipient, event)
            if change is Change.PUBLIC:
                changed[recipient] = (p, public_value(recipient, state), encode_state(state))
        if self.exactly_once:
            self._commit_transaction(changed, positions)
        else:
            self._commit_at_least_once(changed, positions)

    def _write_public(self, changed: dict[str, tuple[int, bytes | None, bytes]]) -> None:
        for recipient, (_p, value, _state) in changed.items():
            self._produce(self.public_topic, recipient.encode(), value)
        self.counts["public_writes"] += len(changed)

    def _write_state(self, changed: dict[str, tuple[int, bytes | None, bytes]]) -> None:
        for recipient, (p, _value, state) in changed.items():
            self._produce(self.state_topic, recipient.encode(), state, p)
        self.counts["state_writes"] += len(changed)

    def _produce(self, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value, key, partition=partition, on_delivery=self._delivered
                )
                return
            except BufferError:
                self.producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed_deliveries.append(f"{msg.topic()}: {err.str()}")

    def _flush(self) -> None:
        left = self.producer.flush(CALL_TIMEOUT_S)
        if left or self._failed_deliveries:
            failed, self._failed_deliveries = self._failed_deliveries, []
            raise StageError(f"suppression writes failed: {left} undelivered; {failed[:3]}")

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
            producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), CALL_TIMEOUT_S
            )
            producer.commit_transaction(CALL_TIMEOUT_S)
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                raise
            log_event(log, logging.WARNING, "suppression transaction aborted", error=str(err))
            producer.abort_transaction(CALL_TIMEOUT_S)
            # the memory holds the aborted batch's changes: start the partitions over
            self._start_over(sorted(self.owned))
        if self._failed_deliveries:
            failed, self._failed_deliveries = self._failed_deliveries, []
            log_event(
                log, logging.WARNING, "suppression writes of an aborted transaction", n=len(failed)
            )

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
        restored = self._read_changelog(ps)
        starts = self._start_offsets(ps)
        log_event(
            log,
            logging.INFO,
            "suppression partitions restored",
            partitions=_fmt(ps),
            recipients=restored,
            seconds=round(time.monotonic() - t0, 3),
        )
        return starts

    def _read_changelog(self, ps: list[int]) -> int:
        if not ps:
            return 0
        reader = Consumer(
            consumer_config(
                self.settings,
                self.bootstrap,
                self.group_id,  # assigned, never joins nor commits: no ACL of its own
                **{
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 50,
                    "queued.max.messages.kbytes": 4_096,
                },
            )
        )
        try:
            left, n = set(), 0
            for p in ps:  # an empty partition has nothing to wait for
                tp = TopicPartition(self.state_topic, p)
                low, high = _retried(partial(reader.get_watermark_offsets, tp, CALL_TIMEOUT_S))
                if high > low:
                    left.add(p)
            if not left:
                return 0
            reader.assign([TopicPartition(self.state_topic, p, OFFSET_BEGINNING) for p in left])
            deadline = time.monotonic() + RESTORE_TIMEOUT_S
            while left:
                if time.monotonic() > deadline:
                    raise StageError(f"restoring {self.state_topic} took over {RESTORE_TIMEOUT_S}s")
                for m in reader.consume(BATCH, 0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            left.discard(m.partition() or 0)
                            continue
                        raise StageError(f"restoring {self.state_topic}: {err.str()}")
                    key, value = m.key(), m.value()
                    if not key:
                        continue
                    try:
                        state = decode_state(value) if value else None
                    except BadEvent as exc:
                        log_event(log, logging.WARNING, "bad suppression state", error=str(exc))
                        continue
                    self.store.restore(m.partition() or 0, key.decode(), state)
                    n += 1
            return n
        finally:
            reader.close()

    def _start_offsets(self, ps: list[int]) -> dict[int, int]:
        """The committed position of each partition, brought ``suppression_replay`` back."""
        tps = [TopicPartition(self.events_topic, p) for p in ps]
        found = _retried(lambda: self.consumer.committed(tps, CALL_TIMEOUT_S))
        committed = {tp.partition: tp.offset for tp in found}
        starts = {p: committed.get(p, -1) for p in ps}
        if self.replay_ms:
            since = int(time.time() * 1000) - self.replay_ms
            asked = [TopicPartition(self.events_topic, p, since) for p in ps if starts[p] >= 0]
            if asked:
                for tp in _retried(lambda: self.consumer.offsets_for_times(asked, CALL_TIMEOUT_S)):
                    if tp.offset >= 0:
                        starts[tp.partition] = min(starts[tp.partition], tp.offset)
        return {p: o if o >= 0 else OFFSET_BEGINNING for p, o in starts.items()}


def _retried(call: Callable[[], T]) -> T:
    """``call()``, again while it fails with a retriable error (a topic just created whose
    leaders the client does not know yet), up to RESTORE_TIMEOUT_S."""
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            if not (isinstance(err, KafkaError) and (err.retriable() or err.code() in TRANSIENT)):
                raise
            if time.monotonic() > deadline:
                raise StageError(f"gave up after {RESTORE_TIMEOUT_S:.0f}s: {err.str()}") from None
            time.sleep(0.2)


def _fmt(ps: list[int]) -> str:
    return ",".join(map(str, sorted(ps)))
