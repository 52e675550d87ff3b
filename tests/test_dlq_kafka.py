"""`streamer dlq` (list, summary, show, replay) and `streamer replay --since` against the real
broker. The dead letters are made by the real pipeline from malformed records read from Kafka."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclOperation,
    AdminClient,
    ResourceType,
)
from test_tail import ROOT, STREAMER

from streamer.classifier import ReloadableClassifier
from streamer.config import Settings
from streamer.devkit import security
from streamer.devkit.broker import BrokerState, free_port
from streamer.kafka.clients import consumer_config, producer_config
from streamer.kafka.deadletters import REPLAYED_FROM
from streamer.kafka.topics import TopicRecord, read_topic
from streamer.pipeline import Pipeline
from streamer.timespec import parse_instant

DAY1 = parse_instant("2026-12-01T10:00:00Z")
DAY2 = parse_instant("2026-12-02T10:00:00Z")
#: Answers of a broker that has just started, for a group it did not know.
COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def _env(settings: Settings) -> dict[str, str]:
    """The CLI's environment: the test's broker, rules, state dir and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.pop("KAFKA_BOOTSTRAP", None)
    env.update(
        STREAMER_BOOTSTRAP=str(settings.bootstrap),
        STREAMER_FILES=json.dumps([str(f) for f in settings.files]),
        STREAMER_STATE_DIR=str(settings.state_dir),
        STREAMER_INPUT_TOPIC=settings.input_topic,
        STREAMER_DLQ_TOPIC=str(settings.dlq_topic),
        PYTHONPATH=str(ROOT),
    )
    return env


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STREAMER, *args],
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _produce(settings: Settings, topic: str, items: list[tuple[bytes, bytes]], **kw: int) -> None:
    assert settings.bootstrap
    producer = Producer(producer_config(settings, settings.bootstrap))
    for key, value in items:
        producer.produce(topic, value, key, **kw)
    assert producer.flush(30) == 0


def _read_messages(settings: Settings, topic: str, count: int) -> list[object]:
    """``count`` messages of ``topic`` as real consumer messages (what the worker hands on)."""
    assert settings.bootstrap
    consumer = Consumer(consumer_config(settings, settings.bootstrap, group_id="t-read"))
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    got: list[object] = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        got += [m for m in consumer.consume(1000, 0.5) if m.error() is None]
    consumer.close()
    assert len(got) == count
    return got


def _dead_letters(
    settings: Settings, source: str, dlq: str, items: list[tuple[bytes, bytes]], now: float
) -> None:
    """Send ``items`` to ``source``, run them through the pipeline (clock ``now``) and produce
    its dead letters to ``dlq``, as the worker does."""
    before = sum(1 for _ in read_topic(settings, str(settings.bootstrap), source))
    _produce(settings, source, items)
    messages = _read_messages(settings, source, before + len(items))
    fresh = sorted(messages, key=lambda m: (m.partition(), m.offset()))  # type: ignore[attr-defined]
    pipeline = Pipeline(
        ReloadableClassifier(list(settings.files)),
        output_topic="unused",
        dlq_topic=dlq,
        clock=lambda: now,
    )
    outputs, stats = pipeline.process(fresh)  # type: ignore[arg-type]
    letters = [o for o in outputs if o.topic == dlq]
    mine = {(k, v) for k, v in items}
    letters = [o for o in letters if (o.key, o.value) in mine]
    assert len(letters) == len(items), stats.dlq
    assert settings.bootstrap
    producer = Producer(producer_config(settings, settings.bootstrap))
    for o in letters:
        producer.produce(o.topic, o.value, o.key, headers=o.headers)
    assert producer.flush(30) == 0


def _malformed(prefix: str, kind: str, n: int) -> list[tuple[bytes, bytes]]:
    values = {
        "not-json": b"this is not json",
        "not-object": b"[1, 2]",
        "missing-type": b'{"id": "x"}',
        "not-utf8": b"\xff\xfe\x00binary\x1b[31m",
    }
    return [(f"{prefix}-{kind}-{i}".encode(), values[kind]) for i in range(n)]


