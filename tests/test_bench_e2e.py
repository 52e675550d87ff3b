"""``streamer bench e2e`` on a tiny run: the JSON it promises and the counts (never the speed)."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.config import Settings
from streamer.devkit.bench.e2e import percentile, window_rate
from streamer.kafka.admin import topic_partitions

STREAMER = [sys.executable, "-c", "from streamer.cli import main; main()"]


def test_window_rate_starts_when_the_group_is_stable() -> None:
    # 1,000 events over 1 s, then 4,000 more over the next 2 s.
    times = [1_000_000 + i for i in range(1000)] + [1_001_000 + i // 2 for i in range(4000)]
    whole = window_rate(times, None)
    assert whole.events == 5000 and abs(whole.seconds - 2.999) < 1e-9
    stable = window_rate(times, 1_001.0)  # the group was stable from t = 1,001.000 s
    assert stable.events == 4000 and stable.seconds == 1.999
    assert stable.stable_wait_s == 1.0
    # A group seen stable only near the end leaves too little to measure: whole window.
    late = window_rate(times, 1_002.9)
    assert late.events == 5000
    assert window_rate([], None).events_per_s == 0.0


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


@pytest.mark.long
def test_bench_e2e_tiny_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("STREAMER_CONFIG", None)
    env.update({"KAFKA_BOOTSTRAP": kafka_bootstrap, "STREAMER_STATE_DIR": str(tmp_path)})
    events = 3000
    args = (
        f"bench e2e --events {events} --partitions 2 --processes 2 --json --latency-seconds 1"
        " --timeout 120 --analytics-pairs 2"
    )
    proc = subprocess.run(
        [*STREAMER, *args.split()],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    for key in ("baseline_events_per_s", "streamer_events_per_s", "ratio", "p50_ms", "p99_ms"):
        assert isinstance(result[key], float | int) and result[key] >= 0, key
    assert result["baseline_events_per_s"] > 0 and result["streamer_events_per_s"] > 0
    # The ratio is of the unrounded rates (the nested phases keep them).
    assert result["ratio"] == round(
        result["streamer"]["events_per_s"] / result["baseline"]["events_per_s"], 4
    )
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["rss_mb"] > 10 and len(result["rss_mb_per_worker"]) == 2
    # Every input came out, and the check that says so ran.
    assert result["events"] == events and result["outputs"] >= events
    assert result["missing"] == 0 and result["latency_missing"] == 0
    assert result["dead_letters"] == 0 and result["ok"] is True
    assert result["streamer"]["events"] == events and result["baseline"]["events"] == events
    assert result["latency_events"] >= 1 and 900 <= result["mean_record_bytes"] <= 1800
    # --processes 2: both process counts ran on the same input; where the latency went.
    assert result["processes"] == 2 and result["single_process_events_per_s"] > 0
    # Of unrounded rates too; the one-process rate is only reported rounded to 0.1/s.
    scaling = result["streamer_events_per_s"] / result["single_process_events_per_s"]
    assert abs(result["scaling"] - scaling) < 0.002
    # CPU per event, measured for the pass-through and both streamer runs (a tiny run may be
    # over within one poll of the watermarks: then the result says so).
    assert result["baseline_cpu_us"] > 0
    if result["streamer_cpu_us"] and result["analytics_off_cpu_us"]:
        cpu_ratio = result["baseline_cpu_us"] / result["streamer_cpu_us"]
        assert abs(result["cpu_ratio"] - cpu_ratio) < 0.01
    else:
        assert any("too few events" in n for n in result["notes"])
    # The analytics' cost: the median of two pairs of runs, with and without.
    assert result["analytics_pairs"] == 2 and len(result["analytics_costs"]) == 2
    assert result["analytics_cost"] == round(statistics.median(result["analytics_costs"]), 4)
    assert len(result["analytics_cpu_costs"]) == 2
    assert result["analytics_on_events_per_s"] > 0 and result["analytics_off_events_per_s"] > 0
    stages = result["latency_stages"]
    assert list(stages) == ["produce", "fetch", "queue", "process", "deliver"]
    for name in ("fetch", "queue", "process", "deliver"):
        assert stages[name]["batches"] > 0, name
        assert 0 <= stages[name]["mean_ms"] <= stages[name]["p99_ms"] or stages[name]["p99_ms"] == 0
    # The benchmark's topics are gone.
    settings = Settings(bootstrap=kafka_bootstrap, files=[Path(os.devnull)])
    assert not [
        t for t in topic_partitions(settings, kafka_bootstrap) if t.startswith("streamer.bench.")
    ]


def test_soak_records_are_all_new_and_well_formed() -> None:
    """The soak's input is hostile on purpose: no value repeats, yet every record is valid."""
    from streamer.devkit.bench.soak import hostile_messages
    from streamer.records import decode_record

    records = [decode_record(m.value) for m in hostile_messages(2_000, seed=1)]
    for field in ("site", "egress_source", "egress_pool", "queue", "recipient"):
        assert len({r[field] for r in records}) == len(records), field
    assert len({r["response"]["content"] for r in records}) == len(records)
    assert {r["type"] for r in records} == {"Bounce", "Delivery"}


def test_watermarks_ask_again_while_a_leader_moves() -> None:
    """A new topic on a loaded broker answers NOT_LEADER_FOR_PARTITION for a moment (seen on
    CI-like load in the demo): the count asks again; any other error goes up at once."""
    from confluent_kafka import KafkaError, KafkaException

    from streamer.devkit.harness import Watermarks

    class Flaky:
        def __init__(self, errors: list[int]) -> None:
            self.errors = errors

        def get_watermark_offsets(self, tp: object, timeout: float, cached: bool) -> tuple:
            if self.errors:
                raise KafkaException(KafkaError(self.errors.pop(0)))
            return 0, 7

    marks = Watermarks.__new__(Watermarks)
    marks._parts = {"t": [0, 1]}
    marks.consumer = Flaky([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert marks.total(["t"]) == 14
    marks.consumer = Flaky([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    try:
        marks.total(["t"])
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    else:
        raise AssertionError("an authorization failure must not be retried")


def test_soak_replay_spans_hours_with_every_recipient_new() -> None:
    """The replay shape: hard bounces whose event time rises over the hours asked (jitter of a
    few seconds), every recipient, site and response new, tenants/pools/sources cycling."""
    from streamer.analytics.windows import event_time_ms
    from streamer.devkit.bench.soak import replay_messages
    from streamer.records import decode_record

    records = [decode_record(m.value) for m in replay_messages(20_000, seed=1, hours=5.5)]
    for field in ("site", "recipient", "id"):
        assert len({r[field] for r in records}) == len(records), field
    assert len({r["response"]["content"] for r in records}) == len(records)
    assert {r["type"] for r in records} == {"Bounce"}
    assert len({r["egress_pool"] for r in records}) == 50
    assert len({r["egress_source"] for r in records}) == 500
    assert len({r["queue"].split(":")[1].split("@")[0] for r in records}) == 1000
    times = [event_time_ms(r) for r in records]
    assert all(t is not None for t in times)
    span = max(t for t in times if t) - min(t for t in times if t)
    assert 5.4 * 3_600_000 < span <= 5.5 * 3_600_000 + 5_000
    assert all(b - a > -5_000 for a, b in itertools.pairwise(times) if a and b)
