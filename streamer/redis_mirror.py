"""The suppression list in Redis, for KumoMTA: ``streamer suppressions sync``.

It reads the compacted ``suppressions_topic`` in a consumer group of its own and applies each
record to Redis: a live entry sets ``<prefix><recipient>`` to the entry's JSON, a tombstone
deletes that key. KumoMTA's policy (deploy/kumomta/streamer_suppressions.lua) looks the key up
at reception.

Where it got to is kept in Redis itself, in the hash whose key is the prefix alone (no
recipient is empty, so it meets no entry): one field per partition, ``<topic>:<partition>`` =
the next offset to apply, written in the same MULTI/EXEC transaction as the batch's entries.
Redis's data and its position cannot disagree, whatever stops when: a Redis emptied or
restored from an older snapshot is read again from the position it holds (from the beginning
when it holds none). The group's offsets are committed after Redis acknowledged, so the
group's lag says how far behind the mirror is.

Redis away: the batch in hand is not applied, every partition is paused and put back to the
position Redis holds once it answers again (``up`` is 0 meanwhile); nothing is lost and
nothing is skipped. Each batch first checks that Redis still holds the positions last written
(one HMGET): a Redis that came back without its data, was emptied or restored from an older
snapshot is noticed there and read again from what it holds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from streamer.config import Settings
from streamer.kafka.clients import consumer_config
from streamer.logs import log_event
from streamer.memory import kafka_client_config

log = logging.getLogger("streamer.suppressions.sync")

#: Records applied per Redis transaction (one consume() each).
BATCH = 1000
#: Longest wait between two tries of an unreachable Redis.
MAX_BACKOFF_S = 5.0
#: Redis calls: connect and answer within this, else Redis counts as away.
REDIS_TIMEOUT_S = 5.0


class SyncError(Exception):
    """The mirror cannot start (a bad Redis URL, a missing topic): one line."""


def redis_client(url: str) -> redis.Redis:
    """A client for ``url`` (redis://, rediss://, unix://), checked to parse."""
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            # the mirror does its own waiting (and pauses Kafka meanwhile)
            retry_on_timeout=False,
        )
    except ValueError as exc:
        raise SyncError(f"suppressions_redis_url: {exc}") from None


def _incurable(exc: redis.RedisError) -> bool:
    """Errors waiting does not cure: a refused login or command (ACLs), the prefix's key of
    another type. Everything else (Redis away, loading, read-only during a failover, out of
    memory, unable to persist) is waited for."""
    refused = (
        redis.AuthenticationError,
        redis.exceptions.AuthorizationError,
        redis.exceptions.NoPermissionError,
    )
    if isinstance(exc, refused):
        return True
    return isinstance(exc, redis.ResponseError) and "WRONGTYPE" in str(exc)