@pytest.fixture
def dlq_setup(kafka_settings: Settings, new_topic: Callable[..., str]) -> tuple[Settings, str, str]:
    """An input topic and its dead-letter topic, with 11 dead letters on two days:
    day 1: 3 not-json, 2 not-object; day 2: 4 missing-type, 1 not-json, 1 not-utf8."""
    source, dlq = new_topic(partitions=2), new_topic(partitions=2)
    settings = kafka_settings.model_copy(update={"input_topic": source, "dlq_topic": dlq})
    day1 = _malformed("a", "not-json", 3) + _malformed("a", "not-object", 2)
    day2 = _malformed("b", "missing-type", 4) + _malformed("b", "not-json", 1)
    day2 += _malformed("b", "not-utf8", 1)
    _dead_letters(settings, source, dlq, day1, DAY1)
    _dead_letters(settings, source, dlq, day2, DAY2)
    return settings, source, dlq


def test_summary_counts_by_reason_and_source_with_filters(
    dlq_setup: tuple[Settings, str, str],
) -> None:
    settings, source, dlq = dlq_setup
    res = _cli(settings, "dlq", "summary", dlq, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["read"], doc["selected"]) == (11, 11)
    assert doc["sources"] == {source: 11}
    assert list(doc["reasons"]) == ["missing-type", "not-json", "not-object", "not-utf8"]
    assert doc["reasons"]["not-json"] == {
        "count": 4,
        "first": "2026-12-01T10:00:00.000Z",
        "last": "2026-12-02T10:00:00.000Z",
        "sources": {source: 4},
    }
    assert [r["count"] for r in doc["reasons"].values()] == [4, 4, 2, 1]

    res = _cli(settings, "dlq", "summary", dlq, "--json", "-r", "not-json", "--since", "2026-12-02")
    doc = json.loads(res.stdout)
    assert (doc["read"], doc["selected"], list(doc["reasons"])) == (11, 1, ["not-json"])

    # the default topic is the configured dlq_topic; text form
    res = _cli(settings, "dlq", "summary", "--until", "2026-12-01T23:59:59Z")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{dlq}: 5 dead letters (11 read)"
    assert re.match(
        r"\s+not-json\s+3\s+2026-12-01T10:00:00.000Z\s+2026-12-01T10:00:00.000Z$", lines[2]
    )
    assert lines[-1] == f"  by source topic: {source} 5"


