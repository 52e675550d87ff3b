"""Topic creation and JSONL replay against the real test broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from streamer.config import Settings
from streamer.kafka.admin import create_topics, default_topics, delete_topics, topic_partitions
from streamer.kafka.clients import admin_client, consumer
from streamer.kafka.produce import ProduceError, TokenBucket, produce_file, record_key

_SCRIPT = Path(sys.executable).parent / "streamer"
STREAMER = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from streamer.cli import main; main()"]
)


def _cli(settings: Settings, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.pop("KAFKA_BOOTSTRAP", None)
    env["STREAMER_BOOTSTRAP"] = str(settings.bootstrap)
    env["STREAMER_FILES"] = json.dumps([str(f) for f in settings.files])
    env["STREAMER_STATE_DIR"] = str(settings.state_dir)
    env.update(env_extra)
    return subprocess.run(
        [*STREAMER, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _consume_all(
    settings: Settings, topic: str, expected: int, timeout: float = 60.0
) -> list[tuple[bytes | None, bytes, int]]:
    """(key, value, partition) of ``expected`` messages read back from the start of ``topic``."""
    assert settings.bootstrap
    c = consumer(
        settings,
        settings.bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        **{"session.timeout.ms": 6000},
    )
    c.subscribe([topic])
    out: list[tuple[bytes | None, bytes, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.key(), msg.value() or b"", msg.partition()))
        # A little longer: anything beyond ``expected`` would be a duplicate.
        out.extend((m.key(), m.value() or b"", m.partition()) for m in c.consume(1000, 1.0))
    finally:
        c.close()
    return out


def test_create_topics_is_idempotent(kafka_settings: Settings) -> None:
    assert kafka_settings.bootstrap
    name = f"t.idem.{uuid.uuid4().hex[:8]}"
    first = create_topics(kafka_settings, kafka_settings.bootstrap, [name], partitions=3)
    assert first == {name: True}
    again = create_topics(kafka_settings, kafka_settings.bootstrap, [name], partitions=5)
    assert again == {name: False}
    assert topic_partitions(kafka_settings, kafka_settings.bootstrap)[name] == 3  # unchanged
    assert delete_topics(kafka_settings, kafka_settings.bootstrap, [name, "t.never.existed"]) == [
        name
    ]


def test_default_topics_include_dlq_and_non_classifiable_target(test_rules_file: Path) -> None:
    s = Settings(files=[test_rules_file], input_topic="in", non_classifiable="topic:other")
    analytics = [
        "kumomta.stats",
        "kumomta.stats.rates",  # the rollup's complaint rates (compacted)
        "kumomta.suppressions",
        "kumomta.suppressions.state",  # the suppression stage's changelog (compacted)
        "kumomta.stats.state",  # the stats rollup's changelog (compacted)
        "kumomta.suppressions.events",  # the suppression stage's events
        "kumomta.stats.partials",  # the workers' partial stats rows
    ]
    assert default_topics(s) == ["in", "kumomta.classified", "in.dlq", "other", *analytics]
    s = Settings(files=[test_rules_file], input_topic="in", output_topic="out", analytics=False)
    assert default_topics(s) == ["in", "out", "in.dlq"]


def test_cli_topics_create(kafka_settings: Settings) -> None:
    u = uuid.uuid4().hex[:8]
    names = {
        "STREAMER_INPUT_TOPIC": f"in.{u}",
        "STREAMER_OUTPUT_TOPIC": f"out.{u}",
        "STREAMER_NON_CLASSIFIABLE": f"topic:other.{u}",
        "STREAMER_PARTITIONS": "6",
        "STREAMER_STATS_TOPIC": f"stats.{u}",
        "STREAMER_SUPPRESSIONS_TOPIC": f"supp.{u}",
    }
    first = _cli(kafka_settings, "topics", "create", **names)
    assert first.returncode == 0, first.stderr
    topics = (f"in.{u}", f"out.{u}", f"in.{u}.dlq", f"other.{u}", f"stats.{u}", f"supp.{u}")
    topics += (f"stats.{u}.rates",)
    topics += (f"supp.{u}.events", f"supp.{u}.state", f"stats.{u}.partials", f"stats.{u}.state")
    for topic in topics:
        assert f"created  {topic}  partitions=6" in first.stdout
    second = _cli(kafka_settings, "topics", "create", **names)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("exists ") == 11 and "created" not in second.stdout
    assert kafka_settings.bootstrap
    parts = topic_partitions(kafka_settings, kafka_settings.bootstrap)
    assert parts[f"in.{u}.dlq"] == 6
    # the analytics topics keep the latest record per key: compacted
    admin = admin_client(kafka_settings, kafka_settings.bootstrap)
    for topic in topics:
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        config = admin.describe_configs([res])[res].result(timeout=10)
        policy = config["cleanup.policy"].value
        internal = topic.endswith((".events", ".partials"))  # deleted by time, not compacted
        compacted = topic.startswith(("stats.", "supp.")) and not internal
        assert policy == ("compact" if compacted else "delete"), topic


def _write_jsonl(path: Path, n: int) -> list[bytes]:
    """n records keyed by id (cycling over 37 ids), one without id, one malformed, blanks."""
    lines = [json.dumps({"id": f"msg-{i % 37}", "type": "Bounce", "seq": i}) for i in range(n)]
    lines += [json.dumps({"type": "Delivery", "seq": n}), '{"not json', "[1, 2]"]
    path.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\r\n")
    return [ln.encode() for ln in lines]


def test_produce_and_consume_back(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=4)
    sent = _write_jsonl(tmp_path / "in.jsonl", 500)
    assert kafka_settings.bootstrap
    result = produce_file(
        kafka_settings, kafka_settings.bootstrap, tmp_path / "in.jsonl", topic=topic
    )
    assert (result.lines, result.delivered, result.failed) == (len(sent), len(sent), 0)
    assert result.keyed == 500

    got = _consume_all(kafka_settings, topic, len(sent))
    assert Counter(v for _, v, _ in got) == Counter(sent)  # every line once, byte for byte
    for key, value, _ in got:
        assert key == record_key(value, "id")
    # One key, one partition: the events of a message stay in order.
    partitions_by_key: dict[bytes, set[int]] = {}
    for key, _, partition in got:
        if key is not None:
            partitions_by_key.setdefault(key, set()).add(partition)
    assert len(partitions_by_key) == 37
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert len({p for _, _, p in got}) > 1


def test_produce_rate_limit(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    sent = _write_jsonl(tmp_path / "in.jsonl", 197)
    assert kafka_settings.bootstrap
    rate = 400.0
    result = produce_file(
        kafka_settings,
        kafka_settings.bootstrap,
        tmp_path / "in.jsonl",
        topic=topic,
        rate=rate,
        key_field=None,
    )
    assert result.delivered == len(sent) and result.keyed == 0
    # The bucket lets at most burst + rate*t through in t seconds: a lower bound only.
    burst = TokenBucket(rate).burst
    assert result.seconds >= (len(sent) - burst) / rate


def test_token_bucket_paces_on_a_fake_clock() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(100.0, burst=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        bucket.take()
    assert now[0] == 0.0  # the burst passes at once
    for _ in range(100):
        bucket.take()
    assert now[0] == pytest.approx(1.0)  # then 100 per second
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_record_key() -> None:
    assert record_key(b'{"id": "abc", "type": "Bounce"}', "id") == b"abc"
    assert record_key(b'{"id": 42}', "id") == b"42"
    assert record_key(b'{"id": true}', "id") is None
    assert record_key(b'{"other": 1}', "id") is None
    assert record_key(b"[1]", "id") is None
    assert record_key(b"{broken", "id") is None
    assert record_key(b'{"id": "abc"}', None) is None


def test_cli_produce_summary_and_failures(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic()
    good = tmp_path / "good.jsonl"
    sent = _write_jsonl(good, 50)
    ok = _cli(kafka_settings, "produce", str(good), "--topic", topic, "--rate", "1000")
    assert ok.returncode == 0, ok.stderr
    assert f"{len(sent)} records" in ok.stdout and f"{len(sent)} delivered, 0 failed" in ok.stdout

    # A record over the producer's message size limit is refused: counted, exit status 1.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "big", "pad": "x" * 1_200_000}) + "\n" + '{"id": "ok"}\n')
    failed = _cli(kafka_settings, "produce", str(bad), "--topic", topic)
    assert failed.returncode == 1, failed
    assert "1 delivered, 1 failed" in failed.stdout

    missing = _cli(kafka_settings, "produce", str(good), "--topic", f"missing.{uuid.uuid4().hex}")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    with pytest.raises(ProduceError, match="No such file"):
        produce_file(kafka_settings, str(kafka_settings.bootstrap), tmp_path / "nope.jsonl")
