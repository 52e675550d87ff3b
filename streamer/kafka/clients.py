"""confluent-kafka client configurations built from the one Settings object.

Every client gets the connection settings (TLS/SASL, ``kafka_extra``) from
``Settings.kafka_client_config()``; the helpers here add the bootstrap address and sensible
per-role defaults, which callers may override; ``kafka_extra`` is applied last, so the
user's explicit librdkafka properties always win.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streamer.config import Settings


def client_config(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """Connection settings shared by every client: bootstrap, security, ``kafka_extra``."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
    conf.update(settings.kafka_client_config())
    return conf


def producer_config(settings: Settings, bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """A durable, batching producer: acks from all in-sync replicas, idempotent, lz4 batches."""
    conf = client_config(settings, bootstrap)
    conf.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_048_576,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 200_000,
            "queue.buffering.max.kbytes": 262_144,
        }
    )
    conf.update(overrides)
    conf.update(settings.kafka_extra)
    return conf


def consumer_config(
    settings: Settings, bootstrap: str, group_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A consumer in ``group_id`` (default settings.group_id) that commits explicitly."""
    conf = client_config(settings, bootstrap)
    conf.update(
        {
            "group.id": group_id or settings.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    conf.update(overrides)
    conf.update(settings.kafka_extra)
    extra = settings.kafka_extra
    if (
        "fetch.max.bytes" in conf
        and "message.max.bytes" in extra
        and "fetch.max.bytes" not in extra
    ):
        # librdkafka refuses a consumer whose fetch.max.bytes is below its message.max.bytes:
        # a larger message.max.bytes in kafka_extra (meant for producers) raises the fetch too
        conf["fetch.max.bytes"] = max(int(conf["fetch.max.bytes"]), int(extra["message.max.bytes"]))
    return conf


def admin_client(settings: Settings, bootstrap: str, **overrides: Any) -> AdminClient:
    conf = client_config(settings, bootstrap)
    conf.update(overrides)
    conf.update(settings.kafka_extra)
    return AdminClient(conf)


def producer(settings: Settings, bootstrap: str, **overrides: Any) -> Producer:
    return Producer(producer_config(settings, bootstrap, **overrides))


def consumer(
    settings: Settings, bootstrap: str, group_id: str | None = None, **overrides: Any
) -> Consumer:
    return Consumer(consumer_config(settings, bootstrap, group_id, **overrides))
