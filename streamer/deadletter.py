"""Dead-letter headers: one builder for every message streamer cannot deliver where it belongs.

A dead letter keeps its original key, value and headers, and gains headers saying why and where
it came from. Two paths produce them: the pipeline (a malformed input: its exact offset is known)
and the sink (an output the broker refused for good: only its chunk's offset range is known,
``streamer.dlq.source.offsets = first-last``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

#: Kafka message headers, typed as confluent-kafka types them.
Headers = list[tuple[str, str | bytes | None]]

DLQ_REASON = "streamer.dlq.reason"
DLQ_SOURCE_TOPIC = "streamer.dlq.source.topic"
DLQ_SOURCE_PARTITION = "streamer.dlq.source.partition"
DLQ_SOURCE_OFFSET = "streamer.dlq.source.offset"
#: Offset range (``first-last``) of the chunk a refused output came from.
DLQ_SOURCE_OFFSETS = "streamer.dlq.source.offsets"
DLQ_TIME = "streamer.dlq.time"
DLQ_DETAIL = "streamer.dlq.detail"

#: Longest ``streamer.dlq.detail`` value, in bytes.
MAX_DETAIL_BYTES = 1024


def utc_timestamp(now: float) -> str:
    """RFC 3339 UTC time with milliseconds, as written in the DLQ time header."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dead_letter_headers(
    original: Iterable[tuple[str, str | bytes | None]] | None,
    reason: str,
    *,
    topic: str,
    partition: int | None,
    offset: int | None = None,
    offsets: tuple[int, int] | None = None,
    detail: str | None = None,
    now: float | None = None,
) -> Headers:
    """The original headers plus the dead-letter headers (``offset`` or ``offsets``, or both)."""
    headers: Headers = list(original or ())
    headers.append((DLQ_REASON, reason.encode()))
    headers.append((DLQ_SOURCE_TOPIC, topic.encode()))
    headers.append((DLQ_SOURCE_PARTITION, str(partition).encode()))
    if offset is not None:
        headers.append((DLQ_SOURCE_OFFSET, str(offset).encode()))
    if offsets is not None:
        headers.append((DLQ_SOURCE_OFFSETS, f"{offsets[0]}-{offsets[1]}".encode()))
    headers.append((DLQ_TIME, utc_timestamp(time.time() if now is None else now).encode()))
    if detail:
        headers.append((DLQ_DETAIL, detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]))
    return headers


def has_header(headers: Iterable[tuple[str, object]] | None, name: str) -> bool:
    return any(k == name for k, _ in headers or ())
