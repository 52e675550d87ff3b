"""The worker's parts, each alone and without Kafka: checkpointing in both modes, flow control,
batching and rules reloading."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.windows import WindowedStats
from streamer.classifier import ReloadableClassifier
from streamer.kafka.source import TP
from streamer.metrics import Metrics
from streamer.worker import checkpoint
from streamer.worker import flow as flow_module
from streamer.worker.checkpoint import AtLeastOnce, ExactlyOnce, make_checkpoint
from streamer.worker.flow import SETTLED_FACTOR, FlowControl
from streamer.worker.offsets import OffsetChunk, OffsetTracker
from streamer.worker.processing import make_batch
from streamer.worker.reload import RulesReloader
from streamer.worker.stats import EARLY_FLUSH_S, UPDATE_AT_KEYS, StatsPublisher, flush_due
from streamer.worker.watchdog import Watchdog

TP0: TP = ("in", 0)
TP1: TP = ("in", 1)


class Committer:
    """Records what the checkpoint asks to commit (the real one is ``Source``)."""

    def __init__(self) -> None:
        self.requests: list[dict[TP, int]] = []
        self.group_metadata = object()

    def commit_async(self, positions: dict[TP, int]) -> None:
        self.requests.append(positions)


class Producer:
    """Records the transactional calls; ``fail_commit`` makes commit_transaction raise."""

    def __init__(self, fail_commit: KafkaError | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_commit = fail_commit

    def begin_transaction(self) -> None:
        self.calls.append(("begin", None))

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], meta: Any, timeout: float
    ) -> None:
        assert 0 < timeout < float("inf")  # never librdkafka's "wait forever"
        self.calls.append(("offsets", {(o.topic, o.partition): o.offset for o in offsets}))

    def commit_transaction(self, timeout: float) -> None:
        assert 0 < timeout < float("inf")
        if self.fail_commit is not None:
            raise KafkaException(self.fail_commit)
        self.calls.append(("commit", None))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append(("abort", None))


def _msgs(tp: TP, first: int, n: int) -> list[Message]:
    return [Message(topic=tp[0], partition=tp[1], offset=first + i) for i in range(n)]


async def _deliver_all(chunk: OffsetChunk, messages: Sequence[Any]) -> None:
    """A send that produces one output per record, acknowledged at once."""
    chunk.add_pending(len(messages))
    for _ in messages:
        chunk.ack()
    chunk.seal()


async def _deliver_none(chunk: OffsetChunk, messages: Sequence[Any]) -> None:
    """A send whose outputs are handed over but never acknowledged."""
    chunk.add_pending(len(messages))
    chunk.seal()


# --- batching ---------------------------------------------------------------------------------
def test_make_batch_groups_by_partition_in_order_and_skips_unassigned() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    mixed = _msgs(TP0, 0, 2) + _msgs(TP1, 10, 3) + _msgs(TP0, 2, 1) + _msgs(("in", 7), 0, 4)
    batch = make_batch(tr, mixed)
    assert batch is not None and batch.count == 6
    spans = [(c.topic, c.partition, c.first, c.last, c.count) for c, _ in batch.groups]
    assert spans == [("in", 0, 0, 2, 3), ("in", 1, 10, 12, 3)]
    assert [m.offset() for m in batch.groups[0][1]] == [0, 1, 2]
    assert tr.in_flight == 6
    assert make_batch(tr, _msgs(("in", 7), 0, 4)) is None


# --- at-least-once ----------------------------------------------------------------------------
def test_at_least_once_commits_the_acknowledged_prefix_on_the_timer() -> None:
    tr, committer = OffsetTracker(), Committer()
    cp = make_checkpoint(False, tr, committer, Metrics(), Producer())
    assert isinstance(cp, AtLeastOnce) and not cp.exactly_once
    tr.assign([TP0, TP1])
    acked = make_batch(tr, _msgs(TP0, 0, 5))
    pending = make_batch(tr, _msgs(TP1, 0, 5))
    assert acked is not None and pending is not None
    assert asyncio.run(cp.process(acked.groups, _deliver_all)) == 5
    assert asyncio.run(cp.process(pending.groups, _deliver_none)) == 5
    cp.commit_due()
    assert committer.requests == [{TP0: 5}]
    cp.on_committed({TP0: 5})
    assert cp.committed == {TP0: 5}
    cp.commit_due()
    assert committer.requests == [{TP0: 5}]  # nothing new to commit
    assert cp.metrics.registry.get_sample_value("streamer_commits_total") == 1
    assert cp.positions_to_commit([TP1]) == {}
    # revoking TP1 abandons its 5 unacknowledged records
    assert cp.forget([TP1]) == 5
    assert tr.in_flight == 0


def test_at_least_once_skips_chunks_abandoned_while_queued() -> None:
    tr = OffsetTracker()
    cp = AtLeastOnce(tr, Committer(), Metrics())
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    cp.forget([TP0])
    sent: list[OffsetChunk] = []

    async def send(chunk: OffsetChunk, messages: Sequence[Any]) -> None:
        sent.append(chunk)

    assert asyncio.run(cp.process(batch.groups, send)) == 0
    assert sent == []


# --- exactly-once -----------------------------------------------------------------------------
def test_exactly_once_commits_outputs_and_offsets_in_one_transaction() -> None:
    tr, committer, producer = OffsetTracker(), Committer(), Producer()
    cp = make_checkpoint(True, tr, committer, Metrics(), producer)
    assert isinstance(cp, ExactlyOnce) and cp.exactly_once
    tr.assign([TP0, TP1])
    batch = make_batch(tr, _msgs(TP0, 0, 4) + _msgs(TP1, 7, 2))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 6
    assert producer.calls == [("begin", None), ("offsets", {TP0: 4, TP1: 9}), ("commit", None)]
    assert cp.committed == {TP0: 4, TP1: 9}
    assert tr.in_flight == 0 and tr.partitions[TP0].chunks == type(tr.partitions[TP0].chunks)()
    # the timer and revocations never commit on their own in this mode
    cp.commit_due()
    assert cp.positions_to_commit() == {} and committer.requests == []
    assert cp.metrics.registry.get_sample_value("streamer_commits_total") == 1  # the transaction


def test_exactly_once_failed_transaction_aborts_and_marks_the_checkpoint_failed() -> None:
    tr = OffsetTracker()
    err = KafkaError(KafkaError._TIMED_OUT, "commit timed out", txn_requires_abort=True)
    producer = Producer(fail_commit=err)
    cp = ExactlyOnce(tr, Committer(), Metrics(), producer)
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 0
    assert ("abort", None) in producer.calls and ("commit", None) not in producer.calls
    assert cp.failed and cp.committed == {} and not cp.overtaken  # a crash: exit 1
    # nothing more goes through; the worker gives up the partitions
    later = make_batch(tr, _msgs(TP0, 3, 2))
    assert later is not None
    assert asyncio.run(cp.process(later.groups, _deliver_all)) == 0
    assert cp.fail() == 2 and tr.partitions == {}


def test_exactly_once_a_transaction_overtaken_by_a_rebalance_is_no_crash() -> None:
    tr = OffsetTracker()
    err = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation", txn_requires_abort=True)
    cp = ExactlyOnce(tr, Committer(), Metrics(), Producer(fail_commit=err))
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 0
    assert cp.failed and cp.overtaken and not cp.busy  # the worker exits TEMPFAIL_EXIT


def test_exactly_once_the_commit_finishes_chunks_that_no_report_acknowledged() -> None:
    # librdkafka reports only failures in this mode: a committed transaction is what says that
    # every output of its chunks was delivered
    tr, committer, producer = OffsetTracker(), Committer(), Producer()
    cp = ExactlyOnce(tr, committer, Metrics(), producer)
    tr.assign([TP0, TP1])
    batch = make_batch(tr, _msgs(TP0, 0, 4) + _msgs(TP1, 7, 2))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_none)) == 6
    assert all(chunk.done for chunk, _ in batch.groups)
    assert cp.committed == {TP0: 4, TP1: 9} and tr.in_flight == 0


def test_exactly_once_a_failed_commit_finishes_no_chunk() -> None:
    tr = OffsetTracker()
    err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "refused", txn_requires_abort=True)
    cp = ExactlyOnce(tr, Committer(), Metrics(), Producer(fail_commit=err))
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    assert asyncio.run(cp.process(batch.groups, _deliver_none)) == 0
    assert not any(chunk.done for chunk, _ in batch.groups)
    assert tr.in_flight == 3 and cp.committed == {}  # the worker gives them up (fail())


# --- the watchdog on blocking calls -----------------------------------------------------------
def _wait_for(event: threading.Event, seconds: float = 10.0) -> bool:
    return event.wait(seconds)


def test_watchdog_fires_once_for_a_call_outliving_its_deadline_and_never_after_one_in_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fired = threading.Event()
    count = [0]

    def expired() -> None:
        count[0] += 1
        fired.set()

    dog = Watchdog(on_expiry=expired)
    threads_before = threading.active_count()
    for _ in range(50):  # re-armed per call: one thread, no expiry while calls return in time
        with dog.guard(0.2, "quick"):
            pass
    time.sleep(0.5)
    assert count == [0]
    with (
        caplog.at_level(logging.CRITICAL, "streamer.worker"),
        dog.guard(0.05, "send_offsets_to_transaction"),
    ):
        assert _wait_for(fired)
        time.sleep(0.2)  # still blocked: it fired once only
    assert count == [1]
    (record,) = caplog.records
    assert "blocking call hung" in record.getMessage()
    assert record.streamer_fields["call"] == "send_offsets_to_transaction"  # type: ignore[attr-defined]
    assert threading.active_count() == threads_before + 1  # one thread for every call


def test_exactly_once_a_hung_offsets_call_ends_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka's send_offsets_to_transaction can ignore its timeout (librdkafka issues 5456,
    5511): past the deadline the watchdog ends the process (here: records it)."""
    monkeypatch.setattr(checkpoint, "HANG_GRACE_S", 0.05)
    ended = threading.Event()

    class Hanging(Producer):
        def send_offsets_to_transaction(
            self, offsets: list[TopicPartition], meta: Any, timeout: float
        ) -> None:
            assert timeout == 0.05
            assert _wait_for(ended)  # blocked until the process would have ended

    tr, producer = OffsetTracker(), Hanging()
    cp = ExactlyOnce(
        tr, Committer(), Metrics(), producer, Watchdog(on_expiry=ended.set), call_timeout=0.05
    )
    tr.assign([TP0])
    batch = make_batch(tr, _msgs(TP0, 0, 3))
    assert batch is not None
    asyncio.run(cp.process(batch.groups, _deliver_all))
    assert ended.is_set()


