"""The suppression stage: folds the suppression events per recipient, writes the suppressions.

A keyed stage (``streamer.worker.keyed_stage``): every worker process runs one, in its own
thread, beside the record path: a consumer in the group ``<group_id>.suppressions`` reads the
internal events topic (keyed by recipient, so all events of a recipient meet in one partition,
owned by one stage), ``SuppressionStore`` folds them (``streamer.analytics.suppression_fold``),
and a producer writes what changed:

- the public, compacted ``suppressions_topic``: a recipient's entry, or a tombstone;
- the changelog, compacted ``suppression_state_topic`` (co-partitioned with the events topic:
  a recipient's state sits in the partition number of its events), from which a stage that
  is assigned a partition restores its recipients before folding more.

Delivery (at least once, exactly once) and restore are the keyed stage's.

On assignment the stage also reads again the last ``suppression_replay`` seconds of events
before its committed position: the delivery times of recipients that were never suppressed
are kept in memory only (writing them would cost a write per delivery), and this replay brings
them back after a restart, so a hard bounce older than a delivery that arrives late is still
recognised as stale.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message

from streamer.analytics.suppression_fold import (
    BadEvent,
    Change,
    DeliveryBatch,
    Event,
    RecipientState,
    SuppressionStore,
    decode_state,
    encode_state,
    public_value,
    read_event,
)
from streamer.config import Settings
from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.keyed_stage import KeyedStage
from streamer.worker.stage_output import Writes


class SuppressionStage(KeyedStage):
    kind = "suppression"
    unit = "events"
    log = logging.getLogger("streamer.suppressions")
    store: SuppressionStore

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        worker_id: str,
        on_failure: Any = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(
            settings,
            bootstrap,
            worker_id=worker_id,
            inputs_topic=settings.suppression_events_topic or "",
            state_topic=settings.suppression_state_topic or "",
            public_topic=settings.suppressions_topic,
            group_suffix="suppressions",
            replay_ms=settings.suppression_replay * 1000,
            on_failure=on_failure,
            metrics=metrics,
        )
        self.store = SuppressionStore(
            settings.suppressions_memory, settings.oob_trust_period * 1000 or None
        )
        self.counts["untrusted_oob"] = 0
        self.counts["misplaced_deliveries"] = 0
        self._misplaced_warned: set[int] = set()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "remembered": len(self.store), "evicted": self.store.evicted}

    def fold(self, messages: list[Message]) -> Writes:
        store = self.store
        writes = Writes()
        # the recipients whose public value changed: written once per batch, their last value
        changed: dict[bytes, tuple[int, str, RecipientState]] = {}
        for p, recipient, event in self._events(messages):
            writes.folded += 1
            change, state = store.fold(p, recipient, event)
            if change is Change.PUBLIC and state is not None:
                changed[recipient.encode()] = (p, recipient, state)
        for key, (p, recipient, state) in changed.items():
            writes.public[key] = public_value(recipient, state)
            writes.state[p, key] = encode_state(state)
        self._held_untrusted()
        return writes

    def _events(self, messages: list[Message]) -> Iterator[tuple[int, str, Event | int]]:
        """Each event of the messages as (partition, recipient, what ``read_event`` reads);
        a record of deliveries stands for a delivery of each recipient it lists. A message
        that does not decode is skipped."""
        for m in messages:
            key = m.key()
            try:
                if not key:
                    raise BadEvent("suppression event without a key")
                recipient = key.decode()
                event = read_event(m.value())
            except (BadEvent, UnicodeDecodeError) as exc:
                self.skipped(str(exc))
                continue
            p = m.partition() or 0
            if not isinstance(event, DeliveryBatch):
                yield p, recipient, event
                continue
            if self.input_partitions and event.partitions != self.input_partitions:
                self._misplaced(event)
            for listed, t in event.deliveries:
                yield p, listed, t

    def _misplaced(self, batch: DeliveryBatch) -> None:
        """A worker placed deliveries for another partition count (the events topic grew
        since it started): they are folded here all the same, but their recipients' states
        live elsewhere, so a hard bounce they should lift may stay. Restarting the workers
        places them right again."""
        self.counts["misplaced_deliveries"] += len(batch.deliveries)
        if batch.partitions not in self._misplaced_warned:
            self._misplaced_warned.add(batch.partitions)
            log_event(
                self.log,
                logging.WARNING,
                "deliveries placed for another partition count: restart the workers",
                placed_for=batch.partitions,
                partitions=self.input_partitions,
            )

    def _held_untrusted(self) -> None:
        """Count and log the batch's OOBs that did not suppress: no delivery to their recipient
        within ``oob_trust_period`` is known (a forged DSN, or one the stage forgot: docs)."""
        recipients, self.store.untrusted = self.store.untrusted, []
        if not recipients:
            return
        self.counts["untrusted_oob"] += len(recipients)
        self.metrics.suppression_untrusted.inc(len(recipients))
        log_event(
            self.log,
            logging.WARNING,
            "untrusted OOB held: no delivery to the recipient known",
            count=len(recipients),
            example=recipients[0],
        )

    def stage_metrics(self) -> tuple[Any, Any, Any]:
        m = self.metrics
        return m.suppression_events, m.suppression_writes, m.suppression_recipients

    def restored(self, partition: int, key: bytes, value: bytes | None) -> None:
        try:
            state = decode_state(value) if value else None
        except BadEvent as exc:
            log_event(self.log, logging.WARNING, "bad suppression state", error=str(exc))
            return
        self.store.restore(partition, key.decode(), state)

    def drop(self, partitions: list[int]) -> None:
        self.store.drop(partitions)