def test_list_prints_each_dead_letter_with_its_source(
    dlq_setup: tuple[Settings, str, str],
) -> None:
    settings, source, dlq = dlq_setup
    res = _cli(settings, "dlq", "list", dlq, "--json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 11
    assert "11 dead letters listed (11 read)" in res.stderr
    # every source offset names the input record it came from, each one once
    originals = {
        (r.partition, r.offset): r.key
        for r in read_topic(settings, str(settings.bootstrap), source)
    }
    assert {(r["source_partition"], r["source_offset"]) for r in rows} == set(originals)
    for r in rows:
        assert r["source_topic"] == source
        assert originals[r["source_partition"], r["source_offset"]].decode() == r["key"]
    assert Counter(r["reason"] for r in rows if r["time"].startswith("2026-12-02")) == {
        "missing-type": 4,
        "not-json": 1,
        "not-utf8": 1,
    }

    res = _cli(settings, "dlq", "list", "-r", "not-object", "-r", "not-utf8", "--limit", "2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and "2 dead letters listed" in res.stderr
    assert all(
        re.match(
            rf"\d+:\d+  2026-12-0\dT10:00:00.000Z  not-(object|utf8)  "
            rf"{re.escape(source)}/\d+/\d+  key=",
            x,
        )
        for x in lines
    )


def test_show_prints_headers_and_a_safe_payload(dlq_setup: tuple[Settings, str, str]) -> None:
    settings, source, dlq = dlq_setup
    rows = [json.loads(x) for x in _cli(settings, "dlq", "list", "--json").stdout.splitlines()]
    binary = next(r for r in rows if r["reason"] == "not-utf8")
    res = _cli(settings, "dlq", "show", f"{binary['partition']}:{binary['offset']}")
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\ufffd" not in res.stdout
    assert "  reason:  not-utf8" in res.stdout
    assert (
        f"  source:  {source}/{binary['source_partition']}/{binary['source_offset']}" in res.stdout
    )
    assert "streamer.dlq.time: 2026-12-02T10:00:00.000Z" in res.stdout
    assert res.stdout.rstrip().endswith(
        "payload (14 bytes, not JSON, shown escaped):\n\\xff\\xfe\\x00binary\\x1b[31m"
    )

    listed = next(r for r in rows if r["reason"] == "not-object")
    res = _cli(settings, "dlq", "show", "-p", str(listed["partition"]), "-o", str(listed["offset"]))
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("payload (6 bytes, JSON):\n[\n  1,\n  2\n]")

    res = _cli(settings, "dlq", "show", "0:999")
    assert res.returncode == 1
    assert res.stderr.strip().startswith(f"no record at {dlq} 0:999 (partition 0 holds offsets 0..")
    assert len(res.stderr.splitlines()) == 1
    res = _cli(settings, "dlq", "show", "zero")
    assert (res.returncode, res.stderr.strip()) == (
        2,
        "configuration error: 'zero' is not PARTITION:OFFSET (e.g. 0:42)",
    )


def test_failure_modes_are_one_line(kafka_settings: Settings) -> None:
    res = _cli(kafka_settings, "dlq", "list", "no.such.topic")
    assert (res.returncode, res.stderr.strip()) == (1, "topic 'no.such.topic' does not exist")
    res = _cli(kafka_settings, "dlq", "summary", "x", "--since", "yesterday")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "configuration error: --since: 'yesterday' is neither a time "
        "(2026-12-06T14:00:00Z, 2026-12-06) nor a duration (30m, 2h, 1d)"
    )
    res = _cli(kafka_settings, "replay", "--since", "2h", "--topic", "no.such.topic")
    assert (res.returncode, res.stderr.strip()) == (1, "topic 'no.such.topic' does not exist")
    # no broker at the address: one line, exit 75 (waiting may help), before any client starts
    address = f"127.0.0.1:{free_port()}"
    for args in (["dlq", "summary"], ["dlq", "replay"], ["replay", "--since", "1h"]):
        res = _cli(kafka_settings, *args, "-b", address)
        assert (res.returncode, res.stderr.strip()) == (
            75,
            f"kafka: Kafka at {address} does not answer: nothing accepts connections",
        ), args
    res = _cli(kafka_settings, "replay")
    assert (res.returncode, res.stderr.strip()) == (
        2,
        "configuration error: --since TIME|DURATION is required",
    )


def _replayed(settings: Settings, topic: str) -> list[TopicRecord]:
    return [
        r for r in read_topic(settings, str(settings.bootstrap), topic) if r.header(REPLAYED_FROM)
    ]


def test_replay_dry_run_then_replay_each_once_into_the_source_topic(
    dlq_setup: tuple[Settings, str, str],
) -> None:
    settings, source, dlq = dlq_setup
    res = _cli(settings, "dlq", "replay", "--dry-run", "-r", "not-json")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 5 and all(x.endswith(f"not-json  -> {source}") for x in lines[:4])
    assert lines[-1] == (
        f"would replay 4 dead letters of 11 read from {dlq} (7 not selected); to: {source} 4; "
        "group streamer-dlq-replay (dry run: nothing produced or committed)"
    )
    assert _replayed(settings, source) == []
    res = _cli(settings, "dlq", "replay", "--to", "no.such.topic")
    assert (res.returncode, res.stderr.strip()) == (
        1,
        "replay target topic 'no.such.topic' does not exist (--to TOPIC?)",
    )

    res = _cli(settings, "dlq", "replay", "-r", "not-json", "--until", "2026-12-01T12:00:00Z")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("replayed 3 dead letters of ")
    res = _cli(settings, "dlq", "replay", "-r", "not-json")  # the same group carries on
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("replayed 1 dead letters of ")
    res = _cli(settings, "dlq", "replay", "-r", "not-json")
    assert res.stdout.startswith("replayed 0 dead letters of 0 read")

    replayed = _replayed(settings, source)
    assert len(replayed) == 4
    letters = {
        (r.partition, r.offset): r for r in read_topic(settings, str(settings.bootstrap), dlq)
    }
    for r in replayed:
        origin = (r.header(REPLAYED_FROM) or b"").decode().rsplit("/", 2)
        assert origin[0] == dlq
        letter = letters[int(origin[1]), int(origin[2])]
        assert (r.key, r.value) == (letter.key, letter.value) and r.value == b"this is not json"
        assert not any(k.startswith("streamer.dlq.") for k, _ in r.headers)

    # still malformed: the pipeline dead-letters them again, traceable to the first dead letter
    every = _read_messages(
        settings, source, len(read_topic(settings, str(settings.bootstrap), source))
    )
    again = [m for m in every if dict(m.headers() or []).get(REPLAYED_FROM)]  # type: ignore[attr-defined]
    outputs, _ = Pipeline(
        ReloadableClassifier(list(settings.files)), output_topic="unused", dlq_topic=dlq
    ).process(again)  # type: ignore[arg-type]
    assert len(outputs) == 4
    for o in outputs:
        names = dict(o.headers or [])
        assert names["streamer.dlq.reason"] == b"not-json"
        assert names[REPLAYED_FROM].decode().startswith(f"{dlq}/")


def _replay_setup(
    kafka_settings: Settings, new_topic: Callable[..., str], total: int
) -> tuple[Settings, str, str]:
    """``total`` dead letters (3 partitions) and an empty target topic."""
    source, dlq, target = new_topic(partitions=2), new_topic(partitions=3), new_topic(partitions=2)
    settings = kafka_settings.model_copy(update={"input_topic": source, "dlq_topic": dlq})
    _dead_letters(settings, source, dlq, _malformed("k", "not-json", total), DAY1)
    return settings, dlq, target


def _start_replay(settings: Settings, args: list[str], at_least: int) -> subprocess.Popen[str]:
    """A replay process, once its progress line says it replayed ``at_least``."""
    proc = subprocess.Popen(
        [*STREAMER, *args], env=_env(settings), stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    progress = ""
    while time.monotonic() < deadline:
        progress = proc.stderr.readline()
        found = re.match(r"dlq replay: replayed (\d+),", progress)
        if found and int(found[1]) >= at_least:
            return proc
    proc.kill()
    proc.wait(10)
    pytest.fail(f"no progress from the replay; last line {progress!r}")


def _assert_each_replayed_once(settings: Settings, dlq: str, target: str, total: int) -> None:
    counts = Counter(r.header(REPLAYED_FROM) for r in _replayed(settings, target))
    assert len(counts) == total and set(counts.values()) == {1}
    assert {
        (f"{dlq}/{r.partition}/{r.offset}").encode()
        for r in read_topic(settings, str(settings.bootstrap), dlq)
    } == set(counts)


def test_replay_killed_midway_resumes_and_replays_each_exactly_once(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    total = 300
    settings, dlq, target = _replay_setup(kafka_settings, new_topic, total)
    args = ["dlq", "replay", "--to", target, "--batch-size", "10", "--rate", "100"]
    proc = _start_replay(settings, args, at_least=50)
    os.kill(proc.pid, signal.SIGKILL)  # most likely inside a transaction: the rate limit is
    proc.wait(10)
    assert 50 <= len(_replayed(settings, target)) < total

    res = _cli(settings, *args[:-2])
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("replayed ")
    _assert_each_replayed_once(settings, dlq, target, total)
    # a topic written in transactions (as a worker's DLQ is with exactly-once), aborted ones
    # included: read to its end over the transaction markers, aborted records left out
    res = _cli(settings, "dlq", "summary", target, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["read"] == total


def test_a_second_replay_in_the_same_group_fences_the_first(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    total = 200
    settings, dlq, target = _replay_setup(kafka_settings, new_topic, total)
    args = ["dlq", "replay", "--to", target, "--batch-size", "10", "--rate", "50"]
    first = _start_replay(settings, args, at_least=10)
    try:
        res = _cli(settings, *args[:-2])
        assert res.returncode == 0, res.stderr
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 1
    lines = [x for x in err.splitlines() if not x.startswith("dlq replay: ")]  # progress
    assert len(lines) == 1 and lines[0].startswith("replay: "), err
    assert "fenced" in lines[0]
    _assert_each_replayed_once(settings, dlq, target, total)


def _commit_offsets(consumer: Consumer, topic: str, offsets: dict[int, int]) -> None:
    """Commit, asking again while a new group's coordinator is still being chosen."""
    for _ in range(20):
        try:
            consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
            return
        except KafkaException as exc:
            if exc.args[0].code() not in COORDINATOR_NOT_READY:
                raise
            time.sleep(0.5)
    pytest.fail("the group's coordinator never accepted the commit")


def _commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    assert settings.bootstrap
    c = Consumer(consumer_config(settings, settings.bootstrap, group_id=group))
    _commit_offsets(c, topic, offsets)
    c.close()


def _committed(settings: Settings, group: str, topic: str, parts: int) -> dict[int, int]:
    assert settings.bootstrap
    c = Consumer(consumer_config(settings, settings.bootstrap, group_id=group))
    got = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=20)
    c.close()
    return {tp.partition: tp.offset for tp in got}


@pytest.mark.long
def test_replay_since_moves_a_stopped_group_to_the_offsets_for_that_time(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=2)
    # recent times: records older than the broker's retention (24 h) may be deleted by its
    # retention check (every minute) while the test runs, between two partitions' writes
    base = (int(time.time()) - 600) * 1000  # ms, a whole second
    for p in (0, 1):
        for i in range(10):
            _produce(
                kafka_settings,
                topic,
                [(b"k", b"{}")],
                partition=p,
                timestamp=base + i * 1000 + p * 500,
            )
    group = f"g-{topic}"
    _commit(kafka_settings, group, topic, {0: 10, 1: 8})
    since = datetime.fromtimestamp(base / 1000 + 5, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_instant(since) * 1000 == base + 5000

    res = _cli(
        kafka_settings, "replay", "--since", since, "--group", group, "--topic", topic, "--dry-run"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"group {group}, topic {topic}, since {since[:-1]}.000Z:",
        "  partition 0: 10 -> 5  (5 read again, 5 to read)",
        "  partition 1: 8 -> 5  (3 read again, 5 to read)",  # 1 is 500 ms later: 4.5 s < 5 s
        "would move 2 partitions: 8 records read again, 10 to read (dry run: nothing changed)",
    ]
    assert _committed(kafka_settings, group, topic, 2) == {0: 10, 1: 8}

    res = _cli(kafka_settings, "replay", "--since", since, "--group", group, "--topic", topic)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "moved 2 partitions: 8 records read again, 10 to read"
    assert kafka_settings.bootstrap
    probe = Consumer(consumer_config(kafka_settings, kafka_settings.bootstrap, group_id="probe"))
    expected = probe.offsets_for_times([TopicPartition(topic, p, base + 5000) for p in (0, 1)], 20)
    probe.close()
    assert _committed(kafka_settings, group, topic, 2) == {
        tp.partition: tp.offset for tp in expected
    }

    # a time after the last record: the end of each partition
    res = _cli(
        kafka_settings, "replay", "--since", "2099-01-01", "--group", group, "--topic", topic
    )
    assert res.returncode == 0, res.stderr
    assert _committed(kafka_settings, group, topic, 2) == {0: 10, 1: 10}


def test_replay_since_refuses_while_the_group_has_live_members(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1)
    _produce(kafka_settings, topic, [(b"k", b"{}")] * 3)
    group = f"live-{topic}"
    assert kafka_settings.bootstrap
    member = Consumer(
        consumer_config(
            kafka_settings,
            kafka_settings.bootstrap,
            group_id=group,
            **{"session.timeout.ms": 10_000},
        )
    )
    member.subscribe([topic])
    deadline = time.monotonic() + 60
    while not member.assignment() and time.monotonic() < deadline:
        member.poll(0.2)
    _commit_offsets(member, topic, {0: 3})
    try:
        args = ["replay", "--since", "1d", "--group", group, "--topic", topic]
        res = _cli(kafka_settings, *args)
        assert (res.returncode, res.stdout) == (1, "")
        assert res.stderr.strip() == (
            f"group {group} has 1 live members (state STABLE): stop its workers first (or --force)"
        )
        res = _cli(kafka_settings, *args, "--dry-run")
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[-1] == (
            "would move 1 partitions: 3 records read again, 3 to read; "
            "the group has 1 live members (dry run: nothing changed)"
        )
        res = _cli(kafka_settings, *args, "--force")
        assert res.returncode == 1
        assert res.stderr.strip() == (
            f"group {group}: the broker refused the move: Broker: Unknown member "
            "(the group has live members: stop its workers first)"
        )
        assert _committed(kafka_settings, group, topic, 1) == {0: 3}
    finally:
        member.close()
    res = _cli(kafka_settings, *args)
    assert res.returncode == 0, res.stderr
    assert _committed(kafka_settings, group, topic, 1) == {0: 0}


def test_replay_over_sasl_ssl_needs_exactly_the_documented_acls(
    secure_broker: BrokerState, kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    """A worker's principal may not read dead letters; READ on the DLQ and the replay's group,
    WRITE on the target and WRITE/DESCRIBE on the transactional id ``<group>.<dlq>`` suffice."""
    total = 20
    settings, dlq, target = _replay_setup(kafka_settings, new_topic, total)
    admin = AdminClient({"bootstrap.servers": str(kafka_settings.bootstrap), "log_level": 0})
    name, password = f"u-{uuid.uuid4().hex[:10]}", "pw-" + secrets.token_urlsafe(18)
    security.upsert_users(admin, {name: password})
    principal = f"User:{name}"
    security.create_acls(admin, security.worker_acls(principal, settings))
    assert secure_broker.secure_bootstrap and secure_broker.security_dir
    env = _env(settings)
    env.update(
        STREAMER_BOOTSTRAP=secure_broker.secure_bootstrap,
        STREAMER_SECURITY_PROTOCOL="SASL_SSL",
        STREAMER_SASL_MECHANISM="SCRAM-SHA-512",
        STREAMER_SASL_USERNAME=name,
        STREAMER_SASL_PASSWORD=password,
        STREAMER_SSL_CA_LOCATION=str(
            security.SecurityFiles(Path(secure_broker.security_dir)).ca_cert
        ),
    )
    args = [*STREAMER, "dlq", "replay", "--to", target]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)

    refused = (
        f"kafka: Kafka at {secure_broker.secure_bootstrap} does not allow {principal} READ on "
        f"topic '{dlq}', WRITE on topic '{target}', READ on group 'streamer-dlq-replay'; "
        "check the principal's ACLs"
    )
    deadline = time.monotonic() + 60  # new users and ACLs reach the broker a moment later
    while (res := run()).stderr.strip() != refused and time.monotonic() < deadline:
        time.sleep(1)
    assert (res.returncode, res.stderr.strip()) == (77, refused)

    allow = security.allow
    txn_id = "streamer-dlq-replay." + dlq
    security.create_acls(
        admin,
        [
            allow(principal, ResourceType.TOPIC, dlq, AclOperation.READ),
            allow(principal, ResourceType.GROUP, "streamer-dlq-replay", AclOperation.READ),
            allow(principal, ResourceType.TOPIC, target, AclOperation.WRITE),
            allow(principal, ResourceType.TRANSACTIONAL_ID, txn_id, AclOperation.WRITE),
            allow(principal, ResourceType.TRANSACTIONAL_ID, txn_id, AclOperation.DESCRIBE),
        ],
    )
    deadline = time.monotonic() + 60
    while (res := run()).returncode == 77 and time.monotonic() < deadline:
        time.sleep(1)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"replayed {total} dead letters of {total} read")
    _assert_each_replayed_once(settings, dlq, target, total)