# --- flow control -----------------------------------------------------------------------------
class Pausable:
    def __init__(self, partitions: int) -> None:
        self.want_paused = False
        self.paused: set[TP] = set()
        self.partitions = partitions
        self.pauses = self.resumes = 0

    def pause(self) -> int:
        self.want_paused = True
        self.pauses += 1
        return self.partitions

    def resume(self) -> int:
        self.want_paused = False
        self.resumes += 1
        return self.partitions


def _settled_chunk(tr: OffsetTracker, first: int, count: int) -> OffsetChunk:
    """A counted chunk whose one output was acknowledged: it waits only for the stats update."""
    chunk = tr.track("in", 0, first, first + count - 1, count)
    assert chunk is not None
    chunk.hold()  # ``BatchProcessor.send_chunk``
    chunk.add_pending(1)
    chunk.seal()
    chunk.ack()
    return chunk


def _at_the_limit() -> tuple[FlowControl, Metrics, Pausable, list[OffsetChunk | None]]:
    """A flow control with a limit of 10 and 12 records in flight, in four chunks of 3."""
    tr, metrics, source = OffsetTracker(), Metrics(), Pausable(2)
    flow = FlowControl(tr, 10, metrics)
    flow.source = source
    tr.assign([TP0])
    chunks = [tr.track("in", 0, i * 3, i * 3 + 2, 3) for i in range(4)]  # 12 in flight
    flow.after_fetch()
    return flow, metrics, source, chunks


