"""``streamer report --topic``: the stats rows from the worker's stats topic and the number of
suppressed addresses from the compacted suppressions topic, on the session's real broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import report_input
from confluent_kafka import Producer
from typer.testing import CliRunner

from streamer.classifier import Classifier
from streamer.cli import _register, app
from streamer.config import Settings, shipped_rule_files
from streamer.inputs import expand_inputs
from streamer.report import read_inputs


def _produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in items:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def test_report_reads_the_stats_and_suppressions_topics(
    kafka_settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in report_input.records()))
    shipped = Classifier.from_files(shipped_rule_files())
    rows = read_inputs(expand_inputs([str(log)]), shipped).rows
    stats, suppressions = new_topic(partitions=2), new_topic(partitions=2)
    assert kafka_settings.bootstrap
    _produce(
        kafka_settings.bootstrap, stats, [(b"k%d" % i, orjson.dumps(r)) for i, r in enumerate(rows)]
    )
    # three recipients suppressed, one of them lifted since (a tombstone)
    _produce(
        kafka_settings.bootstrap,
        suppressions,
        [(b"a@x", b"{}"), (b"b@x", b"{}"), (b"c@x", b"{}"), (b"a@x", None)],
    )
    _register()
    out = tmp_path / "r.html"
    base = ["report", "--topic", stats, "-b", kafka_settings.bootstrap, "--period", "2m"]
    res = CliRunner().invoke(app, [*base, "--suppressions-topic", suppressions, "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    assert (
        f'<p id="suppressed"><strong>2</strong> addresses suppressed (on topic {suppressions})'
        in page
    )
    assert "<tr><td>acme</td><td class='n'>9</td><td class='n'>4</td>" in page
    assert "<td class='n'>25.00%</td><td>over the 0.3% limit</td>" in page
    assert '<table id="comparison-table">' in page

    # no suppressions topic: the number is unknown, and the page says why
    missing = f"{suppressions}.none"
    res = CliRunner().invoke(app, [*base, "--suppressions-topic", missing, "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    expected = f"Unknown: topic {missing}: not found on {kafka_settings.bootstrap}."
    assert f'<p id="suppressed">{expected}</p>' in page
