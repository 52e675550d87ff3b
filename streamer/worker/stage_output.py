"""A keyed stage's writes: its public topic and its changelog, at least once or in transactions.

At least once, per batch: the public writes are acknowledged first, then the changelog writes,
then the inputs' offsets are committed (``streamer.worker.keyed_stage``). Exactly once: one
transaction holds the public and changelog writes and the inputs' offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from streamer.config import Settings
from streamer.kafka.clients import producer_config
from streamer.kafka.sink import TRANSACTION_TIMEOUT_MS
from streamer.logs import log_event
from streamer.memory import kafka_client_config
from streamer.worker.suppression_restore import (
    CALL_TIMEOUT_S,
    RESTORE_TIMEOUT_S,
    StageError,
    retried,
)
from streamer.worker.watchdog import Watchdog, exit_now

#: A transactional call (retried while retriable) still blocked after this hangs.
HANG_S = RESTORE_TIMEOUT_S + CALL_TIMEOUT_S + 5.0


@dataclass(slots=True)
class Writes:
    """What one batch changed: public values and changelog values, the latest per key, and
    values for a second public topic (the rollup's rates), by (topic, key)."""

    public: dict[bytes, bytes | None] = field(default_factory=dict)
    elsewhere: dict[tuple[str, bytes], bytes | None] = field(default_factory=dict)
    state: dict[tuple[int, bytes], bytes | None] = field(default_factory=dict)  # (p, key) -> v
    folded: int = 0  # inputs folded (neither skipped nor revoked)


class StageOutput:
    """The producer of one keyed stage (``kind``), writing ``public_topic`` and ``state_topic``."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        worker_id: str,
        suffix: str,
        kind: str,
        public_topic: str,
        state_topic: str,
        counts: dict[str, int],
        log: logging.Logger,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.kind = kind
        self.public_topic = public_topic
        self.state_topic = state_topic
        self.counts = counts  # the stage's: public_writes, state_writes
        self.log = log
        self.exactly_once = settings.exactly_once
        self.producer = Producer(_producer_config(settings, bootstrap, worker_id, suffix))
        if self.exactly_once:
            self.producer.init_transactions(CALL_TIMEOUT_S)
        self._failed_deliveries: list[str] = []
        self._stopping = stopping
        self._watchdog = Watchdog(self._hung)

    def at_least_once(self, writes: Writes, commit: Callable[[], None]) -> None:
        """Public writes acknowledged, then the changelog's, then ``commit()`` the offsets."""
        if writes.public or writes.elsewhere or writes.state:
            self._write_public(writes)
            self._flush()  # the public value before the state that says it was written
            self._write_state(writes)
            self._flush()
        commit()

    def in_transaction(
        self, writes: Writes, offsets: list[TopicPartition], group_metadata: Any
    ) -> bool:
        """The writes and the offsets in one transaction; False when it was aborted (the
        stage's memory holds the aborted batch's changes: it must start its partitions over)."""
        producer = self.producer
        try:
            producer.begin_transaction()
            self._write_public(writes)
            self._write_state(writes)
            # a retriable failure (the broker away for a moment) may be asked again; a call
            # that hangs past its timeout (librdkafka 5456, 5511) ends the process, like the
            # record path's (streamer.worker.watchdog)
            with self._watchdog.guard(HANG_S, f"{self.kind} send_offsets_to_transaction"):
                retried(
                    partial(
                        producer.send_offsets_to_transaction,
                        offsets,
                        group_metadata,
                        CALL_TIMEOUT_S,
                    )
                )
            with self._watchdog.guard(HANG_S, f"{self.kind} commit_transaction"):
                retried(partial(producer.commit_transaction, CALL_TIMEOUT_S))
            return True
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                raise
            log_event(self.log, logging.WARNING, f"{self.kind} transaction aborted", error=str(err))
            producer.abort_transaction(CALL_TIMEOUT_S)
            return False
        finally:
            self._failed_deliveries.clear()  # in a transaction, its commit (or abort) says all

    @property
    def in_call(self) -> str | None:
        """The transactional call in progress, if any (a stop that left the stage names it)."""
        return self._watchdog.guarding

    def _hung(self) -> None:
        """A transactional call hung: end the process (a restarted worker takes over), unless
        the worker is stopping: its stop leaves the stage behind at its deadline and exits
        as asked, 0 (``KeyedStage.join``), with nothing more lost than by a crash."""
        if not self._stopping():
            exit_now()

    def close(self, timeout: float = 5.0) -> None:
        self.producer.flush(timeout)

    def _write_public(self, writes: Writes) -> None:
        for key, value in writes.public.items():
            self._produce(self.public_topic, key, value)
        for (topic, key), value in writes.elsewhere.items():
            self._produce(topic, key, value)
        self.counts["public_writes"] += len(writes.public) + len(writes.elsewhere)

    def _write_state(self, writes: Writes) -> None:
        for (p, key), value in writes.state.items():
            self._produce(self.state_topic, key, value, p)
        self.counts["state_writes"] += len(writes.state)

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
            raise StageError(f"{self.kind} writes failed: {failed[:3]}")


def _producer_config(s: Settings, bootstrap: str, worker_id: str, suffix: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "client.id": f"{worker_id}-{suffix}-out",
        "partitioner": "murmur2_random",  # the public topic: where Java producers put a key
        "linger.ms": 5,
        # a batch's writes are flushed each time: a full queue only waits for the broker
        **kafka_client_config(s.memory_budget_mb, "stage_producer"),
        # only failures need the stage (its flush waits for the rest): no Python callback per
        # delivered write
        "delivery.report.only.error": True,
        "logger": logging.getLogger("streamer.librdkafka.producer"),
    }
    if s.exactly_once:
        # under the worker's prefix (streamer-<group_id>-: one ACL), its own id
        conf["transactional.id"] = f"streamer-{s.group_id}-{worker_id}-{suffix}"
        conf["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
    return producer_config(s, bootstrap, **conf)
