"""The output side: one confluent-kafka Producer (acks=all, idempotent) with delivery callbacks.

Nothing awaits a single event: ``send`` hands a chunk's outputs to librdkafka's queue in a tight
loop, each with the chunk's delivery callback; ``poll`` serves the acknowledgements in bulk
(callbacks run in the calling thread, the event loop's). Acknowledgements count down the chunk
(``streamer.worker.offsets``), which is what makes its input offsets committable.

A failed delivery never lets its input offset be committed. librdkafka already retried retriable
errors until ``message.timeout.ms``; what reaches us is then produced again (transient errors,
a bounded number of times) or, for permanent errors (record too large for the output topic, topic
missing...), sent to the dead-letter topic with reason ``produce-failed``. A DLQ
copy that fails transiently is retried until it lands (with a log line each time): the input
stays uncommitted rather than being lost; one refused for good (too large) is dead-lettered
without its value, keeping its reason and source headers. A refusal for want of an ACL is no
property of the record but of the deployment: it is fatal (``fatal``; the worker stops without
committing those inputs) rather than a reason to dead-letter every record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamer.config import Settings
from streamer.deadletter import (
    DLQ_DETAIL,
    DLQ_REASON,
    Headers,
    dead_letter_headers,
    has_header,
)
from streamer.kafka.clients import producer_config
from streamer.logs import log_event
from streamer.pipeline import Output

log = logging.getLogger("streamer.sink")

PRODUCE_FAILED = "produce-failed"
#: How many times a transient delivery failure is produced again before it goes to the DLQ.
MAX_RETRIES = 5
#: The principal lacks an ACL: every record would fail alike, so the worker stops instead.
NOT_AUTHORIZED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}

#: What librdkafka reports for outputs an aborted transaction removed from its queues.
PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}

#: Exactly-once: how long the broker lets a transaction stay open. A worker killed mid-batch
#: leaves one open; unless the same worker id comes back first (which aborts it at once), the
#: broker aborts it after this, and until then ``read_committed`` readers of the partitions it
#: wrote wait. librdkafka's default (60 s) is far above a batch's round trip; Kafka Streams
#: uses 10 s for the same reason. librdkafka derives its message timeout from it.
TRANSACTION_TIMEOUT_MS = 10_000

DeliveryCallback = Callable[[KafkaError | None, Message], None]
#: ``produce()``'s partition argument for "the partitioner decides" (librdkafka's
#: RD_KAFKA_PARTITION_UA); its positional arguments are (topic, value, key, partition,
#: callback, on_delivery, timestamp, headers), a timestamp of 0 meaning "now".
ANY_PARTITION = -1


class InputRange(Protocol):
    """The input records a group of outputs came from (``streamer.worker.offsets.OffsetChunk``)."""

    first: int
    last: int
    abandoned: bool

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    def add_pending(self, n: int) -> None: ...
    def ack(self) -> None: ...
    def seal(self) -> None: ...


class Sink:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        client_id: str,
        dlq_topic: str,
        on_retry: Callable[[str], None] | None = None,
        transactional_id: str | None = None,
        on_delivered: Callable[[float], None] | None = None,
        **overrides: Any,
    ) -> None:
        conf: dict[str, Any] = {
            "client.id": client_id,
            # The Java client's partitioner: a key lands on the partition Java producers use.
            "partitioner": "murmur2_random",
            # Low linger keeps latency small at moderate rates; at high rates batches fill anyway.
            "linger.ms": 5,
            # Outputs waiting for the broker stay in this queue: 64 MiB bounds the worker's memory
            # (a full queue makes the agent wait, and fetching pauses at back_pressure).
            "queue.buffering.max.kbytes": 65_536,
            # Room for an enriched record of an input at the size limit.
            "message.max.bytes": settings.max_message_bytes + 65_536,
            "logger": logging.getLogger("streamer.librdkafka.producer"),
        }
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
            conf["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
            # A transaction commits only once every output in it is delivered (a failed one
            # fails the commit), so the commit says what acknowledgements would, once per batch:
            # librdkafka reports failures only, and no Python callback runs per delivered output
            # (the checkpoint finishes the transaction's chunks when it commits).
            conf["delivery.report.only.error"] = True
        conf.update(overrides)
        final = producer_config(settings, bootstrap, **conf)
        self.producer = Producer(final)
        #: Seconds the broker keeps a transaction open (``kafka_extra`` may set another).
        self.transaction_timeout = (
            float(final.get("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)) / 1000
        )
        #: Exactly-once mode: outputs and input offsets commit in one Kafka transaction; a
        #: failed delivery fails the transaction (no re-produce outside it).
        self.transactional = transactional_id is not None
        if self.transactional:
            self.producer.init_transactions(30.0)
        self.dlq_topic = dlq_topic
        self.on_retry = on_retry or (lambda action: None)
        self._failures: list[Failure] = []  # filled by delivery callbacks
        self.fatal: KafkaError | None = None
        self.produced = 0
        #: Told how long each batch's outputs took from hand-off to acknowledgement.
        self.on_delivered = on_delivered
        self._handed: deque[tuple[int, float]] = deque()  # (produced count, when) per batch

    # --- hot path ----------------------------------------------------------------------------
    def callback(self, chunk: InputRange, attempt: int = 0) -> DeliveryCallback:
        return delivery_callback(chunk, attempt, self._failures)

    def _produce_from(
        self, outputs: Sequence[Output], start: int, chunk: InputRange, cb: DeliveryCallback
    ) -> int:
        """Produce outputs[start:]; returns where it stopped (len(outputs) when all went)."""
        produce = self.producer.produce
        i = start
        n = len(outputs)
        try:
            while i < n:
                topic, key, value, headers = outputs[i]
                try:
                    # positional: keywords cost a dict per call (~0.5 µs of ~1.2 per output)
                    produce(topic, value, key, ANY_PARTITION, cb, None, 0, headers)
                except KafkaException as exc:  # refused before queueing (e.g. too large)
                    err = exc.args[0]
                    if self.transactional:
                        # inside the transaction, right now: the DLQ copy commits with it
                        produce(
                            self.dlq_topic,
                            value,
                            key,
                            headers=_failed_headers(headers, topic, err, chunk),
                            on_delivery=cb,
                        )
                    else:
                        self._failures.append((chunk, MAX_RETRIES, err, topic, key, value, headers))
                i += 1
        except BufferError:
            pass  # librdkafka's queue is full: the caller serves acknowledgements and resumes
        # Counted after the loop: delivery callbacks only run inside poll(), never in produce().
        chunk.add_pending(i - start)
        self.produced += i - start
        return i

    async def send(
        self, outputs: Sequence[Output], chunk: InputRange, *, seal: bool = True
    ) -> None:
        """Queue every output for delivery (waiting while librdkafka's queue is full); then,
        unless more outputs of ``chunk`` follow (``seal=False``), seal the chunk."""
        cb = self.callback(chunk)
        i = self._produce_from(outputs, 0, chunk, cb)
        while i < len(outputs):
            self.producer.poll(0)
            await asyncio.sleep(0.002)
            i = self._produce_from(outputs, i, chunk, cb)
        if seal:
            chunk.seal()

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks (acknowledgements and failures)."""
        n = self.producer.poll(timeout)
        if self._failures:
            self._handle_failures()
        if self._handed:
            self._delivered()
        return n

    def mark_handed(self) -> None:
        """A batch's outputs are all with the producer: time them until acknowledged."""
        if self.on_delivered is not None:
            self._handed.append((self.produced, time.monotonic()))

    def _delivered(self) -> None:
        # Outputs leave the producer's queue in about the order they entered it, so once the
        # queue holds fewer than were produced after a mark, that batch's outputs are through
        # (per batch, no per-record work; retries make it an estimate).
        through = self.produced - len(self.producer)
        handed, now = self._handed, time.monotonic()
        while handed and handed[0][0] <= through:
            _count, at = handed.popleft()
            self.on_delivered(now - at)  # type: ignore[misc]

    @property
    def queued(self) -> int:
        """Messages queued or in flight in the producer (no ``__len__``: a sink is never falsy)."""
        return len(self.producer)

    # --- failures -------------------------------------------------------------------------
    def _handle_failures(self) -> None:
        # emptied in place: every delivery callback holds this very list (rebinding it lost
        # the failures that callbacks made before reported after the first was handled)
        failures = self._failures.copy()
        self._failures.clear()
        if self.transactional:
            purged = 0
            for chunk, _attempt, err, topic, *_ in failures:
                if chunk.abandoned or err.code() in PURGED:
                    purged += 1  # of an aborted transaction: its records are read again
                    continue
                # the transaction's commit fails on this; the worker aborts and stops
                log_event(
                    log,
                    logging.ERROR,
                    "delivery failed in transaction",
                    topic=topic,
                    error=err.str(),
                )
            if purged:
                log_event(log, logging.INFO, "outputs of an aborted transaction failed", n=purged)
            return
        for chunk, attempt, err, topic, key, value, headers in failures:
            if err.code() in NOT_AUTHORIZED:
                if self.fatal is None:
                    log_event(
                        log,
                        logging.CRITICAL,
                        "not authorized to write: check the worker principal's ACLs",
                        topic=topic,
                        error=err.str(),
                    )
                self.fatal = err
                continue
            if err.fatal():
                # The idempotent producer cannot go on (e.g. sequence gap): the worker must stop;
                # the affected inputs are not committed and will be consumed again.
                self.fatal = err
                log_event(log, logging.CRITICAL, "producer fatal error", error=str(err))
                continue
            if chunk.abandoned:
                continue  # the partition was revoked: its records will be consumed again
            action, new_topic, new_headers, value = self._next_attempt(
                chunk, attempt, err, topic, value, headers
            )
            log_event(
                log,
                logging.WARNING,
                "delivery failed",
                topic=topic,
                error=err.str(),
                attempt=attempt,
                action=action,
            )
            self.on_retry(action)
            self._produce_again(chunk, attempt + 1, new_topic, key, value, new_headers)

    def _next_attempt(
        self, chunk: InputRange, attempt: int, err: KafkaError, topic: str, value: Any, headers: Any
    ) -> tuple[str, str, Any, Any]:
        """What to do with a failed output: (action, topic, headers, value) of the next try."""
        if topic == self.dlq_topic and headers and has_header(headers, DLQ_REASON):
            if err.retriable() or value is None:
                # never give up on the dead-letter copy (librdkafka already spent
                # message.timeout.ms retrying it, so this is no busy loop)
                return "dlq-retry", topic, headers, value
            # the copy itself is refused for good (e.g. larger than the producer or the DLQ
            # topic accepts): dead-letter it without its value, so its reason and source
            # topic/partition/offset still land and the partition moves on
            detail = f"value omitted ({len(value)} bytes): {err.str()}"
            return "dlq-without-value", topic, [*headers, (DLQ_DETAIL, detail.encode())], None
        if attempt < MAX_RETRIES and err.retriable():
            return "retry", topic, headers, value
        return "dlq", self.dlq_topic, _failed_headers(headers, topic, err, chunk), value

    def _produce_again(
        self, chunk: InputRange, attempt: int, topic: str, key: Any, value: Any, headers: Any
    ) -> None:
        cb = self.callback(chunk, attempt)
        while True:
            try:
                self.producer.produce(topic, value, key, ANY_PARTITION, cb, None, 0, headers)
                return
            except BufferError:
                self.producer.poll(0.05)
            except KafkaException as exc:
                # refused outright (e.g. too large even for the DLQ): keep it pending, report
                self._failures.append((chunk, attempt, exc.args[0], topic, key, value, headers))
                return

    # --- shutdown ---------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> int:
        """Flush what is left; returns the number of messages still undelivered."""
        return int(self.producer.flush(timeout))


#: What a failed delivery leaves for ``Sink._handle_failures``: (chunk, attempt, error, topic,
#: key, value, headers).
Failure = tuple[InputRange, int, KafkaError, Any, Any, Any, Any]


def delivery_callback(chunk: InputRange, attempt: int, failures: list[Failure]) -> DeliveryCallback:
    """The delivery report of one output of ``chunk``: an acknowledgement counts it down, a
    failure is kept for the next ``Sink.poll``."""
    ack = chunk.ack
    settle = getattr(chunk, "outputs_acknowledged", None)
    if settle is not None:
        # A record chunk (``streamer.worker.offsets.OffsetChunk``), run once per output: its ``ack``
        # inlined, one Python frame per report instead of two.
        counted: Any = chunk

        def on_chunk_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                counted.pending -= 1
                if not counted.pending and counted.sealed:
                    settle()
            else:
                failures.append(
                    (chunk, attempt, err, msg.topic(), msg.key(), msg.value(), msg.headers())
                )

        return on_chunk_delivery

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            ack()
        else:
            failures.append(
                (chunk, attempt, err, msg.topic(), msg.key(), msg.value(), msg.headers())
            )

    return on_delivery


def _failed_headers(headers: Any, topic: str, err: KafkaError, chunk: InputRange) -> Headers:
    """Headers of the dead-letter copy of an output the broker refused.

    The source offset is not tracked per output, so the copy names the input's topic,
    partition and the offset range of the batch chunk it came from.
    """
    return dead_letter_headers(
        headers,
        PRODUCE_FAILED,
        topic=chunk.topic,
        partition=chunk.partition,
        offsets=(chunk.first, chunk.last),
        detail=f"{topic}: {err.str()}",
    )
