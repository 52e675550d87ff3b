"""Running ``streamer worker`` processes and moving records in and out of topics.

Shared by ``streamer demo`` and ``streamer bench e2e``: both start real worker subprocesses
(configured through ``STREAMER_*`` environment variables, so any flag layout of the worker
command works), feed them messages, and watch or read what comes out. Every wait here is bounded
in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streamer.config import Settings
from streamer.devkit.broker import free_port
from streamer.devkit.sample import SampleMessage
from streamer.kafka.clients import consumer_config, producer_config
from streamer.kafka.produce import TokenBucket
from streamer.kafka.topics import ReadError
from streamer.kafka.transient import TRANSIENT


class HarnessError(ReadError):
    """A worker died, a wait timed out, or Kafka refused records; the message says which."""


def produce_all(
    settings: Settings,
    bootstrap: str,
    topic: str,
    messages: Iterable[SampleMessage],
    *,
    rate: float | None = None,
) -> tuple[int, float]:
    """Produce and wait for every acknowledgement; returns (count, seconds). Fails on any error.

    ``rate`` (messages/s) paces the sending (the token bucket of ``streamer produce --rate``).
    """
    # log_level 3: retry warnings (a fresh broker's coordinator still loading) are noise here;
    # real failures reach on_delivery.
    producer = Producer(producer_config(settings, bootstrap, log_level=3))
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    bucket = TokenBucket(rate) if rate is not None else None
    count = 0
    started = time.monotonic()
    for m in messages:
        if bucket is not None:
            bucket.take()
        while True:
            try:
                producer.produce(topic, m.value, m.key, headers=m.headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    seconds = time.monotonic() - started
    if left or errors:
        raise HarnessError(
            f"producing to {topic}: {left} undelivered, {len(errors)} failed"
            + (f" (first: {errors[0]})" if errors else "")
        )
    return count, seconds


WATERMARK_ATTEMPTS = 5


class Watermarks:
    """Sums of high watermarks of new topics (= records written, as they start at offset 0)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.consumer = Consumer(
            consumer_config(settings, bootstrap, group_id=f"bench-watch-{uuid.uuid4().hex[:8]}")
        )
        self._parts: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._parts:
            md = self.consumer.list_topics(topic, timeout=10)
            self._parts[topic] = sorted(md.topics[topic].partitions)
        return self._parts[topic]

    def total(self, topics: Sequence[str]) -> int:
        n = 0
        for topic in topics:
            for p in self.partitions(topic):
                n += max(self._high(TopicPartition(topic, p)), 0)
        return n

    def _high(self, tp: TopicPartition) -> int:
        """The high watermark; a partition whose leader is moving (a new topic on a loaded
        broker answers NOT_LEADER_FOR_PARTITION for a moment) is asked again, a few times."""
        for attempt in range(WATERMARK_ATTEMPTS):
            try:
                return int(self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1])
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                retriable = isinstance(error, KafkaError) and (
                    error.retriable() or error.code() in TRANSIENT
                )
                if not retriable or attempt == WATERMARK_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("not reached")

    def close(self) -> None:
        self.consumer.close()


def wait_for_outputs(
    marks: Watermarks,
    topics: Sequence[str],
    expected: int,
    timeout: float,
    check: Callable[[], None],
    what: str,
    stall_timeout: float = 90.0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Poll high watermarks until ``expected`` records are out; bounded in time and on stalls.

    ``progress`` is told the count at every poll (the last time with the final count).
    """
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        n = marks.total(topics)
        if progress is not None:
            progress(n)
        if n >= expected:
            return n
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        elif now - last_change > stall_timeout:
            raise HarnessError(f"{what}: no progress for {stall_timeout:.0f}s at {n}/{expected}")
        if now > deadline:
            raise HarnessError(f"{what}: only {n}/{expected} records out after {timeout:.0f}s")
        check()
        time.sleep(0.25)


def worker_command() -> list[str]:
    """How to run ``streamer worker`` with this interpreter (the venv's script when present)."""
    script = Path(sys.executable).with_name("streamer")
    if script.exists():
        return [str(script), "worker"]
    return [sys.executable, "-c", "from streamer.cli import main; main()", "worker"]


@dataclass
class WorkerSet:
    """W ``streamer worker`` processes with their own logs, metrics ports and state dirs."""

    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    metrics_ports: list[int]
    workdir: Path

    @classmethod
    def start(
        cls,
        bootstrap: str,
        in_topic: str,
        out_topic: str,
        dlq_topic: str,
        group: str,
        count: int,
        workdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> WorkerSet:
        procs, logs, ports = [], [], []
        for i in range(count):
            port = free_port()
            state = workdir / f"worker-{i}"
            state.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            env.update(
                {
                    "STREAMER_BOOTSTRAP": bootstrap,
                    "KAFKA_BOOTSTRAP": bootstrap,
                    "STREAMER_INPUT_TOPIC": in_topic,
                    "STREAMER_OUTPUT_TOPIC": out_topic,
                    "STREAMER_DLQ_TOPIC": dlq_topic,
                    "STREAMER_GROUP_ID": group,
                    "STREAMER_METRICS_PORT": str(port),
                    "STREAMER_WEB_PORT": str(free_port()),
                    "STREAMER_WORKER_ID": f"{group}-{i}",
                    "STREAMER_STATE_DIR": str(state),
                    # the analytics topics of this input, unless extra_env names others
                    "STREAMER_STATS_TOPIC": f"{in_topic}.stats",
                    "STREAMER_SUPPRESSIONS_TOPIC": f"{in_topic}.suppressions",
                    "PYTHONUNBUFFERED": "1",
                }
            )
            env.update(extra_env or {})
            log = workdir / f"worker-{i}.log"
            with open(log, "wb") as fh:
                procs.append(
                    subprocess.Popen(
                        worker_command(),
                        stdin=subprocess.DEVNULL,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=state,
                        start_new_session=True,  # a Ctrl-C of the bench is handled by us
                    )
                )
            logs.append(log)
            ports.append(port)
        return cls(procs, logs, ports, workdir)

    def check(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                raise HarnessError(
                    f"worker {i} exited with code {p.returncode}; last lines of {self.logs[i]}:\n"
                    + self.tail(i)
                )

    def tail(self, i: int, lines: int = 30) -> str:
        try:
            text = self.logs[i].read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def tails(self, lines: int = 15) -> str:
        """The last lines of every worker's log, for error messages."""
        return "\n".join(
            f"--- worker {i} ({self.logs[i]}):\n{self.tail(i, lines)}"
            for i in range(len(self.logs))
        )

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM (graceful: commit what was produced), SIGKILL after ``timeout``."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: list[int | None] = []
        for p in self.procs:
            try:
                codes.append(p.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                codes.append(None)
        return codes


def scrape_metrics(
    port: int, timeout: float = 5.0
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The worker's ``streamer_*`` samples by name (empty when the endpoint does not answer)."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("streamer_"):
                samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return samples