def test_flow_control_waits_for_room_at_the_limit_and_goes_on_at_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A short stall (acknowledgements within ``PAUSE_AFTER_S``) never pauses: librdkafka keeps
    what it prefetched, and fetching goes on once half the limit drained."""
    monkeypatch.setattr(flow_module, "PAUSE_AFTER_S", 30.0)
    flow, metrics, source, chunks = _at_the_limit()
    assert flow.full() and flow.peak == 12
    assert metrics.registry.get_sample_value("streamer_in_flight_max") == 12

    async def run() -> list[bool]:
        waiting = asyncio.ensure_future(flow.wait_for_room())
        states = []
        for c in chunks[:3]:  # 9, 6, then 3 left in flight: room at most half the limit
            assert c is not None
            await asyncio.sleep(0.02)
            c.seal()
            flow.maybe_resume()
            await asyncio.sleep(0.02)  # a few turns of the loop for the waiter to wake
            states.append(waiting.done())
        return states

    assert asyncio.run(run()) == [False, False, True]
    assert source.pauses == 0 and source.resumes == 0 and not source.want_paused
    assert metrics.registry.get_sample_value("streamer_backpressure_pauses_total") == 0


def test_flow_control_pauses_when_no_room_comes_in_time_and_resumes_at_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flow_module, "PAUSE_AFTER_S", 0.01)
    flow, metrics, source, chunks = _at_the_limit()
    asyncio.run(flow.wait_for_room())
    asyncio.run(flow.wait_for_room())  # already paused: fetching goes on (rebalances), no wait
    assert source.pauses == 1 and source.want_paused
    assert metrics.registry.get_sample_value("streamer_backpressure_pauses_total") == 1
    for c in chunks[:2]:
        assert c is not None
        c.seal()  # 6 left in flight: above half the limit
    flow.maybe_resume()
    assert source.resumes == 0
    assert chunks[2] is not None
    chunks[2].seal()  # 3 left: at most half
    flow.maybe_resume()
    assert source.resumes == 1 and not source.want_paused


def test_flow_control_never_resumes_while_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flow_module, "PAUSE_AFTER_S", 0.01)
    tr, source = OffsetTracker(), Pausable(1)
    flow = FlowControl(tr, 1, Metrics())
    flow.source = source
    tr.assign([TP0])
    chunk = tr.track("in", 0, 0, 0, 1)
    flow.after_fetch()
    asyncio.run(flow.wait_for_room())
    flow.stopping = True
    assert chunk is not None
    chunk.seal()
    flow.maybe_resume()
    assert source.want_paused and source.resumes == 0


def test_a_stats_update_comes_early_only_for_many_settled_records_or_keys() -> None:
    early = 100 * SETTLED_FACTOR // 2  # half of what may wait for a back_pressure of 100
    assert flush_due(3.0, 3.0, 0, 100)  # the interval
    assert flush_due(EARLY_FLUSH_S, 3.0, early, 100)
    assert not flush_due(EARLY_FLUSH_S, 3.0, early - 1, 100)
    assert not flush_due(EARLY_FLUSH_S / 2, 3.0, early * 2, 100)  # the shortest time between
    # traffic whose keys seldom repeat: an update's rows (and memory) go with its keys
    assert flush_due(EARLY_FLUSH_S, 3.0, 0, 100, UPDATE_AT_KEYS)
    assert not flush_due(EARLY_FLUSH_S, 3.0, 0, 100, UPDATE_AT_KEYS - 1)
    assert not flush_due(EARLY_FLUSH_S / 2, 3.0, 0, 100, UPDATE_AT_KEYS)


def test_settled_records_never_hold_back_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted records whose outputs were acknowledged wait only for the stats update: they do
    not count against back_pressure, only against their own bound, which an early update
    keeps them under; the update releases them for the commit."""
    monkeypatch.setattr(flow_module, "PAUSE_AFTER_S", 0.01)
    tr, source = OffsetTracker(), Pausable(1)
    flow = FlowControl(tr, 100, Metrics())
    flow.source = source
    tr.assign([TP0])
    publisher = StatsPublisher(WindowedStats(), None, "p", "w", BatchAggregator())  # type: ignore[arg-type]
    due_at = None
    first = 0
    while not flow.full():
        chunk = _settled_chunk(tr, first, 10)
        first += 10
        publisher.hold([chunk])
        flow.after_fetch()
        if due_at is None and flush_due(1.0, 3.0, tr.settled, 100):
            due_at = tr.settled
    assert (due_at, tr.settled, tr.unsettled, flow.peak) == (400, 800, 0, 0)
    assert tr.committable() == {}, "settled records are not committed before their update"
    asyncio.run(flow.wait_for_room())
    assert source.pauses == 1, "at their own bound (updates not acknowledged) fetching pauses"
    assert asyncio.run(publisher.flush()) == 0  # nothing was counted: the chunks are released
    assert (tr.in_flight, tr.settled) == (0, 0)
    assert tr.committable() == {TP0: 800}
    flow.maybe_resume()
    assert not source.want_paused


