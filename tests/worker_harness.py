"""Helpers for the worker's Kafka tests: a real ``streamer worker`` subprocess, producing and
reading topics with confluent-kafka, scraping the worker's Prometheus endpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streamer.config import load_settings
from streamer.devkit.broker import free_port
from streamer.devkit.harness import produce_all
from streamer.devkit.sample import SampleMessage
from streamer.kafka import topics
from streamer.kafka.topics import TopicRecord

RULES_V1 = """
[rules]
InvalidRecipient = ["(?i)does not exist", "(?i)user unknown", "(?i)no such user"]
QuotaIssues = ["(?i)mailbox (is )?(full|over its storage quota)", "(?i)quota exceeded"]
SpamBlock = ["(?i)spam", "(?i)unsolicited"]
"""


def produce(
    bootstrap: str, topic: str, messages: Iterable[SampleMessage], *, rate: float | None = None
) -> int:
    """Produce every message (acks=all) and wait for delivery; returns the count."""
    count, _seconds = produce_all(
        load_settings(bootstrap=bootstrap), bootstrap, topic, messages, rate=rate
    )
    return count


def topic_size(bootstrap: str, topic: str) -> int:
    """Messages currently in the topic (sum of high - low watermarks)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "size-probe"})
    try:
        md = c.list_topics(topic, timeout=10)
        total = 0
        for p in md.topics[topic].partitions:
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            except KafkaException:  # a topic just created: no leader yet, count it as empty
                continue
            total += hi - lo
        return total
    finally:
        c.close()


_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def uncommitted(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that ``group`` has not committed (its lag), asked of the group
    coordinator; retried while a coordinator that just came up is still loading."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        parts = [
            TopicPartition(topic, p)
            for p in c.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        for _attempt in range(20):
            try:
                committed = c.committed(parts, timeout=10)
                break
            except KafkaException as exc:
                err = exc.args[0]
                if not (err.retriable() or err.code() in _COORDINATOR_MOVING):
                    raise
                time.sleep(0.5)
        else:
            committed = c.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            _low, high = c.get_watermark_offsets(tp, timeout=10, cached=False)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


def stable_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], tuple[int, int]]:
    """Per partition, (last stable offset, end of the log): how far a ``read_committed``
    reader gets, which the first offset of the oldest open transaction holds back."""
    ends = {
        level: Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "lso-probe", "isolation.level": level}
        )
        for level in ("read_committed", "read_uncommitted")
    }
    offsets: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        for topic in topics:
            md = ends["read_committed"].list_topics(topic, timeout=10)
            for p in md.topics[topic].partitions:
                tp = TopicPartition(topic, p)
                _, stable = ends["read_committed"].get_watermark_offsets(tp, timeout=10)
                _, end = ends["read_uncommitted"].get_watermark_offsets(tp, timeout=10)
                offsets[(topic, p)] = (stable, end)
        return offsets
    finally:
        for c in ends.values():
            c.close()


def open_transactions(bootstrap: str, topics: Iterable[str]) -> list[tuple[str, int]]:
    """Partitions a transaction still holds open: their last stable offset is behind the end
    of the log."""
    return [tp for tp, (stable, end) in stable_offsets(bootstrap, topics).items() if stable < end]


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[TopicRecord]:
    """Every committed message of ``topic`` present now."""
    return topics.read_topic(load_settings(bootstrap=bootstrap), bootstrap, topic, timeout)


def latest_per_key(bootstrap: str, topic: str) -> dict[bytes | None, bytes | None]:
    """A compacted topic as its consumers see it: the latest value per key (None: tombstone)."""
    return {r.key: r.value for r in read_topic(bootstrap, topic)}


def stats_totals(bootstrap: str, topic: str) -> tuple[Counter[str], Counter[str]]:
    """Record types and labels summed over the latest stats row per key."""
    types: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for value in latest_per_key(bootstrap, topic).values():
        row = orjson.loads(value or b"{}")
        types.update(row.get("counts", {}))
        labels.update(row.get("labels", {}))
    return types, labels


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_story(log: str) -> str:
    """A failed stop's story: the lines that say why a process stopped or what went wrong (a
    tail of the log misses a child that stopped before the others)."""
    keys = (" ERROR ", " WARNING ", "stopping why", "stopped", "exit", "Traceback")
    return "\n".join(line for line in log.splitlines() if any(k in line for k in keys))[-6000:]


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
#: The worker's start-up line, text or JSON: the ports it really listens on.
_STARTED = re.compile(
    r"worker starting.*?\bmetrics_port\"?[=:](\d+).*?\bweb_port\"?[=:](\d+)", re.MULTILINE
)


