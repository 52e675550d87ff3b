"""Move a consumer group back to a point in time (``streamer replay --since``).

Per partition, the new offset is the broker's answer to "the first record at or after this
time" (``offsets_for_times``; the end of the partition when no record is that new). The broker
lets a group's offsets be changed from outside only while the group has no members, so the
move is refused while any worker of the group runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from streamer.config import Settings
from streamer.kafka.clients import admin_client, consumer

#: Group states in which no member holds the group's partitions.
IDLE_STATES = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD}


class ReprocessError(Exception):
    """The group cannot be moved; the message says why in one line."""


@dataclass(frozen=True)
class Move:
    partition: int
    committed: int | None  # None: the group has no offset here
    new: int
    end: int  # high watermark when planned

    @property
    def to_read(self) -> int:
        """Records the group reads from ``new`` to the end (reprocessed and new alike)."""
        return max(0, self.end - self.new)

    @property
    def again(self) -> int:
        """Records before the committed offset that the group reads a second time."""
        return 0 if self.committed is None else max(0, self.committed - self.new)


@dataclass(frozen=True)
class GroupState:
    state: str
    members: int
    #: No live member: the broker accepts offsets from outside.
    idle: bool


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return str(err.str() if isinstance(err, KafkaError) else err)


def group_state(settings: Settings, bootstrap: str, group: str) -> GroupState:
    admin = admin_client(settings, bootstrap, log_level=3)
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    except KafkaException as exc:
        raise ReprocessError(f"group {group}: {_reason(exc)}") from None
    members = len(desc.members or ())
    return GroupState(desc.state.name, members, desc.state in IDLE_STATES and not members)


def plan(settings: Settings, bootstrap: str, group: str, topic: str, since: float) -> list[Move]:
    """Per partition of ``topic``: the group's committed offset and the offset of ``since``."""
    probe = consumer(settings, bootstrap, group_id=f"streamer-replay-{os.getpid()}", log_level=3)
    try:
        meta = probe.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ReprocessError(f"topic {topic!r} does not exist")
        parts = sorted(meta.partitions)
        stamp = int(since * 1000)
        found = probe.offsets_for_times([TopicPartition(topic, p, stamp) for p in parts], 30)
        ends = {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in parts
        }
    except KafkaException as exc:
        raise ReprocessError(f"{topic}: {_reason(exc)}") from None
    finally:
        probe.close()
    committed = _committed(settings, bootstrap, group, topic, parts)
    moves = []
    for tp in found:
        if tp.error is not None:
            raise ReprocessError(f"{topic} partition {tp.partition}: {tp.error.str()}")
        end = ends[tp.partition]
        new = end if tp.offset < 0 else tp.offset  # no record that new: the end
        moves.append(Move(tp.partition, committed.get(tp.partition), new, end))
    return moves


def _committed(
    settings: Settings, bootstrap: str, group: str, topic: str, parts: list[int]
) -> dict[int, int]:
    admin = admin_client(settings, bootstrap, log_level=3)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    try:
        answer = admin.list_consumer_group_offsets([request], request_timeout=15)[group]
        listed = answer.result(timeout=20).topic_partitions or []
    except KafkaException as exc:
        raise ReprocessError(f"group {group}: {_reason(exc)}") from None
    return {tp.partition: tp.offset for tp in listed if tp.offset >= 0}


def apply(settings: Settings, bootstrap: str, group: str, topic: str, moves: list[Move]) -> None:
    """Commit the new offsets for the group; the broker refuses while it has members."""
    admin = admin_client(settings, bootstrap, log_level=3)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, m.partition, m.new) for m in moves]
    )
    try:
        answer = admin.alter_consumer_group_offsets([request], request_timeout=15)[group]
        done = answer.result(timeout=20).topic_partitions or []
    except KafkaException as exc:
        raise ReprocessError(
            f"group {group}: the broker refused the move: {_reason(exc)}"
        ) from None
    failed = [tp.error for tp in done if tp.error is not None]
    if failed:
        why = failed[0].str()
        if failed[0].code() == KafkaError.UNKNOWN_MEMBER_ID:
            why += " (the group has live members: stop its workers first)"
        raise ReprocessError(f"group {group}: the broker refused the move: {why}")