def positions_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class MirrorMetrics:
    """The mirror's metrics, in the registry given (the worker's, or the command's own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.writes = Counter(
            "streamer_redis_sync_writes",
            "Suppression-list writes the Redis mirror applied: set (a live entry), del (a "
            "tombstone).",
            ["op"],
            registry=registry,
        )
        self.failures = Counter(
            "streamer_redis_sync_failures",
            "Redis transactions of the mirror that failed (Redis away); retried.",
            registry=registry,
        )
        self.up = Gauge(
            "streamer_redis_sync_up",
            "1 while the mirror's last Redis transaction succeeded, 0 while Redis is away.",
            registry=registry,
        )
        self.lag = Gauge(
            "streamer_redis_sync_lag",
            "Suppression records not yet in Redis (its partitions' end minus their position).",
            registry=registry,
        )


class MirrorStore:
    """The Redis side: the entries and the positions hash (see the module doc)."""

    def __init__(self, url: str, prefix: str, topic: str) -> None:
        self.redis = redis_client(url)
        self.prefix = prefix
        self.topic = topic

    def positions(self, ps: list[int]) -> list[int | None]:
        """The next offset Redis holds for each partition (None: none)."""
        found = self.redis.hmget(self.prefix, [positions_field(self.topic, p) for p in ps])
        return [None if o is None else int(o) for o in found]

    def write(self, ops: list[tuple[bytes, bytes | None]], positions: dict[int, int]) -> None:
        """The entries (None: delete) and the new positions, in one MULTI/EXEC transaction."""
        pipe = self.redis.pipeline(transaction=True)
        prefix = self.prefix.encode()
        for key, value in ops:
            if value is None:
                pipe.delete(prefix + key)
            else:
                pipe.set(prefix + key, value)
        fields = {positions_field(self.topic, p): o for p, o in positions.items()}
        pipe.hset(self.prefix, mapping=fields)  # type: ignore[arg-type]
        pipe.execute()

    def close(self) -> None:
        self.redis.close()


@dataclass
class MirrorCounts:
    """What ``status()`` and the stop log line report."""

    applied: int = 0
    sets: int = 0
    deletes: int = 0
    failures: int = 0
    skipped: int = 0  # records without a key


class RedisMirror:
    """Mirrors the suppressions topic into Redis (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        url: str,
        *,
        group: str | None = None,
        registry: CollectorRegistry | None = None,
        client_id: str = "streamer-suppressions-sync",
    ) -> None:
        self.topic = settings.suppressions_topic
        self.group = group or f"{settings.group_id}.redis-sync"
        self.store = MirrorStore(url, settings.suppressions_redis_prefix, self.topic)
        self.registry = registry or CollectorRegistry()
        self.metrics = MirrorMetrics(self.registry)
        self.counts = MirrorCounts()
        self.consumer = Consumer(
            consumer_config(
                settings,
                bootstrap,
                self.group,
                **{
                    "client.id": client_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # the suppression stage writes in transactions in exactly-once mode
                    "isolation.level": "read_committed",
                    "partition.assignment.strategy": "cooperative-sticky",
                    # a sync killed -9 and started again gets its partitions back in seconds
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 1_000,
                    # run inside a worker: its part of the worker's memory budget
                    **kafka_client_config(settings.memory_budget_mb, "mirror_consumer"),
                },
            )
        )
        #: Partitions whose position must be taken from Redis before anything of them is
        #: applied: newly assigned ones, and those of a batch Redis refused.
        self.reposition: set[int] = set()
        self.owned: set[int] = set()
        #: The position Redis holds for each owned partition, as last read or written (None:
        #: none yet). A batch first checks that Redis still holds it (see ``_apply``).
        self.expected: dict[int, int | None] = {}
        self._stop = threading.Event()
        self._backoff = 0.0
        self._away = False
        #: Set when the mirror stopped on an error waiting cannot cure (``run`` raised).
        self.error: str | None = None
        self._lag_at = 0.0

    # --- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Mirror until ``stop()``; then leave the group."""
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self._stop.is_set():
                if self.reposition and not self._reposition():
                    self._wait()
                    continue
                messages = self.consumer.consume(BATCH, 0.5)
                if messages and not self._apply(messages):
                    self._wait()
                    continue
                self._update_lag()
        finally:
            self.consumer.close()
            self.store.close()
            log_event(log, logging.INFO, "suppressions sync stopped", **self.status())

    def status(self) -> dict[str, Any]:
        c = self.counts
        return {
            "applied": c.applied,
            "sets": c.sets,
            "deletes": c.deletes,
            "failures": c.failures,
            "skipped": c.skipped,
            "assigned": sorted(self.owned),
            "reposition": sorted(self.reposition),
        }

    # --- assignment ----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ps = [tp.partition for tp in partitions]
        # paused until their position is read from Redis (which may be away right now)
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)
        self.owned.update(ps)
        self.reposition.update(ps)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # batches are applied before the next consume() (whose callbacks these are)
        ps = {tp.partition for tp in partitions}
        self.owned -= ps
        self.reposition -= ps
        for p in ps:
            self.expected.pop(p, None)
        consumer.incremental_unassign(partitions)

    def _reposition(self) -> bool:
        """Seek the partitions to reposition to where Redis says; False: Redis is away."""
        ps = sorted(self.reposition)
        try:
            held = self.store.positions(ps)
        except redis.RedisError as exc:
            self._failed(exc)
            return False
        tps = [
            TopicPartition(self.topic, p, OFFSET_BEGINNING if o is None else o)
            for p, o in zip(ps, held, strict=True)
        ]
        self.expected.update(zip(ps, held, strict=True))
        # assigned again at the position (a seek is refused on a partition not fetched yet)
        self.consumer.incremental_unassign([TopicPartition(self.topic, p) for p in ps])
        self.consumer.incremental_assign(tps)
        self.consumer.resume(tps)  # librdkafka keeps a partition's pause across assignments
        self.reposition.clear()
        self._recovered()
        log_event(
            log,
            logging.INFO,
            "suppressions sync positioned",
            positions=",".join(f"{tp.partition}:{tp.offset}" for tp in tps),
        )
        return True

    # --- one batch -------------------------------------------------------------------------------
    def _apply(self, messages: list[Message]) -> bool:
        """Apply one batch to Redis (one transaction) and commit it; False: Redis refused it
        (every partition is then paused, to be read again from Redis's position)."""
        positions: dict[int, int] = {}
        ops: list[tuple[bytes, bytes | None]] = []
        for m in messages:
            if m.error() is not None:
                err = str(m.error())
                log_event(log, logging.WARNING, "suppressions sync consume error", error=err)
                continue
            p = m.partition() or 0
            if p not in self.owned or p in self.reposition:
                continue  # read before it was (re)positioned: read again from Redis's position
            positions[p] = (m.offset() or 0) + 1
            key = m.key()
            if not key:
                self.counts.skipped += 1
                continue
            ops.append((key, m.value()))
        if not positions:
            return True
        try:
            if not self._still_held(sorted(positions)):
                return True
            self.store.write(ops, positions)
        except redis.RedisError as exc:
            self._failed(exc)
            self._reposition_all()
            return False
        self._recovered()
        sets = sum(1 for _, v in ops if v is not None)
        c = self.counts
        c.applied += len(ops)
        c.sets += sets
        c.deletes += len(ops) - sets
        self.metrics.writes.labels("set").inc(sets)
        self.metrics.writes.labels("del").inc(len(ops) - sets)
        self.expected.update(positions)
        self._commit(positions)
        return True

    def _still_held(self, ps: list[int]) -> bool:
        """Whether Redis still holds the positions last written for ``ps``. Not (it restarted
        without its data, was emptied, or restored from an older snapshot): every partition
        is read again from what it holds, the batch in hand is dropped."""
        if self.store.positions(ps) == [self.expected.get(p) for p in ps]:
            return True
        log_event(
            log,
            logging.WARNING,
            "redis lost suppressions (emptied or restored); reading again from its positions",
            partitions=",".join(map(str, ps)),
        )
        self._reposition_all()
        return False

    def _reposition_all(self) -> None:
        parts = [TopicPartition(self.topic, p) for p in self.owned]
        if parts:
            self.consumer.pause(parts)
        self.reposition.update(self.owned)

    def _commit(self, positions: dict[int, int]) -> None:
        offsets = [TopicPartition(self.topic, p, o) for p, o in positions.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Redis holds the position: a commit lost only makes the group's lag look longer
            log_event(log, logging.WARNING, "suppressions sync commit failed", error=str(exc))

    # --- Redis away ------------------------------------------------------------------------------
    def _failed(self, exc: redis.RedisError) -> None:
        if _incurable(exc):
            self.error = f"redis refused the mirror: {exc}"
            raise SyncError(self.error) from None
        self.counts.failures += 1
        self.metrics.failures.inc()
        if not self._away:  # one line per outage
            log_event(log, logging.WARNING, "redis unavailable; waiting", error=str(exc))
        self._away = True
        self.metrics.up.set(0)
        self._backoff = min(MAX_BACKOFF_S, max(0.1, self._backoff * 2))

    def _recovered(self) -> None:
        if self._away:
            log_event(log, logging.INFO, "redis available again; catching up")
        self._away = False
        self._backoff = 0.0
        self.metrics.up.set(1)

    def _wait(self) -> None:
        """Wait before trying Redis again, serving the group meanwhile (paused partitions
        return nothing; rebalances are handled)."""
        deadline = time.monotonic() + self._backoff
        while not self._stop.is_set() and time.monotonic() < deadline:
            for m in self.consumer.consume(BATCH, min(0.2, self._backoff)):
                p = m.partition()
                if p is not None and m.error() is None and p in self.owned:
                    # assigned while Redis is away: read it again from Redis's position
                    self.reposition.add(p)
                    self.consumer.pause([TopicPartition(self.topic, p)])

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at >= 5.0 and self.owned:
            self._lag_at = now
            lag = records_behind(self.consumer, self.topic, self.owned)
            if lag is not None:
                self.metrics.lag.set(lag)


def records_behind(consumer: Consumer, topic: str, partitions: set[int]) -> int | None:
    """The partitions' end minus the consumer's position, summed (None: not known now)."""
    lag = 0
    try:
        tps = consumer.position([TopicPartition(topic, p) for p in partitions])
        for tp in tps:
            _low, high = consumer.get_watermark_offsets(tp, cached=True) or (0, 0)
            if tp.offset >= 0:
                lag += max(0, high - tp.offset)
    except KafkaException:
        return None
    return lag


class MirrorThread:
    """A worker's mirror (``suppressions_redis_url``): its own thread, started at once. An
    error waiting cannot cure stops the mirror, not the worker (classifying goes on): it is
    logged and ``streamer_redis_sync_up`` stays 0."""

    def __init__(self, mirror: RedisMirror) -> None:
        self.mirror = mirror
        self._thread = threading.Thread(target=self._run, name="redis-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.mirror.run()
        except SyncError as exc:
            log_event(log, logging.CRITICAL, "suppressions sync stopped", error=str(exc))
        except Exception as exc:
            self.mirror.error = f"{type(exc).__name__}: {exc}"
            log.exception("suppressions sync failed")

    def stop(self, timeout: float = 15.0) -> None:
        self.mirror.stop()
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {**self.mirror.status(), "error": self.mirror.error}


def start_mirror(
    settings: Settings, bootstrap: str, registry: CollectorRegistry, worker_id: str
) -> MirrorThread | None:
    """A worker's mirror, started, when ``suppressions_redis_url`` is set (else None)."""
    url = settings.suppressions_redis_url
    if not url:
        return None
    mirror = RedisMirror(
        settings, bootstrap, url, registry=registry, client_id=f"{worker_id}-redis-sync"
    )
    return MirrorThread(mirror)
