"""Delivery batches: a slice's Delivery suppression events as one record per events partition.

Every Delivery makes a suppression event for each recipient (it lifts an older hard bounce,
makes an older one arriving later stale, and vouches for an OOB). Sent as one Kafka record
each, those events cost a worker more than all its other analytics together: a produce, a
delivery report, a fetch and a fold per Delivery (docs/performance.md). A delivery event
carries nothing but its time, and deliveries only ever raise a recipient's time, so the
pipeline sends a slice's deliveries as one record per partition of the events topic::

    {"k": "deliveries", "n": 12, "d": [["alice@example.com", 1733580000123], ...]}

``n`` is the partition count the worker placed them for, ``d`` each recipient once, with its
latest delivery time, sorted. The record's key is its first recipient: Kafka's default
partitioner (murmur2, the Java client's and librdkafka's ``murmur2_random``, which the sink
uses) puts it in the partition that every recipient in it hashes to, computed here the same
way (:func:`partition_of`). The stage folds each entry as the single delivery event it
replaces (``streamer.worker.suppressor``), whatever order or duplication they arrive in.

Hard bounces, complaints and manual events stay one record each: they are rare, carry
details, and are identified by their source (a replay must be recognised).
"""

from __future__ import annotations

import orjson

#: ``k`` of a delivery batch.
DELIVERIES = "deliveries"

_M = 0x5BD1E995
_SEED = 0x9747B28C
_U32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as the Java client returns it (a signed 32-bit int).

    The reference; the native path has the same function (``native/src/partition.rs``).
    """
    length = len(data)
    h = (_SEED ^ length) & _U32
    end = length & ~3
    for i in range(0, end, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * _M) & _U32
        k ^= k >> 24
        h = ((h * _M) & _U32) ^ ((k * _M) & _U32)
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h = ((h ^ data[end]) * _M) & _U32
    h ^= h >> 13
    h = (h * _M) & _U32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a non-empty ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class DeliveryBatches:
    """One slice's deliveries: partition -> recipient -> latest delivery time.

    ``by_partition`` may start with what the native path gathered for the slice; the Python
    path adds the deliveries of the records it decides (:meth:`add`).
    """

    __slots__ = ("by_partition", "partitions")

    def __init__(
        self, partitions: int, by_partition: dict[int, dict[str, int]] | None = None
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.by_partition: dict[int, dict[str, int]] = by_partition or {}

    def add(self, key: bytes, t: int) -> None:
        """A delivery to the recipient ``key`` (a suppression event's key) at ``t``."""
        group = self.by_partition.setdefault(partition_of(key, self.partitions), {})
        recipient = key.decode()
        if group.get(recipient, t) <= t:
            group[recipient] = t

    def records(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of each partition's record, in partition order."""
        made = []
        for p in sorted(self.by_partition):
            entries = sorted(self.by_partition[p].items())
            if entries:
                doc = {"k": DELIVERIES, "n": self.partitions, "d": entries}
                made.append((entries[0][0].encode(), orjson.dumps(doc)))
        return made