# --- rules reloading --------------------------------------------------------------------------
def test_reloader_sees_a_changed_file_and_keeps_old_rules_on_a_broken_one(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n')
    classifiers = ReloadableClassifier([rules])
    metrics = Metrics()
    now = [0.0]
    reloader = RulesReloader(classifiers, metrics, watch=True, clock=lambda: now[0])
    v1 = classifiers.current.version
    rules.write_text('[rules]\nQuotaIssues = ["mailbox full"]\n')
    os.utime(rules, (1, 1))
    assert not reloader.changed()  # checked at most once a second
    now[0] = 1.5
    assert reloader.changed()

    async def reload() -> bool:
        return await reloader.reload("test")

    assert asyncio.run(reload())
    assert classifiers.current.version != v1 and reloader.replaced
    assert classifiers.classify("552 mailbox full").label == "QuotaIssues"
    v2 = classifiers.current.version
    rules.write_text("[rules]\nQuotaIssues = ['(unclosed']\n")
    assert not asyncio.run(reload())
    assert classifiers.current.version == v2
    assert metrics.registry.get_sample_value("streamer_rules_reloads_total") == 1
    assert metrics.registry.get_sample_value("streamer_rules_reload_failures_total") == 1
    now[0] = 3.0
    assert not reloader.changed()  # the failed attempt recorded the file's new state


def test_reloader_without_watch_never_reports_a_change(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n')
    now = [0.0]
    reloader = RulesReloader(
        ReloadableClassifier([rules]), Metrics(), watch=False, clock=lambda: now[0]
    )
    rules.write_text('[rules]\nQuotaIssues = ["mailbox full"]\n')
    now[0] = 10.0
    assert not reloader.changed()


@pytest.mark.parametrize("exactly_once", [False, True])
def test_forget_clears_committed_positions(exactly_once: bool) -> None:
    tr = OffsetTracker()
    cp = make_checkpoint(exactly_once, tr, Committer(), Metrics(), Producer())
    tr.assign([TP0])
    cp.on_committed({TP0: 3})
    assert cp.committed == {TP0: 3}
    cp.forget([TP0])
    assert cp.committed == {}


def test_make_batch_measures_the_wait_of_its_oldest_record() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    now_ms = int(time.time() * 1000)
    older = Message(topic=TP1[0], partition=TP1[1], offset=0, timestamp=(2, now_ms - 400))
    newer = Message(topic=TP0[0], partition=TP0[1], offset=0, timestamp=(2, now_ms - 100))
    batch = make_batch(tr, [newer, older])
    assert batch is not None
    assert 0.4 <= batch.fetch_wait < 5.0  # the older record's wait, from its broker timestamp
    untimed = make_batch(tr, _msgs(TP0, 1, 2))  # no timestamp: nothing to measure
    assert untimed is not None and untimed.fetch_wait == 0.0


def test_log_fields_never_read_as_empty() -> None:
    from streamer.worker.assignment import format_partitions
    from streamer.worker.stream import _fmt_positions

    assert format_partitions([]) == "none"
    assert format_partitions([("in", 1), ("in", 0)]) == "in:0,in:1"
    assert _fmt_positions({}) == "none"
    assert _fmt_positions({("in", 0): 12}) == "in:0@12"


def test_exactly_once_a_retriable_abort_is_tried_again() -> None:
    """librdkafka asks for ``abort_transaction`` to be called again after a retriable error (a
    timeout while outputs drain): a rebalance's abort that timed out once still rewinds."""

    class SlowAbort(Producer):
        def __init__(self, fail_commit: KafkaError, aborts_failing: int) -> None:
            super().__init__(fail_commit)
            self.aborts_failing = aborts_failing

        def abort_transaction(self, timeout: float) -> None:
            super().abort_transaction(timeout)
            if self.aborts_failing:
                self.aborts_failing -= 1
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "abort", retriable=True))

    overtaken = KafkaError(KafkaError.ILLEGAL_GENERATION, "generation", txn_requires_abort=True)
    for failing, rewound in ((1, True), (3, False)):
        tr = OffsetTracker()
        producer = SlowAbort(overtaken, failing)
        cp = ExactlyOnce(tr, Committer(), Metrics(), producer)
        rewinds: list[bool] = []
        cp.on_aborted = lambda log=rewinds: log.append(True) or True
        tr.assign([TP0])
        batch = make_batch(tr, _msgs(TP0, 0, 3))
        assert batch is not None
        assert asyncio.run(cp.process(batch.groups, _deliver_all)) == 0
        aborts = [c for c in producer.calls if c[0] == "abort"]
        assert len(aborts) == min(failing + 1, 3)
        assert bool(rewinds) is rewound and cp.failed is not rewound