class WorkerProcess:
    """One ``streamer worker`` subprocess with its own log file and metrics port.

    The metrics port asked for is picked free before the start, but another process may take it
    first (the worker then listens elsewhere and says so): ``metrics_port`` and ``web_port`` are
    the ports the worker's start-up line reports. A supervisor (``--processes``) picks its own
    ports before its children start: for it they are the ports asked for.
    """

    def __init__(
        self,
        bootstrap: str,
        workdir: Path,
        *,
        name: str,
        input_topic: str,
        output_topic: str,
        group: str,
        rules: Path,
        args: Iterable[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.asked_metrics_port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.cmd = [
            sys.executable,
            "-c",
            "from streamer.cli import main; main()",
            "worker",
            "--bootstrap",
            bootstrap,
            "--input-topic",
            input_topic,
            "--output-topic",
            output_topic,
            "--group-id",
            group,
            "--files",
            str(rules),
            "--worker-id",
            name,
            "--metrics-port",
            str(self.asked_metrics_port),
            "--web-port",
            "0",
            "--state-dir",
            str(workdir / "state"),
            *args,
        ]
        analytics = {  # each worker's own analytics topics, unless the test names them
            "STREAMER_STATS_TOPIC": f"{input_topic}.stats",
            "STREAMER_SUPPRESSIONS_TOPIC": f"{input_topic}.suppressions",
        }
        self.env = {**os.environ, **analytics, **(env or {})}
        for var in ("STREAMER_CONFIG", "KAFKA_BOOTSTRAP", "STREAMER_BOOTSTRAP"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it for its lifetime)
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def supervised(self) -> bool:
        return "--processes" in self.cmd

    def reported_ports(self) -> tuple[int, int] | None:
        """(metrics_port, web_port) from the start-up line; None before it was logged."""
        found = _STARTED.search(self.log())
        return (int(found.group(1)), int(found.group(2))) if found else None

    def wait_started(self, timeout: float = 60.0) -> tuple[int, int]:
        """The start-up line's (metrics_port, web_port), once the worker logged it."""

        def started() -> bool:
            assert self.alive(), f"{self.name} exited:\n{self.log()[-3000:]}"
            return self.reported_ports() is not None

        wait_until(started, timeout, f"{self.name}'s start-up line")
        ports = self.reported_ports()
        assert ports is not None
        return ports

    @property
    def metrics_port(self) -> int:
        return self.asked_metrics_port if self.supervised else self.wait_started()[0]

    def metrics(self) -> dict[str, float]:
        """``{"name{labels}": value}`` from the worker's /metrics ({} if not up yet)."""
        if self.supervised:
            port = self.asked_metrics_port
        else:
            ports = self.reported_ports()
            if ports is None:
                return {}
            port = ports[0]
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = _METRIC_LINE.match(line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        return out

    def metric(self, name: str, default: float = 0.0) -> float:
        return self.metrics().get(name, default)

    def wait_assigned(self, n: int | None = None, timeout: float = 60.0) -> None:
        def ok() -> bool:
            assert self.alive(), f"{self.name} exited:\n{self.log()[-3000:]}"
            got = self.metrics().get("streamer_assigned_partitions", 0)
            return got > 0 if n is None else got == n

        wait_until(ok, timeout, f"{self.name} to be assigned {n or 'some'} partitions")

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        wait_until(lambda: self.log().count(text) >= count, timeout, f"{self.name} to log {text!r}")

    def rss_mb(self) -> float:
        return psutil.Process(self.pid).memory_info().rss / 1e6

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log()[-3000:]}") from None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def named_workers(
    bootstrap: str, tmp_path: Path, env: dict[str, str] | None = None
) -> Iterator[Callable[..., WorkerProcess]]:
    """``start(name, input, output, *args)``: a worker of group ``g-<input>`` with the test rules
    (the same name again: the same worker id, as a restart); all of them cleaned up after."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1)
    started: list[WorkerProcess] = []

    def start(name: str, inp: str, out: str, *args: str) -> WorkerProcess:
        w = WorkerProcess(
            bootstrap,
            tmp_path,
            name=name,
            input_topic=inp,
            output_topic=out,
            group=f"g-{inp}",
            rules=rules,
            args=("--log-format", "text", *args),
            env=env,
        ).start()
        started.append(w)
        return w

    try:
        yield start
    finally:
        for w in started:
            w.cleanup()


def kill_one_of_two(
    bootstrap: str,
    start: Callable[..., WorkerProcess],
    topics: tuple[str, str],
    args: tuple[str, ...],
    records: list[SampleMessage],
    rate: float,
) -> tuple[WorkerProcess, WorkerProcess]:
    """Workers "a" and "b" on ``topics`` (input, output); the first third of the records,
    consumed and output; the second third produced at ``rate`` a second while "a" is killed -9
    (records in flight, uncommitted, are read again by whoever takes its partitions over);
    "a" started again (the same worker id: its transactions are fenced). Returns (a, b); the
    last third is the caller's."""
    inp, out = topics
    third = len(records) // 3
    a = start("a", inp, out, *args)
    b = start("b", inp, out, *args)
    a.wait_assigned()
    b.wait_assigned()
    produce(bootstrap, inp, records[:third])
    wait_until(lambda: topic_size(bootstrap, out) >= third, 60, "the first third")
    feeding = threading.Thread(
        target=produce, args=(bootstrap, inp, records[third : 2 * third]), kwargs={"rate": rate}
    )
    feeding.start()
    # the kill lands once the second third is being worked on, while more is still fed
    wait_until(lambda: topic_size(bootstrap, out) > third, 30, "the second third under way")
    a.kill9()
    feeding.join(30)
    return start("a", inp, out, *args), b
