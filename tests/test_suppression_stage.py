"""A keyed stage's writes, without a broker: a failed one is never missed; the suppression
stage's fold of real event messages writes what changed, once per batch, and a delivery that
changes nothing public writes nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message, Producer

from streamer.analytics.delivery_batches import DeliveryBatches
from streamer.analytics.suppression_fold import RecipientState, decode_state
from streamer.analytics.suppressions import SuppressionEvents, with_source
from streamer.config import Settings
from streamer.worker.stage_output import StageOutput, Writes, _producer_config
from streamer.worker.suppression_restore import StageError
from streamer.worker.suppressor import SuppressionStage

T0 = 1_790_000_000  # epoch seconds
EVENTS = SuppressionEvents()


def test_a_write_that_fails_stops_the_flush_though_only_failures_are_reported(
    tmp_path: Path,
) -> None:
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    output = StageOutput(
        settings,
        "127.0.0.1:9",
        worker_id="t",
        suffix="suppressions",
        kind="suppression",
        public_topic="kumomta.suppressions",
        state_topic="kumomta.suppressions.state",
        counts={"public_writes": 0, "state_writes": 0},
        log=logging.getLogger("test"),
    )
    conf = _producer_config(settings, "127.0.0.1:9", "t", "suppressions")
    assert conf["delivery.report.only.error"] is True
    # the stage's own producer configuration, with a short message timeout: nothing listens
    output.producer = Producer({**conf, "message.timeout.ms": 200, "log_level": 0})
    output._produce(output.public_topic, b"a@example.com", b"{}")
    with pytest.raises(StageError, match=r"suppression writes failed: .*Message timed out"):
        output._flush()


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[SuppressionStage]:
    """A suppression stage owning partition 0 (nothing listens: only its fold runs)."""
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    stage = SuppressionStage(settings, "127.0.0.1:9", worker_id="t")
    stage.owned = {0}
    yield stage
    stage.consumer.close()


class Events:
    """Event messages as a worker writes them (the real encoder), with growing offsets."""

    def __init__(self) -> None:
        self.offset = 0

    def _messages(self, record: dict[str, Any], *classified: Any) -> list[Message]:
        out = []
        label, category, rule, line = classified
        for key, value in EVENTS.update(record, label, category, rule, line, "google", 0):
            self.offset += 1
            value = with_source(value, 0, self.offset)
            out.append(Message(topic="e", partition=0, offset=self.offset, key=key, value=value))
        return out

    def delivery(self, recipient: str, t: int) -> list[Message]:
        record = {"type": "Delivery", "recipient": recipient, "timestamp": t}
        return self._messages(record, None, None, None, None)

    def bounce(self, recipient: str, t: int, rtype: str = "Bounce") -> list[Message]:
        record = {"type": rtype, "recipient": recipient, "timestamp": t, "queue": "a@b.example"}
        return self._messages(record, "InvalidRecipient", "hard", None, "550 5.1.1 unknown")


def public(writes: Writes) -> dict[bytes, Any]:
    return {k: None if v is None else orjson.loads(v)["count"] for k, v in writes.public.items()}


def test_a_delivery_that_changes_nothing_public_writes_nothing(stage: SuppressionStage) -> None:
    ev = Events()
    batch = [m for n in range(50) for m in ev.delivery(f"r{n}@example.com", T0 + n)]
    batch += ev.delivery("r0@example.com", T0 + 100)  # a later one: its time moves on
    batch += ev.delivery("r1@example.com", T0 - 100)  # an older one: changes nothing
    writes = stage.fold(batch)
    assert (writes.folded, writes.public, writes.state) == (52, {}, {})
    assert len(stage.store) == 50
    assert stage.store.get("r0@example.com") == RecipientState(delivered=(T0 + 100) * 1000)
    assert stage.store.get("r1@example.com") == RecipientState(delivered=(T0 + 1) * 1000)


def test_a_remembered_delivery_still_makes_an_older_hard_bounce_stale(
    stage: SuppressionStage,
) -> None:
    ev = Events()
    stage.fold(ev.delivery("bob@example.com", T0))
    writes = stage.fold(ev.bounce("bob@example.com", T0 - 1))  # older than the delivery
    assert (writes.folded, writes.public, writes.state) == (1, {}, {})
    writes = stage.fold(ev.bounce("bob@example.com", T0 + 1))  # newer: suppresses
    assert public(writes) == {b"bob@example.com": 1}
    [(_, state)] = writes.state.items()
    assert decode_state(state or b"").delivered == T0 * 1000


def test_a_remembered_delivery_vouches_for_a_later_oob(stage: SuppressionStage) -> None:
    ev = Events()
    writes = stage.fold(ev.bounce("ann@example.com", T0, "OOB"))  # no delivery known: held
    assert (writes.public, stage.counts["untrusted_oob"]) == ({}, 1)
    writes = stage.fold(
        ev.delivery("bob@example.com", T0) + ev.bounce("bob@example.com", T0, "OOB")
    )
    assert public(writes) == {b"bob@example.com": 1}
    assert stage.counts["untrusted_oob"] == 1


def test_a_batch_writes_each_changed_recipient_once_with_its_last_value(
    stage: SuppressionStage,
) -> None:
    ev = Events()
    batch = ev.bounce("bob@example.com", T0) + ev.bounce("bob@example.com", T0 + 1)
    batch += ev.bounce("bob@example.com", T0 + 2) + ev.bounce("eve@example.com", T0)
    writes = stage.fold(batch)
    assert public(writes) == {b"bob@example.com": 3, b"eve@example.com": 1}
    assert list(writes.state) == [(0, b"bob@example.com"), (0, b"eve@example.com")]
    bob = decode_state(writes.state[0, b"bob@example.com"] or b"")
    assert len(bob.hard.events) == 3
    # a delivery after them lifts the suppression (the recipient's full state folds it)
    writes = stage.fold(ev.delivery("bob@example.com", T0 + 3))
    assert writes.public == {b"bob@example.com": None}
    assert decode_state(writes.state[0, b"bob@example.com"] or b"").delivered == (T0 + 3) * 1000


def _deliveries(*entries: tuple[str, int], partitions: int = 1, offset: int = 0) -> Message:
    """A record of deliveries as the pipeline writes it (``DeliveryBatches``), in partition 0."""
    batches = DeliveryBatches(partitions)
    for recipient, t in entries:
        batches.add(recipient.encode(), t)
    [(key, value)] = batches.records()
    return Message(topic="e", partition=0, offset=offset, key=key, value=value)


def test_a_record_of_deliveries_folds_as_its_single_events(stage: SuppressionStage) -> None:
    ev = Events()
    stage.fold(ev.bounce("bob@example.com", T0) + ev.bounce("eve@example.com", T0 + 10))
    batch = [_deliveries(("bob@example.com", T0 * 1000 + 1), ("eve@example.com", T0 * 1000))]
    batch += [_deliveries(("ann@example.com", T0 * 1000), ("ann@example.com", T0 * 1000 - 5))]
    writes = stage.fold(batch)
    # bob's hard bounce lifted (its tombstone and state), eve's newer one stays, ann is new
    assert (writes.folded, writes.public) == (3, {b"bob@example.com": None})
    assert decode_state(writes.state[0, b"bob@example.com"] or b"").delivered == T0 * 1000 + 1
    assert stage.store.get("eve@example.com").delivered == T0 * 1000  # type: ignore[union-attr]
    assert stage.store.get("ann@example.com") == RecipientState(delivered=T0 * 1000)
    assert stage.counts["misplaced_deliveries"] == 0


def test_deliveries_placed_for_another_partition_count_are_folded_and_reported(
    stage: SuppressionStage, caplog: pytest.LogCaptureFixture
) -> None:
    stage.input_partitions = 4
    caplog.set_level(logging.WARNING, "streamer.suppressions")
    for offset in (1, 2):
        writes = stage.fold([_deliveries(("a@x.example", T0), partitions=1, offset=offset)])
        assert writes.folded == 1
    assert stage.store.get("a@x.example") == RecipientState(delivered=T0)
    assert stage.counts["misplaced_deliveries"] == 2
    [warned] = caplog.records  # once per partition count
    assert warned.getMessage() == (
        "deliveries placed for another partition count: restart the workers"
    )
    assert warned.streamer_fields == {"placed_for": 1, "partitions": 4}


@pytest.mark.parametrize(
    "value",
    [
        b'{"k":"deliveries","n":0,"d":[]}',
        b'{"k":"deliveries","n":2,"d":{}}',
        b'{"k":"deliveries","n":2,"d":[["a@x",1,2]]}',
        b'{"k":"deliveries","n":2,"d":[["",1]]}',
        b'{"k":"deliveries","n":2,"d":[["a@x","1"]]}',
    ],
)
def test_an_odd_record_of_deliveries_is_skipped(stage: SuppressionStage, value: bytes) -> None:
    bad = Message(topic="e", partition=0, offset=1, key=b"a@x", value=value)
    writes = stage.fold([bad, _deliveries(("b@x.example", T0), offset=2)])
    assert writes.folded == 1
    assert stage.counts["bad_events"] == 1
    assert len(stage.store) == 1
