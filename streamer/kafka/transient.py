"""Kafka errors that asking again cures: a topic or group just created (the client does not know
its leader or coordinator yet), a leader moving, a broker busy or restarting."""

from __future__ import annotations

from confluent_kafka import KafkaError

TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        # a broker that restarted: the client's leader epoch is stale until its metadata is
        # refreshed (seen in a stage's restore, "Failed to get offsets")
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
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
