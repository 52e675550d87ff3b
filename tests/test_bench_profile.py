"""``streamer bench profile``: how sampled stacks are put in the parts of a worker."""

from __future__ import annotations

import os
import time

from confluent_kafka import Producer

from streamer.devkit.bench.profile import GLUE, ThreadCpu, parse_raw, part_of

LOOP = "_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:80)"
PROCESS = "process (streamer/worker/stream.py:198);process (streamer/worker/processing.py:97)"
CHUNK = f"{PROCESS};send_chunk (streamer/worker/processing.py:124)"


def _stack(*frames: str) -> list[str]:
    return ";".join([LOOP, *frames]).split(";")


def test_the_innermost_frame_naming_a_part_decides() -> None:
    pipeline = _stack(
        CHUNK, "process (streamer/pipeline.py:210)", "decode (streamer/records.py:80)"
    )
    assert part_of(pipeline) == "pipeline"  # the pipeline's helpers are the pipeline's
    counted = _stack(
        CHUNK, "process (streamer/pipeline.py:210)", "observe (streamer/analytics/x.py:9)"
    )
    assert part_of(counted) == "analytics"
    send = _stack(
        CHUNK, "send (streamer/kafka/sink.py:180)", "_produce_from (streamer/kafka/sink.py:160)"
    )
    assert part_of(send) == "produce()"
    acks = _stack("poll_loop (streamer/worker/stream.py:220)", "poll (streamer/kafka/sink.py:190)")
    assert part_of(acks) == "delivery reports"
    assert part_of(_stack(CHUNK, "ack (streamer/worker/offsets.py:66)")) == "offsets"
    assert part_of(_stack(PROCESS, "record_batch (streamer/metrics/traffic.py:300)")) == "metrics"
    assert part_of(_stack(PROCESS)) == GLUE
    assert part_of(["_consume (streamer/kafka/source.py:140)"]) == "consume (fetch thread)"


def test_metrics_updated_by_a_stats_flush_are_the_flush_s() -> None:
    stack = _stack(
        "flush (streamer/worker/stats.py:90)", "record (streamer/metrics/deliverability.py:500)"
    )
    assert part_of(stack) == "stats flushes"


def test_raw_lines_are_summed_per_part() -> None:
    text = "\n".join(
        [
            f"{LOOP};{CHUNK};process (streamer/pipeline.py:210) 7",
            f"{LOOP};{CHUNK};process (streamer/pipeline.py:211) 3",
            f"{LOOP} 5",
            "",
            "garbage",
        ]
    )
    assert parse_raw(text) == {"pipeline": 10, GLUE: 5}


def test_thread_cpu_tells_librdkafka_threads_from_the_others() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    try:
        start = ThreadCpu(os.getpid()).read()
        deadline = time.thread_time() + 0.1
        while time.thread_time() < deadline:  # this thread works: the others' side grows
            pass
        rdk, other = ThreadCpu(os.getpid()).read()
        # /proc counts in clock ticks (10 ms): each reading may lag by one
        assert other - start[1] >= 0.08 and rdk >= start[0] >= 0
    finally:
        producer.flush(0)
