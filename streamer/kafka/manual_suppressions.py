"""Manual suppressions: an operator's ``add`` and ``remove``, written as suppression events.

``streamer suppressions add ADDRESS...`` and ``remove ADDRESS...`` (``streamer.cli.suppressions``)
do not write the public suppressions topic themselves: the suppression stage owns it, and a
second writer would race the stage's own writes of the same key. They write one event per
address into the stage's events topic, keyed by the address as the workers key theirs (lower
case, no angle brackets; the Java client's partitioner, as the workers' producer uses), and the
stage owning its partition folds it like any other (``streamer.analytics.suppression_fold``):
an ``add`` suppresses with reason ``manual``, which no Delivery lifts; a ``remove`` lifts every
reason its address is suppressed for (the public entry becomes a tombstone), as of its time.

An event's source is ``p`` -1 (no input partition) and ``o`` a random id, so a replay of it
counts once; its time is this host's clock.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from confluent_kafka import KafkaError, Message

from streamer.analytics.suppression_fold import MANUAL, REMOVE
from streamer.config import Settings
from streamer.kafka.clients import producer

#: Longest an ``add``/``remove`` waits for the broker to acknowledge its events.
ACK_TIMEOUT_S = 30.0
#: Longest ``--reason-text`` kept (the public value repeats it).
NOTE_MAX = 500


class ManualSuppressionError(Exception):
    """The events could not be written; the message says why (one line)."""


@dataclass(frozen=True, slots=True)
class Written:
    """What an add or remove wrote: the keys, and the events topic."""

    keys: list[str]
    topic: str


def address_key(address: str) -> str:
    """An address as the suppression key (lower case, no angle brackets); ValueError when it
    is no address (no ``@``, or blanks inside)."""
    key = address.strip().strip("<>").lower()
    local, at, domain = key.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in key):
        raise ValueError(f"not an email address: {address!r}")
    return key


def manual_event(kind: str, now_ms: int, note: str | None = None) -> bytes:
    """The events-topic value of a manual ``add`` (kind ``manual``) or ``remove``."""
    doc: dict[str, object] = {"p": -1, "o": secrets.randbits(62), "t": now_ms, "k": kind}
    if kind == MANUAL:
        doc["h"] = {"note": note[:NOTE_MAX] if note else None}
    return orjson.dumps(doc)


def write_manual(
    settings: Settings,
    bootstrap: str,
    kind: str,
    addresses: Iterable[str],
    note: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Written:
    """Write one ``kind`` event (``manual`` or ``remove``) per address to the events topic and
    wait for the broker's acknowledgement. ValueError names the first bad address (nothing is
    written then); ManualSuppressionError says why the writes failed."""
    if kind not in (MANUAL, REMOVE):
        raise ValueError(f"unknown manual suppression kind {kind!r}")
    keys = list(dict.fromkeys(address_key(a) for a in addresses))
    topic = settings.suppression_events_topic or ""
    failed: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(f"{(msg.key() or b'').decode()}: {err.str()}")

    out = producer(settings, bootstrap, **{"partitioner": "murmur2_random", "linger.ms": 0})
    if topic not in out.list_topics(timeout=ACK_TIMEOUT_S).topics:
        raise ManualSuppressionError(
            f"the suppression events topic {topic} does not exist (streamer topics create)"
        )
    now_ms = int(clock() * 1000)
    for key in keys:
        out.produce(topic, manual_event(kind, now_ms, note), key.encode(), on_delivery=delivered)
    left = out.flush(ACK_TIMEOUT_S)
    if left:
        raise ManualSuppressionError(f"{left} of {len(keys)} events not acknowledged in time")
    if failed:
        raise ManualSuppressionError(f"events not written to {topic}: {failed[0]}")
    return Written(keys, topic)
