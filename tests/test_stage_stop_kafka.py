"""A keyed stage asked to stop while it restores (right after a rebalance) leaves at once.

After a broker restart a worker that died inside a transaction (the watchdog ends a hung one)
leaves that transaction open until the broker aborts it; meanwhile a read_committed reader of
its group's offsets waits for them. A stage assigned partitions then waits in its restore, in
the rebalance callback: a graceful stop must not wait with it (Kubernetes kills a worker 30 s
after SIGTERM), nor count it a failure (exit 1).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamer.config import Settings
from streamer.worker.suppressor import SuppressionStage

#: The stop's bound: far under the restore's own give-up time (RESTORE_TIMEOUT_S, 60 s).
STOP_BOUND_S = 20.0


class _Events(logging.Handler):
    """The stage's log lines as they come, each waitable."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.seen: dict[str, threading.Event] = {}

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        self.seen.setdefault(line, threading.Event()).set()

    def wait(self, line: str, timeout: float) -> bool:
        return self.seen.setdefault(line, threading.Event()).wait(timeout)


@pytest.fixture
def stage_log() -> Iterator[_Events]:
    events = _Events()
    log = logging.getLogger("streamer.suppressions")
    level = log.level
    log.setLevel(logging.INFO)
    log.addHandler(events)
    yield events
    log.removeHandler(events)
    log.setLevel(level)


def _hold_offsets(bootstrap: str, group: str, topic: str) -> Producer:
    """A transaction holding offsets of ``group`` on ``topic`` pending for minutes (a worker
    that died inside it): the group's committed offsets are unstable until it ends."""
    holder = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"dead-worker-{topic}",
            "transaction.timeout.ms": 300_000,
        }
    )
    holder.init_transactions(30)
    holder.begin_transaction()
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = [TopicPartition(topic, p, 0) for p in (0, 1)]
        holder.send_offsets_to_transaction(offsets, reader.consumer_group_metadata(), 30)
    finally:
        reader.close()
    return holder


def test_a_stage_stopped_while_its_restore_waits_leaves_at_once(
    kafka_bootstrap: str,
    kafka_settings: Settings,
    new_topic: Callable[..., str],
    stage_log: _Events,
) -> None:
    events, state = new_topic(2), new_topic(2)
    topics = {"suppression_events_topic": events, "suppression_state_topic": state}
    settings = kafka_settings.model_copy(
        update={**topics, "group_id": f"g-{events}", "exactly_once": True}
    )
    holder = _hold_offsets(kafka_bootstrap, f"g-{events}.suppressions", events)
    failed = threading.Event()
    stage = SuppressionStage(settings, kafka_bootstrap, worker_id="w", on_failure=failed.set)
    stage.start()
    try:
        assert stage_log.wait("suppression restoring partitions", 60)
        stage.request_stop(time.monotonic() + STOP_BOUND_S)
        stopped = stage.join()
    finally:
        holder.abort_transaction(30)
    assert stopped, stage_log.lines
    assert stage_log.lines == [
        "suppression restoring partitions",
        "suppression restore cut short: stopping",
        "suppression partitions revoked",  # leaving the group: the next owner restores them
        "suppression stage stopped",
    ]
    assert stage.error is None and not failed.is_set()  # a stop, not a failure
    assert stage.status()["assigned"] == [] and stage.status()["events"] == 0
