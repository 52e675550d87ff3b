"""``streamer demo`` end to end against the test broker, and its accounting on its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from streamer.classifier import Classifier
from streamer.config import Settings
from streamer.deadletter import DLQ_REASON
from streamer.devkit.demo import DemoInput, DemoTopics, _check, expected_labels
from streamer.devkit.sample import BUNDLED_SAMPLE_SIZE
from streamer.kafka.admin import topic_partitions
from streamer.records import MALFORMED_REASONS, enrich

STREAMER = [sys.executable, "-c", "from streamer.cli import main; main()"]


def test_demo_input_has_every_reason() -> None:
    demo = DemoInput.build()
    assert len(demo.records) == BUNDLED_SAMPLE_SIZE
    assert set(demo.malformed) == set(MALFORMED_REASONS)
    assert len(demo.messages) == BUNDLED_SAMPLE_SIZE + sum(demo.malformed.values())
    # Malformed messages are spread through the stream, not bunched at one end.
    positions = [i for i, m in enumerate(demo.messages) if m.kind.startswith("malformed:")]
    assert positions[0] > 10 and positions[-1] < len(demo.messages) - 10


@pytest.mark.long
def test_demo_runs_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("STREAMER_CONFIG", None)
    env.update({"KAFKA_BOOTSTRAP": kafka_bootstrap, "STREAMER_STATE_DIR": str(tmp_path)})
    proc = subprocess.run(
        [*STREAMER, "demo", "--timeout", "120", "--examples", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Result: every input accounted for" in out
    assert f"{BUNDLED_SAMPLE_SIZE:,} records out" in out
    dlq = 2 * len(MALFORMED_REASONS)
    assert f"Dead letters: {dlq}" in out
    for reason in MALFORMED_REASONS:
        assert f"{reason} 2" in out
    classified = re.search(r"Classified events: ([\d,]+)", out)
    passed = re.search(r"Passed through unchanged \(not classifiable\): ([\d,]+)", out)
    assert classified is not None and passed is not None
    counts = [int(m[1].replace(",", "")) for m in (classified, passed)]
    assert sum(counts) == BUNDLED_SAMPLE_SIZE and min(counts) > 100
    assert "InvalidRecipient" in out and '"classification": {' in out
    assert "streamer_events_in_total" in out and "rules version" in out
    # The analytics: rates per provider from the stats topic, and the rule gaps.
    assert "Deliverability per mailbox provider" in out
    assert re.search(r"^\s*google\s+[\d,]+\s+\d+\.\d%", out, re.M), out
    assert "Top rule gaps" in out
    # the suppressions by reason (which ones the stage has folded by then may vary)
    assert re.search(
        r"^  suppressions: \d+ addresses in \S+( \(\d+ [a-z-]+(, \d+ [a-z-]+)*\))?$", out, re.M
    )
    # the list as KumoMTA sees it: the Redis key and the RCPT TO refusal of a few addresses
    shown = re.findall(r"^    streamer:suppressed:(\S+)\n      RCPT TO refused: (.*)$", out, re.M)
    assert 1 <= len(shown) <= 3, out
    for address, refusal in shown:
        assert refusal.startswith(f"550 5.1.1 <{address}> is on the suppression list ("), out
    # It left nothing behind: its topics (input, output, dead letters, stats, suppressions).
    names = set(re.findall(r"(kumomta\.\S+\.demo-[\w-]+)", out))
    assert len(names) == 5, names
    settings = Settings(bootstrap=kafka_bootstrap, files=[Path(os.devnull)])
    left = set(topic_partitions(settings, kafka_bootstrap))
    internal = {f"{n}.{s}" for n in names if ".suppressions." in n for s in ("events", "state")}
    assert len(internal) == 2 and not (names | internal) & left


def test_accounting_detects_loss_and_wrong_reasons(
    kafka_settings: Settings, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """The demo's check is what makes its exit status mean something: it must catch a loss."""
    demo = DemoInput.build()
    settings = Settings(bootstrap=kafka_bootstrap, state_dir=kafka_settings.state_dir)
    labels = expected_labels(settings, demo)
    topics = DemoTopics(
        input="unused",
        output=new_topic(2),
        dlq=new_topic(1),
        stats="unused",
        suppressions="unused",
        group="unused",
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    classifier = Classifier.from_files(settings.files)
    records = list(demo.records.values())
    for rec in records[1:]:  # the first record is lost
        producer.produce(topics.output, orjson.dumps(enrich(dict(rec), classifier)))
    reasons = list(demo.malformed.elements())
    for reason in reasons[:-1]:  # one dead letter missing...
        producer.produce(topics.dlq, b"x", headers=[(DLQ_REASON, reason.encode())])
    producer.produce(topics.dlq, b"x", headers=[(DLQ_REASON, b"processing-error")])  # ...one wrong
    assert producer.flush(30) == 0

    result = _check(settings, kafka_bootstrap, topics, demo, labels)
    assert result.missing == 1
    assert result.unexpected == 0 and result.duplicates == 0
    assert result.dead_letters["processing-error"] == 1
    assert not result.accounted(demo.malformed)
    assert not result.label_mismatches  # the outputs that exist carry the right labels
