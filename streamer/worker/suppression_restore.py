"""A keyed stage's restore: its keys from the changelog, and where to read its inputs from.

A stage assigned partitions of its inputs topic first reads the same partitions of the
changelog (the state topic, co-partitioned) to their end into its store, then reads the inputs
from its group's committed position, brought back by its replay (the suppression stage's
``suppression_replay`` seconds; see ``streamer.worker.keyed_stage``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streamer.config import Settings
from streamer.kafka.clients import consumer_config
from streamer.kafka.transient import TRANSIENT
from streamer.memory import kafka_client_config

T = TypeVar("T")
#: Longest a restore may take (an open transaction of a dead producer holds read_committed
#: readers until the broker aborts it: TRANSACTION_TIMEOUT_MS).
RESTORE_TIMEOUT_S = 60.0
#: Blocking calls to the broker.
CALL_TIMEOUT_S = 30.0
#: Changelog records read per consume().
BATCH = 2000


class StageError(Exception):
    """The stage cannot go on (the worker stops; its successor reads the events again)."""


class StageStopped(Exception):
    """The stage was asked to stop during a restore: it gives the restore up (its partitions'
    next owner restores them)."""


def _never() -> bool:
    return False


def restore_config(settings: Settings, bootstrap: str, group_id: str) -> dict[str, Any]:
    """A reader of the changelog: assigned, it never joins the group nor commits (so the
    stage's group ACL covers it)."""
    return consumer_config(
        settings,
        bootstrap,
        group_id,
        **{
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            **kafka_client_config(settings.memory_budget_mb, "changelog_reader"),
        },
    )


def check_partitions(consumer: Consumer, kind: str, events_topic: str, state_topic: str) -> int:
    """The changelog must have the inputs topic's partitions (a key's state goes to the
    partition number of its inputs); returns how many."""
    topics = consumer.list_topics(timeout=CALL_TIMEOUT_S).topics
    counts = {
        t: len(topics[t].partitions) if t in topics else 0 for t in (events_topic, state_topic)
    }
    if len(set(counts.values())) != 1 or 0 in counts.values():
        found = ", ".join(f"{t}: {n}" for t, n in counts.items())
        raise StageError(f"the {kind} topics need as many partitions each ({found})")
    return counts[events_topic]


def read_changelog(
    reader: Consumer,
    state_topic: str,
    ps: list[int],
    restore: Callable[[int, bytes, bytes | None], None],
    stopping: Callable[[], bool] = _never,
) -> int:
    """Read the partitions of the changelog to their end, each record (partition, key, value;
    None: a tombstone) into ``restore``; returns the records read. StageStopped once
    ``stopping()``: a read_committed reader may wait long here (a dead producer's open
    transaction holds it until the broker aborts it)."""
    left, n = set(), 0
    for p in ps:  # an empty partition has nothing to wait for
        tp = TopicPartition(state_topic, p)
        low, high = retried(partial(reader.get_watermark_offsets, tp, CALL_TIMEOUT_S), stopping)
        if high > low:
            left.add(p)
    if not left:
        return 0
    reader.assign([TopicPartition(state_topic, p, OFFSET_BEGINNING) for p in left])
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    while left:
        if stopping():
            raise StageStopped(f"restoring {state_topic}: stopping")
        if time.monotonic() > deadline:
            raise StageError(f"restoring {state_topic} took over {RESTORE_TIMEOUT_S:.0f}s")
        for m in reader.consume(BATCH, 0.5):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    left.discard(m.partition() or 0)
                elif not passing(err):
                    raise StageError(f"restoring {state_topic}: {err.str()}")
                continue  # the reader reconnects and reads on; the deadline bounds it
            key = m.key()
            if not key:
                continue
            restore(m.partition() or 0, key, m.value())
            n += 1
    return n


def passing(err: KafkaError) -> bool:
    """A consumer error event the client recovers from by itself: a connection lost or a
    broker restarting (librdkafka reconnects, and says so meanwhile: ``_TRANSPORT``,
    ``_ALL_BROKERS_DOWN``), a leader moving. A restore right after a broker came back met
    those, and its stage stopped the worker (exit 1) instead of reading on."""
    return err.retriable() or err.code() in TRANSIENT or err.code() == KafkaError._ALL_BROKERS_DOWN


def start_offsets(
    consumer: Consumer,
    events_topic: str,
    ps: list[int],
    replay_ms: int,
    stopping: Callable[[], bool] = _never,
) -> dict[int, int]:
    """The committed position of each partition, brought ``replay_ms`` back."""
    tps = [TopicPartition(events_topic, p) for p in ps]
    # read_committed and exactly-once: an open transaction's offsets hold this (retriable)
    found = retried(partial(consumer.committed, tps, CALL_TIMEOUT_S), stopping)
    starts = {p: -1 for p in ps}
    starts.update((tp.partition, tp.offset) for tp in found)
    if replay_ms:
        since = int(time.time() * 1000) - replay_ms
        asked = [TopicPartition(events_topic, p, since) for p in ps if starts[p] >= 0]
        if asked:
            times = partial(consumer.offsets_for_times, asked, CALL_TIMEOUT_S)
            for tp in retried(times, stopping):
                if tp.offset >= 0:
                    starts[tp.partition] = min(starts[tp.partition], tp.offset)
    return {p: o if o >= 0 else OFFSET_BEGINNING for p, o in starts.items()}


def retried(call: Callable[[], T], stopping: Callable[[], bool] = _never) -> T:
    """``call()``, again while it fails with a retriable error (a topic just created whose
    leaders the client does not know yet), up to RESTORE_TIMEOUT_S; StageStopped instead of
    trying again once ``stopping()``."""
    deadline = time.monotonic() + RESTORE_TIMEOUT_S
    while True:
        if stopping():
            raise StageStopped("stopping")
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            if not (isinstance(err, KafkaError) and (err.retriable() or err.code() in TRANSIENT)):
                raise
            if time.monotonic() > deadline:
                raise StageError(f"gave up after {RESTORE_TIMEOUT_S:.0f}s: {err.str()}") from None
            time.sleep(0.2)
