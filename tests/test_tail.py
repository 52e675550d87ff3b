"""`streamer tail` and `streamer produce` of KumoMTA log files against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import zstandard
from confluent_kafka import Producer

from streamer.config import Settings
from streamer.kafka.produce import produce_file
from streamer.kafka.tail import as_json_line, record_label, tail

STREAMER = [sys.executable, "-m", "streamer"]
ROOT = Path(__file__).resolve().parent.parent


def _records(n: int) -> list[dict[str, object]]:
    labels = ["InvalidRecipient", "QuotaIssues"]
    return [
        {"id": f"m{i}", "type": "Bounce", "bounce_classification": labels[i % 2]} for i in range(n)
    ]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.pop("KAFKA_BOOTSTRAP", None)
    env["STREAMER_BOOTSTRAP"] = str(settings.bootstrap)
    env["STREAMER_FILES"] = json.dumps([str(f) for f in settings.files])
    env["STREAMER_STATE_DIR"] = str(settings.state_dir)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [*STREAMER, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_helpers() -> None:
    assert as_json_line(b'{"a": 1,\n "b": 2}')[0] == b'{"a":1,"b":2}'
    assert as_json_line(b"not json")[0] == b'"not json"'
    assert record_label({"classification": {"label": "X"}}) == "X"
    assert record_label({"bounce_classification": "Y"}) == "Y"
    assert record_label("text") is None


def test_produce_a_zstd_log_folder_then_tail_it(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=2)
    folder = tmp_path / "logs"
    folder.mkdir()
    data = b"".join(orjson.dumps(r) + b"\n" for r in _records(10))
    (folder / "segment-1").write_bytes(zstandard.ZstdCompressor().compress(data))
    assert kafka_settings.bootstrap
    result = produce_file(kafka_settings, kafka_settings.bootstrap, [str(folder)], topic=topic)
    assert (result.delivered, result.failed) == (10, 0)

    res = _cli(kafka_settings, "tail", topic, "--from-beginning", "--max", "10", "--timeout", "60")
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(r["id"] for r in got) == sorted(f"m{i}" for i in range(10))

    res = _cli(
        kafka_settings, "tail", topic, "--from-beginning", "--label", "QuotaIssues",
        "--timeout", "8",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(got) == 5 and {r["bounce_classification"] for r in got} == {"QuotaIssues"}
    assert "5 records printed (10 read)" in res.stderr


def test_tail_follows_from_the_end_and_stops_on_timeout(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=1)
    old = tmp_path / "old.jsonl"
    old.write_bytes(b'{"id": "old"}\n')
    assert kafka_settings.bootstrap
    produce_file(kafka_settings, kafka_settings.bootstrap, old, topic=topic)
    lines: list[bytes] = []
    timeout = 3.0
    started = time.monotonic()
    result = tail(kafka_settings, kafka_settings.bootstrap, topic, lines.append, timeout=timeout)
    assert result.printed == 0 and lines == []  # from the end: the old record is not shown
    # It returned (a tail that ignored its timeout would run into the test's own), and not
    # before its deadline: a lower bound from the setting, which no load can break.
    assert time.monotonic() - started >= timeout

    missing = _cli(kafka_settings, "tail", "no.such.topic.here", "--timeout", "5")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].endswith("(create it: streamer topics create)")


def test_tail_follows_records_that_arrive_after_it_started(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    """``streamer tail`` (from the end) prints what is produced once it runs, in order, and
    stops after ``--max``. No sleep: records are produced one by one until it printed five."""
    topic = new_topic(partitions=1)
    assert kafka_settings.bootstrap
    producer = Producer({"bootstrap.servers": kafka_settings.bootstrap})

    def send(ident: str) -> None:
        producer.produce(topic, orjson.dumps({"id": ident}))
        producer.flush(10)

    send("before")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.pop("KAFKA_BOOTSTRAP", None)
    env.update(STREAMER_BOOTSTRAP=kafka_settings.bootstrap, PYTHONPATH=str(ROOT))
    env["STREAMER_FILES"] = json.dumps([str(f) for f in kafka_settings.files])
    proc = subprocess.Popen(
        [*STREAMER, "tail", topic, "--max", "5", "--timeout", "90"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = 0
        while proc.poll() is None and sent < 600:  # bounded: at most a minute of records
            send(f"new-{sent}")
            sent += 1
            time.sleep(0.1)  # pacing only: the loop ends on what tail does
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    got = [json.loads(line)["id"] for line in out.splitlines()]
    assert len(got) == 5 and "before" not in got
    first = int(got[0].removeprefix("new-"))
    assert got == [f"new-{i}" for i in range(first, first + 5)], "in order, none skipped"
    assert err.strip().splitlines()[-1] == "5 records printed (5 read)"
