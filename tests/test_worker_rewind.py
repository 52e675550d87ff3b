"""Exactly-once recovery in place (``streamer.worker.rewind``), part by part and without Kafka:
the tracker's rewind, the source's seeks, the analytics' new session, and the checkpoint that
calls them. ``tests/test_rewind_kafka.py`` runs the whole of it against a real broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from test_worker_parts import Committer, Producer, _deliver_all, _deliver_none, _msgs

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.windows import WindowedStats
from streamer.kafka.source import TP, Seeks
from streamer.metrics import Metrics
from streamer.worker.assignment import PartitionLifecycle
from streamer.worker.checkpoint import ExactlyOnce
from streamer.worker.offsets import OffsetTracker, RewindError
from streamer.worker.processing import make_batch
from streamer.worker.rewind import MAX_REWINDS, REWIND_WINDOW_S, Rewinder
from streamer.worker.stats import StatsPublisher

TP0: TP = ("in", 0)
TP1: TP = ("in", 1)
TP2: TP = ("in", 2)


def _track(tr: OffsetTracker, tp: TP, first: int, n: int) -> Any:
    return tr.track(tp[0], tp[1], first, first + n - 1, n)


# --- the tracker ------------------------------------------------------------------------------
def test_rewind_gives_up_every_uncommitted_chunk_and_says_where_to_read_again() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1, TP2])
    committed = _track(tr, TP0, 0, 5)
    committed.seal()
    tr.mark_committed(tr.committable([TP0]))  # TP0 committed up to 5
    done_not_committed = _track(tr, TP0, 5, 3)  # acknowledged, but its transaction aborted
    done_not_committed.seal()
    queued = _track(tr, TP0, 8, 4)
    in_flight = _track(tr, TP1, 20, 2)
    in_flight.add_pending(2)
    assert tr.in_flight == 3 + 4 + 2 - 3  # the done chunk left in_flight already

    positions, records = tr.rewind()
    assert positions == {TP0: 5, TP1: 20}  # TP2 consumed nothing: left alone
    assert records == 3 + 4 + 2 and tr.in_flight == 0
    assert queued.abandoned and in_flight.abandoned and tr.rewinding == 2
    in_flight.ack()
    in_flight.ack()  # late acknowledgements of abandoned chunks change nothing
    assert tr.in_flight == 0 and tr.committable() == {}


def test_records_fetched_before_the_seek_are_refused_and_reading_resumes_at_the_offset() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    _track(tr, TP0, 10, 5)
    _track(tr, TP1, 0, 1).seal()
    tr.mark_committed(tr.committable([TP1]))
    _track(tr, TP1, 1, 1)
    assert tr.rewind()[0] == {TP0: 10, TP1: 1}
    # fetched before the seek took effect (consume() was running): refused
    assert _track(tr, TP0, 15, 3) is None and _track(tr, TP1, 2, 1) is None
    tr.positioned([TP0])
    assert _track(tr, TP1, 3, 1) is None  # TP1's seek has not taken effect yet
    chunk = _track(tr, TP0, 10, 8)
    assert chunk is not None and tr.in_flight == 8 and tr.rewinding == 1
    assert _track(tr, TP0, 18, 2) is not None  # and on from there
    tr.positioned([TP1])
    with pytest.raises(RewindError, match="in:1 resumed at offset 4, not at 1"):
        _track(tr, TP1, 4, 1)  # a seek that did not put the partition where it should


def test_an_assignment_change_ends_a_rewind() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    _track(tr, TP0, 10, 5)
    _track(tr, TP1, 3, 5)
    tr.rewind()
    tr.revoke([TP0])
    tr.assign([TP0])  # assigned again: read from the committed offset, whatever it is
    tr.assign([TP1])  # assigned without a revoke (a lost session): likewise
    assert tr.rewinding == 0
    assert _track(tr, TP0, 7, 1) is not None and _track(tr, TP1, 30, 1) is not None


# --- the source's seeks -----------------------------------------------------------------------
class SeekingConsumer:
    def __init__(self, refuse: set[TP] | None = None) -> None:
        self.seeks: list[tuple[TP, int]] = []
        self.refuse = refuse or set()

    def seek(self, tp: TopicPartition) -> None:
        if (tp.topic, tp.partition) in self.refuse:
            raise KafkaException(KafkaError(KafkaError._STATE, "erroneous state"))
        self.seeks.append(((tp.topic, tp.partition), tp.offset))


def test_seeks_apply_to_assigned_partitions_and_an_assignment_change_cancels_them() -> None:
    seeks, consumer = Seeks(), SeekingConsumer(refuse={TP2})
    seeks.request({TP0: 5, TP1: 9, TP2: 1})
    seeks.cancel([TP1])  # revoked or assigned again before the fetch thread got to it
    assert seeks.applied() == (set(), {})
    seeks.apply(consumer, {TP0, TP2})  # type: ignore[arg-type]
    assert consumer.seeks == [(TP0, 5)]
    done, failed = seeks.applied()
    assert done == {TP0} and list(failed) == [TP2] and "erroneous state" in failed[TP2]
    assert seeks.applied() == (set(), {})  # reported once
    seeks.request({TP1: 3})
    seeks.apply(consumer, {TP0})  # TP1 is not assigned: nothing to seek, nothing reported
    assert consumer.seeks == [(TP0, 5)] and seeks.applied() == (set(), {})


# --- the analytics' new session ---------------------------------------------------------------
def test_a_new_session_counts_afresh_and_forgets_the_old_windows() -> None:
    aggregator = BatchAggregator(60, ["provider"])
    windows = WindowedStats(window_s=60, retention_s=120, max_windows=7)
    stats = StatsPublisher(windows, sink=None, topic="stats", worker_id="w1", aggregator=aggregator)  # type: ignore[arg-type]
    record = {"type": "Delivery", "timestamp": 1_700_000_000, "site": "x"}
    aggregator.add(record, "Delivery", None, None, "other", None)
    stats.fold()
    aggregator.add(record, "Delivery", None, None, "other", None)  # tallied, not folded yet
    old_session, old_windows = stats.session, stats.windows
    assert len(old_windows) == 1

    stats.new_session()
    assert stats.session != old_session and stats.session.startswith("w1/")
    assert stats.windows is not old_windows and len(stats.windows) == 0
    assert aggregator.pending_keys == 0  # the unfolded tally went with the old windows
    assert stats.windows.window_ms == old_windows.window_ms
    assert stats.windows.max_keys == old_windows.max_keys
    assert (stats.windows.retention_ms, stats.windows.max_windows) == (120_000, 7)


def test_exactly_once_folds_reach_the_metrics_only_once_their_transaction_committed() -> None:
    aggregator = BatchAggregator(60, ["provider"])
    counted: list[Any] = []
    stats = StatsPublisher(
        WindowedStats(window_s=60),
        sink=None,  # type: ignore[arg-type]
        topic="stats",
        worker_id="w1",
        aggregator=aggregator,
        on_folded=counted.append,
        defer_metrics=True,
    )
    record = {"type": "Delivery", "timestamp": 1_700_000_000, "site": "x"}
    aggregator.add(record, "Delivery", None, None, "other", None)
    stats.fold()
    assert counted == []
    stats.settle_metrics()  # the transaction committed
    assert len(counted) == 1
    aggregator.add(record, "Delivery", None, None, "other", None)
    stats.fold()
    stats.new_session()  # the transaction was aborted: its records come again
    stats.settle_metrics()
    assert len(counted) == 1


# --- the rewinder and the checkpoint ----------------------------------------------------------
class RecordingSource:
    def __init__(self) -> None:
        self.rewinds: list[dict[TP, int]] = []

    def rewind(self, positions: dict[TP, int]) -> None:
        self.rewinds.append(positions)


def test_an_overtaken_transaction_is_aborted_and_read_again_in_place() -> None:
    tr, metrics, source = OffsetTracker(), Metrics(), RecordingSource()
    err = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation", txn_requires_abort=True)
    producer = Producer(fail_commit=err)
    cp = ExactlyOnce(tr, Committer(), metrics, producer)
    cp.on_aborted = Rewinder(tr, source, metrics).rewind
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    queued = make_batch(tr, _msgs(TP0, 3, 2))  # fetched meanwhile
    assert batch is not None and queued is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 0
    assert ("abort", None) in producer.calls
    assert not cp.failed and not cp.overtaken  # the worker goes on
    assert source.rewinds == [{TP0: 0}] and tr.in_flight == 0
    assert metrics.registry.get_sample_value("streamer_rewinds_total") == 1
    assert metrics.registry.get_sample_value("streamer_abandoned_records_total") == 5
    # the batch fetched before the rewind is skipped; the records come again from offset 0
    producer.fail_commit = None
    assert asyncio.run(cp.process(queued.groups, _deliver_all)) == 0
    tr.positioned([TP0])
    again = make_batch(tr, _msgs(TP0, 0, 5))
    assert again is not None and asyncio.run(cp.process(again.groups, _deliver_all)) == 5
    assert cp.committed == {TP0: 5}


def test_rewinds_that_come_too_often_stop_the_worker() -> None:
    now = [1000.0]
    tr, metrics = OffsetTracker(), Metrics()
    rewinder = Rewinder(tr, RecordingSource(), metrics, clock=lambda: now[0])
    for _ in range(MAX_REWINDS):
        assert rewinder.rewind()
    assert not rewinder.rewind()  # one more within the window
    now[0] += REWIND_WINDOW_S + 1
    assert rewinder.rewind()  # the window moved on

    err = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation", txn_requires_abort=True)
    cp = ExactlyOnce(tr, Committer(), metrics, Producer(fail_commit=err))
    cp.on_aborted = lambda: False
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_none)) == 0
    assert cp.failed and cp.overtaken  # the worker exits 75, as before in-place recovery


def test_a_failed_abort_stops_the_worker_even_when_overtaken() -> None:
    class AbortFails(Producer):
        def abort_transaction(self, timeout: float) -> None:
            raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))

    tr = OffsetTracker()
    err = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation", txn_requires_abort=True)
    cp = ExactlyOnce(tr, Committer(), Metrics(), AbortFails(fail_commit=err))
    called: list[bool] = []
    cp.on_aborted = lambda: called.append(True) or True
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 0
    assert cp.failed and not called  # no rewind over a transaction that may still be open


def _send_fails(error: KafkaError) -> Any:
    async def send(chunk: Any, messages: Any) -> None:
        raise KafkaException(error)

    return send


def test_a_transaction_that_needs_a_new_producer_epoch_is_read_again() -> None:
    """After an abort that purged outputs in flight, librdkafka's next transactions can fail on
    their sequence numbers; produce() then raises _STATE. An abort brings the new epoch."""
    tr, metrics, source = OffsetTracker(), Metrics(), RecordingSource()
    producer = Producer()
    cp = ExactlyOnce(tr, Committer(), metrics, producer)
    cp.on_aborted = Rewinder(tr, source, metrics).rewind
    tr.assign([TP0])
    sequence = KafkaError(
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "skipped", txn_requires_abort=True
    )
    state = KafkaError(KafkaError._STATE, "Unable to produce message: Local: Erroneous state")
    offset = 7
    for error in (sequence, state):
        batch = make_batch(tr, _msgs(TP0, offset, 3))
        assert batch is not None
        assert asyncio.run(cp.process(batch.groups, _send_fails(error))) == 0
        assert not cp.failed and source.rewinds[-1] == {TP0: offset}
        tr.positioned([TP0])
    assert [c for c in producer.calls if c[0] == "abort"] == [("abort", None)] * 2


def test_an_erroneous_state_before_any_abort_is_a_fault() -> None:
    """_STATE is librdkafka's generic misuse error: only after an abort does it mean the
    transaction's failed state; otherwise the worker stops as for any fault (exit 1)."""
    tr, metrics, source = OffsetTracker(), Metrics(), RecordingSource()
    cp = ExactlyOnce(tr, Committer(), metrics, Producer())
    cp.on_aborted = Rewinder(tr, source, metrics).rewind
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    state = KafkaError(KafkaError._STATE, "Local: Erroneous state")
    assert asyncio.run(cp.process(batch.groups, _send_fails(state))) == 0
    assert cp.failed and not cp.overtaken and source.rewinds == []


