"""``streamer suppressions sync`` on the real broker and a real Redis (Debian's redis-server):
a live entry sets ``<prefix><recipient>``, a tombstone deletes it; killed with -9 mid-stream and
started again it loses nothing and ends equal to the topic; Redis stopped under it, it waits and
catches up, and a Redis that came back empty is filled again from the beginning."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from redis_server import RedisServer
from worker_harness import RULES_V1, WorkerProcess, latest_per_key, produce, wait_until

from streamer.config import Settings
from streamer.redis_mirror import RedisMirror, SyncError, positions_field

pytestmark = pytest.mark.timeout(180)

T0 = 1_790_000_000_000


def _entry(recipient: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "recipient": recipient,
            "label": "InvalidRecipient",
            "response": f"550 5.1.1 user unknown #{n}",
            "first_seen": T0 + n,
            "last_seen": T0 + n,
            "count": 1,
        }
    )


def _records(n: int, keys: int, seed: int) -> list[tuple[bytes, bytes | None]]:
    """``n`` records over ``keys`` recipients: entries, a quarter tombstones."""
    rnd = random.Random(seed)
    out: list[tuple[bytes, bytes | None]] = []
    for i in range(n):
        recipient = f"user{rnd.randrange(keys)}@example.com"
        value = None if rnd.random() < 0.25 else _entry(recipient, i)
        out.append((recipient.encode(), value))
    return out


def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]], per_second: float = 0
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, (key, value) in enumerate(records):
        producer.produce(topic, value, key)
        if per_second and i % 50 == 49:
            producer.flush(10)
            time.sleep(50 / per_second)
        producer.poll(0)
    assert producer.flush(30) == 0


def _mirrored(server: RedisServer, prefix: str) -> dict[bytes, bytes]:
    client = server.client()
    keys = [k for k in client.scan_iter(match=prefix.encode() + b"*") if k != prefix.encode()]
    return {k[len(prefix) :]: client.get(k) for k in keys}


def _expected(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    latest = latest_per_key(bootstrap, topic)
    return {k: v for k, v in latest.items() if k is not None and v is not None}


def _positions(server: RedisServer, prefix: str, topic: str, partitions: int) -> list[int]:
    held = server.client().hmget(prefix, [positions_field(topic, p) for p in range(partitions)])
    return [int(o) if o is not None else -1 for o in held]


def _ends(bootstrap: str, topic: str, partitions: int) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends-probe"})
    try:
        return [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        ]
    finally:
        c.close()


def _mirror_settings(settings: Settings, topic: str, prefix: str) -> Settings:
    """A mirror of ``topic`` in a group of its own, under ``prefix``."""
    update = {"suppressions_topic": topic, "group_id": f"g-{topic}"}
    return settings.model_copy(update={**update, "suppressions_redis_prefix": prefix})


class SyncProcess:
    """``streamer suppressions sync`` as its users run it."""

    def __init__(self, workdir: Path, bootstrap: str, topic: str, url: str, prefix: str) -> None:
        self.log_path = workdir / "sync.log"
        self.cmd = [
            sys.executable,
            "-c",
            "from streamer.cli import main; main()",
            "suppressions",
            "sync",
            "--redis",
            url,
            "--bootstrap",
            bootstrap,
        ]
        self.env = {
            "STREAMER_SUPPRESSIONS_TOPIC": topic,
            "STREAMER_SUPPRESSIONS_REDIS_PREFIX": prefix,
            "STREAMER_GROUP_ID": f"g-{topic}",
            "PATH": "/usr/bin:/bin",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SyncProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def syncs(tmp_path: Path) -> Iterator[Callable[..., SyncProcess]]:
    started: list[SyncProcess] = []

    def start(*args: str) -> SyncProcess:
        s = SyncProcess(tmp_path, *args).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.cleanup()


@pytest.mark.long
def test_sync_killed_mid_stream_resumes_and_ends_equal_to_the_topic(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    redis_server: RedisServer,
    syncs: Callable[..., SyncProcess],
) -> None:
    topic = new_topic(4)
    prefix = f"t:{topic}:"
    records = _records(6000, 400, seed=26)
    _produce(kafka_bootstrap, topic, records[:2000])
    first = syncs(kafka_bootstrap, topic, redis_server.url, prefix)

    def applied() -> int:
        assert first.proc is not None and first.proc.poll() is None, first.log()[-3000:]
        return sum(max(0, o) for o in _positions(redis_server, prefix, topic, 4))

    wait_until(lambda: applied() >= 2000, 60, "the sync to apply the first records")
    # the rest trickles in; the sync is killed once it has applied some of it
    feeding = threading.Thread(
        target=_produce, args=(kafka_bootstrap, topic, records[2000:]), kwargs={"per_second": 4000}
    )
    feeding.start()
    wait_until(lambda: applied() > 2000, 30, "the sync to apply trickling records", interval=0.02)
    first.kill9()
    at_kill = sum(max(0, o) for o in _positions(redis_server, prefix, topic, 4))
    feeding.join(60)
    assert 2000 < at_kill < len(records)  # killed mid-stream
    second = syncs(kafka_bootstrap, topic, redis_server.url, prefix)
    ends = _ends(kafka_bootstrap, topic, 4)

    def caught_up() -> bool:
        assert second.proc is not None and second.proc.poll() is None, second.log()[-3000:]
        return _positions(redis_server, prefix, topic, 4) == ends

    wait_until(caught_up, 60, "the restarted sync to reach the topic's end")
    expected = _expected(kafka_bootstrap, topic)
    assert _mirrored(redis_server, prefix) == expected
    assert 100 < len(expected) < 400  # both outcomes: live entries and deleted keys
    assert second.stop() == 0
    assert "suppressions sync stopped" in second.log()


def test_redis_stopped_under_the_mirror_it_waits_and_catches_up(
    kafka_bootstrap: str, kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """In process (as a worker runs it): Redis stopped, restarted with its snapshot, then
    restarted empty; every time the mirror ends equal to the topic."""
    server = RedisServer(tmp_path / "redis").start()
    topic = new_topic(2)
    prefix = "suppressed:"
    settings = _mirror_settings(kafka_settings, topic, prefix)
    mirror = RedisMirror(settings, kafka_bootstrap, server.url)
    thread = threading.Thread(target=mirror.run, daemon=True)
    thread.start()
    records = _records(900, 120, seed=7)
    try:

        def equal() -> bool:
            assert thread.is_alive(), mirror.error
            return _mirrored(server, prefix) == _expected(kafka_bootstrap, topic)

        _produce(kafka_bootstrap, topic, records[:300])
        wait_until(equal, 60, "the first third in Redis")
        server.stop()  # a clean stop: its snapshot keeps the mirror
        _produce(kafka_bootstrap, topic, records[300:600])
        wait_until(lambda: mirror.counts.failures > 0, 30, "the mirror to meet Redis away")
        assert mirror.metrics.up._value.get() == 0
        server.start()
        wait_until(equal, 60, "the second third in Redis after its restart")
        assert mirror.metrics.up._value.get() == 1

        server.stop()
        (server.folder / "dump.rdb").unlink()  # Redis comes back empty
        server.start()
        _produce(kafka_bootstrap, topic, records[600:])
        wait_until(equal, 60, "everything in the emptied Redis again")
        ends = _ends(kafka_bootstrap, topic, 2)
        wait_until(lambda: _positions(server, prefix, topic, 2) == ends, 30, "the positions")
    finally:
        mirror.stop()
        thread.join(30)
        server.stop()
    assert not thread.is_alive() and mirror.error is None
    total = mirror.metrics.writes.labels("set")._value.get()
    assert total + mirror.metrics.writes.labels("del")._value.get() == mirror.counts.applied


def test_hard_bounces_through_a_worker_end_up_in_redis_and_a_delivery_lifts_them(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """A worker with ``suppressions_redis_url``: its suppression stage writes the topic, its
    mirror writes Redis; a later Delivery's tombstone deletes the key."""
    from test_suppressions_kafka import _record

    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1)
    inp, out = new_topic(2), new_topic(2)
    prefix = f"t:{inp}:"
    worker = WorkerProcess(
        kafka_bootstrap,
        tmp_path,
        name="w",
        input_topic=inp,
        output_topic=out,
        group=f"g-{inp}",
        rules=rules,
        args=("--log-format", "text"),
        env={
            "STREAMER_SUPPRESSIONS_REDIS_URL": redis_server.url,
            "STREAMER_SUPPRESSIONS_REDIS_PREFIX": prefix,
        },
    ).start()
    try:
        worker.wait_assigned()
        produce(
            kafka_bootstrap,
            inp,
            [
                _record(1, "Ann@Example.com", T0, hard=True),
                _record(2, "ann@example.com", T0 + 10, hard=True),
                _record(3, "bob@example.com", T0 + 20, hard=True),
            ],
        )
        client = redis_server.client()

        def in_redis() -> dict[str, object]:
            assert worker.alive(), worker.log()[-3000:]
            found = {}
            for address in ("ann@example.com", "bob@example.com"):
                value = client.get(prefix + address)
                if value is not None:
                    found[address] = orjson.loads(value)["count"]
            return found

        wait_until(lambda: in_redis() == {"ann@example.com": 2, "bob@example.com": 1}, 60, "both")
        supp = f"{inp}.suppressions"
        assert _mirrored(redis_server, prefix) == _expected(kafka_bootstrap, supp)
        produce(kafka_bootstrap, inp, [_record(4, "ann@example.com", T0 + 30, hard=False)])
        wait_until(lambda: in_redis() == {"bob@example.com": 1}, 60, "ann's key deleted")
        assert worker.metric('streamer_redis_sync_writes_total{op="del"}') == 1
        assert worker.metric("streamer_redis_sync_up") == 1
    finally:
        assert worker.stop() == 0
        worker.cleanup()


def test_a_prefix_key_of_another_type_stops_the_mirror_in_one_line(
    kafka_bootstrap: str,
    kafka_settings: Settings,
    new_topic: Callable[..., str],
    redis_server: RedisServer,
) -> None:
    """What waiting cannot cure (here the positions' key holds a string) stops the mirror."""
    topic = new_topic(1)
    prefix = f"t:{topic}:"
    redis_server.client().set(prefix, b"not a hash")
    _produce(kafka_bootstrap, topic, _records(5, 5, seed=1))
    settings = _mirror_settings(kafka_settings, topic, prefix)
    mirror = RedisMirror(settings, kafka_bootstrap, redis_server.url)
    with pytest.raises(SyncError) as raised:
        mirror.run()
    assert str(raised.value).startswith("redis refused the mirror: WRONGTYPE")
    assert mirror.counts.applied == 0