def test_a_refused_record_still_stops_the_worker() -> None:
    """A failure that no abort cures (here a record the broker refuses) is no reason to read
    the same records again: the worker stops, as before (exit 1)."""
    tr, metrics, source = OffsetTracker(), Metrics(), RecordingSource()
    err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large", txn_requires_abort=True)
    producer = Producer(fail_commit=err)
    cp = ExactlyOnce(tr, Committer(), metrics, producer)
    cp.on_aborted = Rewinder(tr, source, metrics).rewind
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 0
    assert ("abort", None) in producer.calls and source.rewinds == []
    assert cp.failed and not cp.overtaken


def test_a_failed_seek_stops_the_worker_only_for_a_partition_it_still_owns() -> None:
    tr = OffsetTracker()
    cp = ExactlyOnce(tr, Committer(), Metrics(), Producer())
    lifecycle = PartitionLifecycle(cp, sink=None, flow=None, metrics=Metrics())  # type: ignore[arg-type]
    tr.assign([TP0, TP1])
    _track(tr, TP0, 4, 2)
    _track(tr, TP1, 9, 2)
    tr.rewind()
    tr.revoke([TP1])  # taken away before the seek: its failure does not matter
    lifecycle.on_rewound({TP0}, {TP1: "Local: Erroneous state"})
    assert _track(tr, TP0, 4, 1) is not None
    tr.rewind()
    with pytest.raises(RewindError, match="seek failed: in:0"):
        lifecycle.on_rewound(set(), {TP0: "Local: Erroneous state"})
