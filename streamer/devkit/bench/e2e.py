"""End-to-end benchmark: the streamer worker against a raw confluent-kafka pass-through.

Phases, all against the same broker in the same run:

1. **produce** N realistic records (``streamer.devkit.sample``, ~1.4 KB each, key = message id) to a
   fresh P-partition input topic;
2. **baseline**: W processes of a raw confluent-kafka consume→produce loop (no parsing) copy the
   input to their own output topic, one consumer group;
3. **streamer**: W ``streamer worker`` processes with the default configuration classify the same
   input into another output topic;
4. **latency**: fresh topics, W fresh workers, records offered at a fixed rate of half the
   measured streamer capacity; latency = output append time − the moment we called produce();
5. **memory**: peak RSS of every worker process (and its children), sampled with psutil.

How throughput is measured. Every output topic is created with
``message.timestamp.type=LogAppendTime``, so each output record carries the broker's time of
acknowledging it. The input is fully written before a phase starts, so the work is consuming and
processing only. The window runs from the first output append (the first consumed record has just
gone through: the first batch's latency is a few ms) — or, with several processes, from the moment
the consumer group was seen stable with all of them (events before that were processed amid
rebalancing and are left out) — to the last output append; rate = events appended in that
window / window length. The baseline is measured the same way, so the ratio compares like with
like. While a phase runs the benchmark only polls high watermarks (cheap), so it does not take CPU
from the processes it measures; it reads the outputs afterwards.

A run is valid only when every input came out: each streamer output is parsed and matched to its
input by ``(id, type, num_attempts)``; a missing record fails the run (duplicates, allowed by
at-least-once delivery, are reported).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import psutil
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streamer.config import Settings, rollup_stage_topics, suppression_stage_topics
from streamer.devkit.bench import stages
from streamer.devkit.console import Say, say
from streamer.devkit.harness import (
    HarnessError,
    Watermarks,
    WorkerSet,
    produce_all,
    wait_for_outputs,
)
from streamer.devkit.sample import SampleMessage, generate_records, record_identity, to_message
from streamer.kafka.admin import delete_topics, topic_partitions, wait_for_topics
from streamer.kafka.clients import admin_client, consumer_config, producer_config
from streamer.kafka.topics import TopicRecord, read_topic

#: Granularity of the latency run's offered load.
PACE_TICK_S = 0.002
#: Start of the paced latency run left out of the percentiles (see ``run_latency``).
LATENCY_SETTLE_S = 2.0
Identity = tuple[str, str, int]


#: Event-time density of the benchmark's records: a busy MTA's log (records per second). The
#: stats windows count records per minute of event time, so a sparse replay (the bundled
#: sample's 4/s) would make every record its own stats row; live traffic fills few.
LIVE_RATE = 20_000.0


class BenchError(HarnessError):
    """The benchmark could not complete (a process died, a phase timed out, records were lost)."""


@dataclass(frozen=True)
class BenchBroker:
    """What every phase of a run shares: the broker, its watermarks, the time a phase may
    take, and how many workers (and processes each) a phase runs."""

    settings: Settings
    bootstrap: str
    marks: Watermarks
    timeout: float
    workers: int
    processes: int = 1


@dataclass(frozen=True)
class PhaseTopics:
    input: str
    output: str
    dlq: str


@dataclass(frozen=True)
class LatencyLoad:
    """The latency run's offered load: ``count`` timed records at ``rate`` per second."""

    rate: float
    count: int
    seed: int


@dataclass
class _Plan:
    """One run's choices and places: sizes, topics by role, scratch folder, RSS sampler."""

    events: int
    partitions: int
    seed: int
    latency_seconds: float
    analytics_pairs: int
    run_id: str
    topics: dict[str, str]
    workdir: Path
    sampler: RssSampler
    say: Say
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class PhaseRate:
    events: int  # events appended inside the measured window
    seconds: float
    events_per_s: float
    total_window_s: float  # first to last append, rebalances included
    stable_wait_s: float | None  # first output to stable group (several processes), else None


class BaselineRun(NamedTuple):
    rate: PhaseRate
    cpu_us: float  # CPU µs per event (``CpuMeter``)


class StreamerRun(NamedTuple):
    """One run of the `streamer worker` processes over the whole input."""

    rate: PhaseRate
    outputs: list[TopicRecord]
    dead_letters: list[TopicRecord]
    exit_codes: list[int | None]
    cpu_us: float  # CPU µs per event (``CpuMeter``)


class LatencyResult(NamedTuple):
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    stages: dict[str, dict[str, float]]  # stage -> mean and p99 ms (``bench.stages``)


class Speed(NamedTuple):
    events_per_s: float
    cpu_us: float  # CPU µs per event


class AnalyticsPair(NamedTuple):
    """Two runs on the same input, one with analytics and one without."""

    on: Speed
    off: Speed


@dataclass
class AnalyticsCost:
    """The pairs of runs with and without analytics, and what the analytics cost in each."""

    pairs: list[AnalyticsPair]
    costs: list[float]  # 1 - rate on / rate off
    cpu_costs: list[float]  # 1 - CPU per event off / on


@dataclass
class E2EResult:
    events: int
    partitions: int
    workers: int
    produce_events_per_s: float
    baseline_events_per_s: float
    streamer_events_per_s: float
    ratio: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    latency_rate_per_s: float
    latency_events: int
    rss_mb: float  # the largest peak RSS of one process (a worker, or a child of --processes)
    rss_mb_per_worker: list[float]  # each worker's process tree (supervisor and children)
    outputs: int
    missing: int
    duplicates: int
    dead_letters: int
    latency_missing: int
    mean_record_bytes: float
    baseline: PhaseRate
    streamer: PhaseRate
    #: The same workers with analytics = false, on the same input, in the same run: the median
    #: over ``analytics_pairs`` runs, each paired with a run with analytics (the first being the
    #: ``streamer`` run), alternately before and after it, so drift in the machine's load
    #: weighs on both sides.
    analytics_off_events_per_s: float = 0.0
    #: The median of the runs with analytics that were paired with one without.
    analytics_on_events_per_s: float = 0.0
    #: 1 - (analytics on / analytics off): the share of throughput the analytics cost, the
    #: median over the pairs (each pair's in ``analytics_costs``).
    analytics_cost: float = 0.0
    analytics_costs: list[float] = field(default_factory=list)
    analytics_pairs: int = 1
    #: Worker processes per `streamer worker` (``--processes``).
    processes: int = 1
    #: With several processes: their rate over one process's, same input, same run.
    single_process_events_per_s: float = 0.0
    scaling: float = 0.0
    #: CPU µs per event (every thread of the processes; ``CpuMeter``) and the ratio of CPU per
    #: event, pass-through over streamer: the throughput ratio without the machine's noise.
    baseline_cpu_us: float = 0.0
    streamer_cpu_us: float = 0.0
    analytics_off_cpu_us: float = 0.0
    cpu_ratio: float = 0.0
    #: 1 - (CPU per event analytics off / on), the median over the pairs (each pair's in
    #: ``analytics_cpu_costs``); ``analytics_off_cpu_us`` is the median without analytics.
    analytics_cpu_cost: float = 0.0
    analytics_cpu_costs: list[float] = field(default_factory=list)
    #: Latency run: stage -> mean and p99 ms (``streamer.devkit.bench.stages``).
    latency_stages: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.latency_missing == 0 and self.dead_letters == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def table(self) -> str:
        b, s = self.baseline, self.streamer
        rows = [
            ("events", f"{self.events:,} (~{self.mean_record_bytes:,.0f} B each)"),
            (
                "partitions / workers / processes",
                f"{self.partitions} / {self.workers} / {self.processes} per worker",
            ),
            ("produce (bench producer)", f"{self.produce_events_per_s:,.0f} events/s"),
            (
                "baseline pass-through",
                f"{self.baseline_events_per_s:,.0f} events/s ({b.events:,} in {b.seconds:.2f}s)",
            ),
            (
                "streamer worker",
                f"{self.streamer_events_per_s:,.0f} events/s ({s.events:,} in {s.seconds:.2f}s)",
            ),
            ("ratio streamer / baseline", f"{self.ratio:.3f}"),
            (
                "CPU per event",
                f"streamer {self.streamer_cpu_us:.1f} µs, analytics off "
                f"{self.analytics_off_cpu_us:.1f} µs, pass-through {self.baseline_cpu_us:.1f} µs:"
                f" ratio {self.cpu_ratio:.3f}",
            ),
            (
                "analytics off (same input)",
                f"{self.analytics_off_events_per_s:,.0f} events/s against "
                f"{self.analytics_on_events_per_s:,.0f} with (medians of {self.analytics_pairs}"
                f" pairs): analytics cost {100 * self.analytics_cost:.1f}% of throughput "
                f"({_percents(self.analytics_costs)}), {100 * self.analytics_cpu_cost:.1f}% of "
                f"CPU per event ({_percents(self.analytics_cpu_costs)})",
            ),
            (
                "scaling (processes)",
                f"{self.scaling:.2f}x one process ({self.single_process_events_per_s:,.0f}/s)"
                if self.processes > 1
                else "n/a (one process)",
            ),
            (
                f"latency at {self.latency_rate_per_s:,.0f}/s",
                f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms"
                f" ({self.latency_events:,} events)",
            ),
            ("where latency goes", stages.table(self.latency_stages)),
            (
                "peak RSS",
                f"{self.rss_mb:.0f} MB largest process; per worker tree: "
                + (", ".join(f"{m:.0f} MB" for m in self.rss_mb_per_worker) or "n/a"),
            ),
            (
                "verified",
                f"{self.outputs:,} outputs, {self.missing} missing, {self.duplicates} duplicates,"
                f" {self.dead_letters} dead letters, {self.latency_missing} missing in latency run",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"note: {n}" for n in self.notes]
        lines.append("result: " + ("OK" if self.ok else "FAILED (records lost)"))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Kafka helpers
# --------------------------------------------------------------------------------------------


def create_bench_topics(
    settings: Settings, bootstrap: str, topics: dict[str, bool], partitions: int
) -> None:
    """Create topics; ``{name: log_append_time}`` — output topics take the broker's clock."""
    admin = admin_client(settings, bootstrap)
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=settings.replication_factor,
            config={"message.timestamp.type": "LogAppendTime"} if log_append else {},
        )
        for name, log_append in topics.items()
    ]
    for name, fut in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            fut.result(timeout=60)
        except KafkaException as exc:
            raise BenchError(f"cannot create topic {name}: {exc}") from exc
    wait_for_topics(settings, bootstrap, topics, timeout=60)


class GroupWatch(threading.Thread):
    """Notes when a consumer group is first seen stable with ``members`` members, all assigned."""

    def __init__(self, settings: Settings, bootstrap: str, group: str, members: int) -> None:
        super().__init__(daemon=True, name=f"group-watch-{group}")
        self.admin = admin_client(settings, bootstrap)
        self.group = group
        self.members = members
        self.stable_at: float | None = None  # wall clock, seconds
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set() and self.stable_at is None:
            with contextlib.suppress(Exception):
                desc = self.admin.describe_consumer_groups([self.group], request_timeout=5)[
                    self.group
                ].result(timeout=5)
                assigned = [m for m in desc.members if m.assignment.topic_partitions]
                if desc.state == ConsumerGroupState.STABLE and len(assigned) >= self.members:
                    self.stable_at = time.time()
                    return
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()


def window_rate(append_ms: list[int], stable_at: float | None) -> PhaseRate:
    """Events per second between the window start and the last append (see module doc)."""
    if not append_ms:
        return PhaseRate(0, 0.0, 0.0, 0.0, None)
    ts = sorted(append_ms)
    first, last = ts[0], ts[-1]
    start, wait = first, None
    if stable_at is not None:
        stable_ms = int(stable_at * 1000)
        wait = max(0.0, (stable_ms - first) / 1000)
        # Only when enough of the run is left to measure; otherwise keep the whole window.
        if first < stable_ms < last and sum(1 for t in ts if t >= stable_ms) >= len(ts) // 2:
            start = stable_ms
    events = sum(1 for t in ts if t >= start)
    seconds = max((last - start) / 1000, 0.001)
    return PhaseRate(events, seconds, events / seconds, (last - first) / 1000, wait)


# --------------------------------------------------------------------------------------------
# Baseline: raw consume -> produce, no parsing
# --------------------------------------------------------------------------------------------


def passthrough_loop(
    cconf: dict[str, Any],
    pconf: dict[str, Any],
    in_topic: str,
    out_topic: str,
    go: Any,
    stop: Any,
    max_seconds: float,
) -> None:
    """The fastest honest copy: batched consume, produce with headers and key, no decoding.

    Assigned partitions stay paused until ``go`` is set, so that every process of the group
    starts copying at the same moment (no rebalance inside the measured window).
    """
    consumer = Consumer(cconf)
    producer = Producer(pconf)

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        c.assign(partitions)
        if not go.is_set():
            c.pause(partitions)

    consumer.subscribe([in_topic], on_assign=on_assign)
    deadline = time.monotonic() + max_seconds
    waiting = True
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if waiting and go.is_set():
                consumer.resume(consumer.assignment())
                waiting = False
            for msg in consumer.consume(1000, 0.2):
                if msg.error():
                    continue
                while True:
                    try:
                        producer.produce(out_topic, msg.value(), msg.key(), headers=msg.headers())
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.poll(0)
        producer.flush(60)
    finally:
        consumer.close()


def _passthrough_configs(ctx: BenchBroker, group: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The copiers' consumer (of consumer group ``group``) and producer configurations."""
    cconf = consumer_config(
        ctx.settings,
        ctx.bootstrap,
        group_id=group,
        **{
            "enable.auto.commit": True,
            "fetch.max.bytes": 52_428_800,
            # librdkafka postpones a partition's fetch by 1 s (default) whenever its prefetch
            # queue is full; a fast copier drains it long before that and would sit idle.
            "fetch.queue.backoff.ms": 10,
        },
    )
    return cconf, producer_config(ctx.settings, ctx.bootstrap)


def run_baseline(ctx: BenchBroker, in_topic: str, out_topic: str, expected: int) -> BaselineRun:
    """``ctx.workers`` pass-through processes copy ``expected`` records, all starting at once."""
    group = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    cconf, pconf = _passthrough_configs(ctx, group)
    spawn = mp.get_context("spawn")  # never fork a process that runs librdkafka threads
    go, stop = spawn.Event(), spawn.Event()
    copiers = ctx.workers
    watch = GroupWatch(ctx.settings, ctx.bootstrap, group, copiers)
    procs = [
        spawn.Process(
            target=passthrough_loop,
            args=(cconf, pconf, in_topic, out_topic, go, stop, ctx.timeout + 60),
            name=f"baseline-{i}",
            daemon=True,
        )
        for i in range(copiers)
    ]
    watch.start()
    for p in procs:
        p.start()

    def check() -> None:
        dead = [p.name for p in procs if not p.is_alive()]
        if dead:
            raise BenchError(f"baseline process(es) exited early: {', '.join(dead)}")

    try:
        deadline = time.monotonic() + 60
        while watch.stable_at is None:
            check()
            if time.monotonic() > deadline:
                raise BenchError(f"baseline: group never had {copiers} assigned members")
            time.sleep(0.05)
        meter = CpuMeter(p.pid for p in procs if p.pid is not None)
        meter.mark(0)  # idle until now: waiting for ``go``
        go.set()
        wait_for_outputs(ctx.marks, [out_topic], expected, ctx.timeout, check, "baseline")
        meter.mark(expected)
    finally:
        go.set()
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        watch.stop()
    times = [r.timestamp_ms for r in read_topic(ctx.settings, ctx.bootstrap, out_topic)]
    return BaselineRun(window_rate(times, watch.stable_at), meter.us_per_event())


# --------------------------------------------------------------------------------------------
# Streamer workers
# --------------------------------------------------------------------------------------------


def per_process(root: psutil.Process, measure: Callable[[psutil.Process], float]) -> list[float]:
    """``measure`` of ``root`` and of each descendant still alive; [] when ``root`` is gone."""
    try:
        values = [measure(root)]
        children = root.children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            values.append(measure(child))
    return values


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class RssSampler(threading.Thread):
    """Peak resident memory of each worker process tree, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.peaks: dict[int, int] = {}  # root pid -> bytes (the whole process tree)
        self.process_peak = 0  # bytes: the largest single process seen
        self._roots: list[psutil.Process] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def watch(self, pids: Iterable[int]) -> None:
        with self._lock:
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    self._roots.append(psutil.Process(pid))

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                roots = list(self._roots)
            for root in roots:
                sizes = per_process(root, lambda p: float(p.memory_info().rss))
                if not sizes:
                    continue
                self.peaks[root.pid] = max(self.peaks.get(root.pid, 0), int(sum(sizes)))
                self.process_peak = max(self.process_peak, int(max(sizes)))

    def stop(self) -> None:
        self._stop.set()


class CpuMeter:
    """CPU seconds (user + system, every thread) that process trees spent per event.

    Throughput on a shared 2-core machine depends on what else runs at that moment; the CPU a
    process spends per event hardly does, so the ratio of CPU per event (pass-through against
    worker, analytics off against on) is the steadier comparison. Marks are (events out, CPU
    seconds) pairs: the first at the start of the measured stretch, the last at its end.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]
        self.first: tuple[int, float] | None = None
        self.last: tuple[int, float] | None = None

    def cpu(self) -> float:
        return sum(sum(per_process(root, _cpu_seconds)) for root in self.roots)

    def mark(self, events: int) -> None:
        now = (events, self.cpu())
        if self.first is None:
            self.first = now
        self.last = now

    def progress(self, events: int) -> None:
        """A ``wait_for_outputs`` hook: the stretch starts at the first output seen."""
        if events > 0:
            self.mark(events)

    def us_per_event(self) -> float:
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return 0.0
        return 1e6 * (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def _output_identity(value: bytes | None) -> Identity | None:
    if value is None:
        return None
    try:
        rec = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return record_identity(rec) if isinstance(rec, dict) else None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def run(
    settings: Settings,
    bootstrap: str,
    *,
    events: int = 200_000,
    partitions: int = 4,
    workers: int = 1,
    seed: int = 0,
    latency_seconds: float = 10.0,
    timeout: float | None = None,
    keep_topics: bool = False,
    processes: int = 1,
    analytics_pairs: int = 3,
    say: Say = say,
) -> E2EResult:
    if min(events, partitions, workers, processes, analytics_pairs) < 1:
        raise BenchError(
            "events, partitions, workers, processes and analytics pairs must be at least 1"
        )
    phase_timeout = timeout if timeout is not None else 120.0 + events / 500
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    base = f"streamer.bench.{run_id}"
    t, log_append = bench_topics(base, analytics_pairs)
    workdir = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    marks: Watermarks | None = None
    sampler = RssSampler()
    sampler.start()
    try:
        say(f"bench e2e {run_id}: {events:,} events, {partitions} partitions, {workers} worker(s)")
        create_bench_topics(settings, bootstrap, {t[k]: k in log_append for k in t}, partitions)
        marks = Watermarks(settings, bootstrap)
        ctx = BenchBroker(settings, bootstrap, marks, phase_timeout, workers, processes)
        plan = _Plan(
            events=events,
            partitions=partitions,
            seed=seed,
            latency_seconds=latency_seconds,
            analytics_pairs=analytics_pairs,
            run_id=run_id,
            topics=t,
            workdir=workdir,
            sampler=sampler,
            say=say,
        )
        return _measure(ctx, plan)
    finally:
        sampler.stop()
        if marks is not None:
            marks.close()
        if not keep_topics:
            with contextlib.suppress(Exception):  # the runs' own (suppression) topics too
                made = [
                    n for n in topic_partitions(settings, bootstrap) if n.startswith(f"{base}.")
                ]
                delete_topics(settings, bootstrap, [*t.values(), *made])
        shutil.rmtree(workdir, ignore_errors=True)


def bench_topics(base: str, analytics_pairs: int) -> tuple[dict[str, str], set[str]]:
    """The run's topics by role, and the roles whose topic takes the broker's clock."""
    t = {
        "in": f"{base}.in",
        "baseline_out": f"{base}.baseline.out",
        "out": f"{base}.out",
        "dlq": f"{base}.dlq",
        "lat_in": f"{base}.latency.in",
        "lat_out": f"{base}.latency.out",
        "lat_dlq": f"{base}.latency.dlq",
        "plain_out": f"{base}.plain.out",
        "plain_dlq": f"{base}.plain.dlq",
        "single_out": f"{base}.single.out",
        "single_dlq": f"{base}.single.dlq",
        "stats": f"{base}.in.stats",
        "suppressions": f"{base}.in.suppressions",
        "lat_stats": f"{base}.latency.in.stats",
        "lat_suppressions": f"{base}.latency.in.suppressions",
    }
    for key in ("suppressions", "lat_suppressions"):  # the suppression stage's topics
        t[f"{key}_events"], t[f"{key}_state"] = suppression_stage_topics(t[key])
    for key in ("stats", "lat_stats"):  # the stats rollup stage's topics
        t[f"{key}_partials"], t[f"{key}_state"] = rollup_stage_topics(t[key])
    for i in range(1, analytics_pairs):  # the pairs after the first: runs with and without
        for kind in ("on", "off"):
            t[f"{kind}{i}_out"] = f"{base}.{kind}{i}.out"
            t[f"{kind}{i}_dlq"] = f"{base}.{kind}{i}.dlq"
    log_append = {
        *("baseline_out", "out", "lat_in", "lat_out", "dlq", "lat_dlq", "plain_out", "plain_dlq"),
        *("single_out", "single_dlq"),
        *(k for k in t if k[:2] == "on" or k[:3] == "off"),
    }
    return t, log_append


class ProducedInput(NamedTuple):
    expected: list[Identity]  # every input record's identity, in order
    mean_record_bytes: float
    events_per_s: float


class Verified(NamedTuple):
    missing: int
    duplicates: int


@dataclass
class _Measured:
    produced: ProducedInput
    baseline: BaselineRun
    streamer: StreamerRun
    verified: Verified
    analytics: AnalyticsCost
    single: StreamerRun | None
    load: LatencyLoad
    latency: LatencyResult


def _measure(ctx: BenchBroker, plan: _Plan) -> E2EResult:
    """The phases, in order, on the topics made for them (see the module doc)."""
    t, say = plan.topics, plan.say
    produced = _produce_input(ctx, plan)
    say(f"baseline: raw consume→produce pass-through, {ctx.workers} process(es) ...")
    baseline = run_baseline(ctx, t["in"], t["baseline_out"], plan.events)
    say(f"baseline: {baseline.rate.events_per_s:,.0f} events/s")
    phase = _StreamerPhase(ctx, t["in"], plan.events)
    streamer, verified = _streamer_runs(phase, plan, produced.expected)
    analytics = _analytics_runs(phase, plan, streamer)
    single = _single_process_run(phase, plan) if ctx.processes > 1 else None
    load, latency = _latency_run(ctx, plan, streamer.rate.events_per_s)
    measured = _Measured(produced, baseline, streamer, verified, analytics, single, load, latency)
    return _result(ctx, plan, measured)


def _produce_input(ctx: BenchBroker, plan: _Plan) -> ProducedInput:
    """Phase 1: the input, ``plan.events`` sample records at a live MTA's event-time density."""
    expected: list[Identity] = []
    sizes: list[int] = []

    def messages() -> Iterator[SampleMessage]:
        for rec in generate_records(plan.events, seed=plan.seed, records_per_second=LIVE_RATE):
            expected.append(record_identity(rec))
            m = to_message(rec)
            sizes.append(len(m.value))
            yield m

    n, secs = produce_all(ctx.settings, ctx.bootstrap, plan.topics["in"], messages())
    mean_bytes = statistics.fmean(sizes)
    produce_rate = n / secs if secs > 0 else 0.0
    plan.say(f"produced {n:,} records in {secs:.2f}s ({produce_rate:,.0f}/s)")
    return ProducedInput(expected, mean_bytes, produce_rate)


def verify(outputs: Iterable[TopicRecord], expected: Iterable[Identity]) -> Verified:
    """Inputs with no output, and outputs beyond one per input (at-least-once allows them)."""
    seen: dict[Identity, int] = {}
    for rec in outputs:
        ident = _output_identity(rec.value)
        if ident is not None:
            seen[ident] = seen.get(ident, 0) + 1
    missing = sum(1 for i in expected if i not in seen)
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    return Verified(missing, duplicates)


def _streamer_runs(
    phase: _StreamerPhase, plan: _Plan, expected: list[Identity]
) -> tuple[StreamerRun, Verified]:
    """Phase 3: the workers (with analytics) on the whole input, every input checked."""
    t, ctx, say = plan.topics, phase.ctx, plan.say
    say(f"streamer: {ctx.workers} `streamer worker`(s), {ctx.processes} process(es) each ...")
    group, workdir = f"bench-streamer-{plan.run_id}", plan.workdir / "throughput"
    streamer = phase.run(t["out"], t["dlq"], group, workdir, plan.sampler)
    if any(c not in (0, None) for c in streamer.exit_codes):
        plan.notes.append(f"worker exit codes after SIGTERM: {streamer.exit_codes}")
    verified = verify(streamer.outputs, expected)
    say(
        f"streamer: {streamer.rate.events_per_s:,.0f} events/s; {len(streamer.outputs):,} "
        f"outputs, {verified.missing} missing, {verified.duplicates} duplicates, "
        f"{len(streamer.dead_letters)} dead letters"
    )
    return streamer, verified


def _analytics_runs(phase: _StreamerPhase, plan: _Plan, streamer: StreamerRun) -> AnalyticsCost:
    """The same workers without analytics, paired with ``streamer``; then more pairs,
    alternately off first and on first, so drift in the machine's load weighs on both sides."""
    t, say, events = plan.topics, plan.say, plan.events
    say("streamer without analytics (analytics = false) ...")
    plain = phase.run(
        t["plain_out"],
        t["plain_dlq"],
        f"bench-plain-{plan.run_id}",
        plan.workdir / "plain",
        None,
        {"STREAMER_ANALYTICS": "false"},
    )
    if len(plain.outputs) < events - len(streamer.dead_letters):
        plan.notes.append(f"analytics-off run: {len(plain.outputs)} outputs for {events} inputs")
    say(f"streamer without analytics: {plain.rate.events_per_s:,.0f} events/s")
    pairs = [AnalyticsPair(_speed(streamer), _speed(plain))]
    for i in range(1, plan.analytics_pairs):
        runs: dict[str, Speed] = {}
        for kind in ("off", "on") if i % 2 else ("on", "off"):
            say(f"analytics pair {i + 1}/{plan.analytics_pairs}: analytics {kind} ...")
            runs[kind] = _speed(
                phase.run(
                    t[f"{kind}{i}_out"],
                    t[f"{kind}{i}_dlq"],
                    f"bench-{kind}{i}-{plan.run_id}",
                    plan.workdir / f"{kind}{i}",
                    None,
                    {"STREAMER_ANALYTICS": "false"} if kind == "off" else None,
                )
            )
        pairs.append(AnalyticsPair(runs["on"], runs["off"]))
    costs = [
        round(1 - on.events_per_s / off.events_per_s, 4) if off.events_per_s else 0.0
        for on, off in pairs
    ]
    cpu_costs = [
        round(1 - off.cpu_us / on.cpu_us, 4) if on.cpu_us and off.cpu_us else 0.0
        for on, off in pairs
    ]
    say(f"analytics cost, per pair: throughput {_percents(costs)}, CPU {_percents(cpu_costs)}")
    return AnalyticsCost(pairs, costs, cpu_costs)


def _speed(run: StreamerRun) -> Speed:
    return Speed(run.rate.events_per_s, run.cpu_us)


def _single_process_run(phase: _StreamerPhase, plan: _Plan) -> StreamerRun:
    """The same workers with one process each: what ``--processes`` scales against."""
    t = plan.topics
    plan.say("streamer with one process per worker (for the scaling) ...")
    single = phase.run(
        t["single_out"],
        t["single_dlq"],
        f"bench-single-{plan.run_id}",
        plan.workdir / "single",
        None,
        {"STREAMER_PROCESSES": "1"},
        members=phase.ctx.workers,
    )
    plan.say(f"one process per worker: {single.rate.events_per_s:,.0f} events/s")
    return single


def _latency_run(
    ctx: BenchBroker, plan: _Plan, capacity: float
) -> tuple[LatencyLoad, LatencyResult]:
    """Phase 4: latency at half the measured capacity."""
    t = plan.topics
    rate = max(50.0, capacity / 2)
    count = max(1, int(min(plan.events, rate * plan.latency_seconds)))
    load = LatencyLoad(rate, count, plan.seed + 1)
    plan.say(f"latency: {load.count:,} events offered at {rate:,.0f}/s ...")
    topics = PhaseTopics(t["lat_in"], t["lat_out"], t["lat_dlq"])
    latency = run_latency(ctx, topics, load, plan.workdir / "latency", plan.sampler)
    plan.say(
        f"latency: p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms; "
        f"{stages.table(latency.stages)}"
    )
    return load, latency


def _result(ctx: BenchBroker, plan: _Plan, m: _Measured) -> E2EResult:
    """The run's results, rounded for reading; the ratios of the unrounded rates."""
    baseline, streamer, analytics, single = m.baseline, m.streamer, m.analytics, m.single
    base_rate, rate = baseline.rate.events_per_s, streamer.rate.events_per_s
    pairs = analytics.pairs
    if not (streamer.cpu_us and pairs[0].off.cpu_us):
        plan.notes.append("CPU per event: too few events to measure (the run took one poll)")
    sampler = plan.sampler
    peaks = [sampler.peaks.get(p, 0) / 1e6 for p in sorted(sampler.peaks)]
    single_rate = single.rate.events_per_s if single else 0.0
    return E2EResult(
        events=plan.events,
        partitions=plan.partitions,
        workers=ctx.workers,
        produce_events_per_s=round(m.produced.events_per_s, 1),
        baseline_events_per_s=round(base_rate, 1),
        streamer_events_per_s=round(rate, 1),
        ratio=round(rate / base_rate, 4) if base_rate else 0.0,
        p50_ms=round(m.latency.p50_ms, 2),
        p99_ms=round(m.latency.p99_ms, 2),
        max_ms=round(m.latency.max_ms, 2),
        latency_rate_per_s=round(m.load.rate, 1),
        latency_events=m.load.count,
        rss_mb=round(sampler.process_peak / 1e6, 1),
        rss_mb_per_worker=[round(p, 1) for p in peaks],
        outputs=len(streamer.outputs),
        missing=m.verified.missing,
        duplicates=m.verified.duplicates,
        dead_letters=len(streamer.dead_letters),
        latency_missing=m.latency.missing,
        mean_record_bytes=round(m.produced.mean_record_bytes, 1),
        baseline=baseline.rate,
        streamer=streamer.rate,
        analytics_off_events_per_s=round(statistics.median(p.off.events_per_s for p in pairs), 1),
        analytics_on_events_per_s=round(statistics.median(p.on.events_per_s for p in pairs), 1),
        analytics_cost=round(statistics.median(analytics.costs), 4),
        analytics_costs=analytics.costs,
        analytics_pairs=plan.analytics_pairs,
        processes=ctx.processes,
        single_process_events_per_s=round(single_rate, 1),
        scaling=round(rate / single_rate, 3) if single_rate else 0.0,
        latency_stages=m.latency.stages,
        baseline_cpu_us=round(baseline.cpu_us, 2),
        streamer_cpu_us=round(streamer.cpu_us, 2),
        analytics_off_cpu_us=round(statistics.median(p.off.cpu_us for p in pairs), 2),
        cpu_ratio=round(baseline.cpu_us / streamer.cpu_us, 4) if streamer.cpu_us else 0.0,
        analytics_cpu_cost=round(statistics.median(analytics.cpu_costs), 4),
        analytics_cpu_costs=analytics.cpu_costs,
        notes=plan.notes,
    )


def _percents(values: list[float]) -> str:
    return " ".join(f"{100 * v:.1f}%" for v in values)


class _StreamerPhase:
    """`streamer worker` processes draining the benchmark's input once, measured."""

    def __init__(self, ctx: BenchBroker, in_topic: str, events: int) -> None:
        self.ctx = ctx
        self.in_topic = in_topic
        self.events = events

    def run(
        self,
        out: str,
        dlq: str,
        group: str,
        workdir: Path,
        sampler: RssSampler | None,
        extra_env: dict[str, str] | None = None,
        members: int | None = None,
    ) -> StreamerRun:
        """One run in consumer group ``group``.

        ``members``: consumers expected in the group (default workers x processes).
        """
        ctx = self.ctx
        s, bootstrap = ctx.settings, ctx.bootstrap
        members = members or ctx.workers * ctx.processes
        watch = GroupWatch(s, bootstrap, group, members) if members > 1 else None
        if watch:
            watch.start()
        env = {
            "STREAMER_PROCESSES": str(ctx.processes),
            # each run its own suppression topics: a run's new group would otherwise fold the
            # suppression events of every run before it too
            "STREAMER_SUPPRESSIONS_TOPIC": f"{out}.suppressions",
            **(extra_env or {}),
        }
        ws = WorkerSet.start(bootstrap, self.in_topic, out, dlq, group, ctx.workers, workdir, env)
        if sampler is not None:
            sampler.watch(p.pid for p in ws.procs)
        meter = CpuMeter(p.pid for p in ws.procs)
        try:
            wait_for_outputs(
                ctx.marks,
                [out, dlq],
                self.events,
                ctx.timeout,
                ws.check,
                group,
                progress=meter.progress,
            )
        except HarnessError as exc:
            raise BenchError(f"{exc}\n{ws.tails()}") from exc
        finally:
            codes = ws.stop()
            if watch:
                watch.stop()
        outputs = read_topic(s, bootstrap, out)
        dead = read_topic(s, bootstrap, dlq)
        rate = window_rate([r.timestamp_ms for r in outputs], watch.stable_at if watch else None)
        return StreamerRun(rate, outputs, dead, codes, meter.us_per_event())


class _LatencyRecords(NamedTuple):
    warm_up: list[SampleMessage]  # not timed: they get the workers going
    timed: list[tuple[Identity, SampleMessage]]  # in the order they are offered
    measured: set[Identity]  # the timed ones after the settling


def _latency_records(load: LatencyLoad) -> _LatencyRecords:
    warmup = min(200, load.count)
    settle = int(load.rate * LATENCY_SETTLE_S)
    records = list(
        generate_records(warmup + settle + load.count, seed=load.seed, records_per_second=LIVE_RATE)
    )
    warm_msgs = [to_message(r) for r in records[:warmup]]
    timed = [(record_identity(r), to_message(r)) for r in records[warmup:]]
    return _LatencyRecords(warm_msgs, timed, {ident for ident, _m in timed[settle:]})


def run_latency(
    ctx: BenchBroker, topics: PhaseTopics, load: LatencyLoad, workdir: Path, sampler: RssSampler
) -> LatencyResult:
    """Offer records at ``load.rate``/s to fresh workers; the latency of each, and where the
    time went (``streamer.devkit.bench.stages``).

    A burst of 200 records first gets the workers going; then the paced run starts, and its
    first ``LATENCY_SETTLE_S`` seconds are sent and checked but left out of the percentiles
    (cold caches, a consumer group finishing its first rebalance): what is measured is the
    steady state.
    """
    records = _latency_records(load)
    warmup = len(records.warm_up)
    group = f"bench-latency-{uuid.uuid4().hex[:8]}"
    watch = GroupWatch(ctx.settings, ctx.bootstrap, group, ctx.workers * ctx.processes)
    watch.start()
    env = {"STREAMER_PROCESSES": str(ctx.processes)}
    ws = WorkerSet.start(
        ctx.bootstrap, topics.input, topics.output, topics.dlq, group, ctx.workers, workdir, env
    )
    sampler.watch(p.pid for p in ws.procs)
    sent_ms: dict[Identity, float] = {}
    drained = [topics.output, topics.dlq]
    try:
        # Warm up: the group is formed and records flow end to end before timing starts.
        produce_all(ctx.settings, ctx.bootstrap, topics.input, records.warm_up)
        wait_for_outputs(ctx.marks, drained, warmup, ctx.timeout, ws.check, "warm-up")
        deadline = time.monotonic() + 60
        while watch.stable_at is None and time.monotonic() < deadline:
            ws.check()
            time.sleep(0.1)
        # Small batches so the producer adds little latency of its own.
        producer = Producer(producer_config(ctx.settings, ctx.bootstrap, **{"linger.ms": 1}))
        before = stages.snapshot(ws.metrics_ports)
        _offer_paced(producer, topics.input, records.timed, load.rate, sent_ms)
        total = warmup + len(records.timed)
        wait_for_outputs(ctx.marks, drained, total, ctx.timeout, ws.check, "latency")
        after = stages.snapshot(ws.metrics_ports)
    except HarnessError as exc:
        raise BenchError(f"{exc}\n{ws.tails()}") from exc
    finally:
        ws.stop()
        watch.stop()
    return _latencies(ctx, topics, sent_ms, records.measured, (before, after))


def _offer_paced(
    producer: Producer,
    topic: str,
    timed: list[tuple[Identity, SampleMessage]],
    rate: float,
    sent_ms: dict[Identity, float],
) -> None:
    """Produce ``timed`` at ``rate``/s, noting in ``sent_ms`` when each was handed over.

    The offered load is paced in ticks (whatever is due is sent, then sleep until the next
    tick): sleeping per record would burn a core on this 2-core budget and starve the worker
    being measured.
    """
    started = time.monotonic()
    i, total = 0, len(timed)
    while i < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        now_ms = time.time() * 1000
        while i < due:
            ident, m = timed[i]
            sent_ms[ident] = now_ms
            try:
                producer.produce(topic, m.value, m.key, headers=m.headers)
            except BufferError:
                producer.poll(0.01)
                continue
            i += 1
        producer.poll(0)
        time.sleep(PACE_TICK_S)
    if producer.flush(60):
        raise BenchError("latency: producer could not deliver every record")


def _latencies(
    ctx: BenchBroker,
    topics: PhaseTopics,
    sent_ms: dict[Identity, float],
    measured: set[Identity],
    snapshots: tuple[Any, Any],
) -> LatencyResult:
    """Each measured record's latency: its output's append time - when it was produced."""
    latencies: list[float] = []
    seen: set[Identity] = set()
    for rec in read_topic(ctx.settings, ctx.bootstrap, topics.output):
        ts = rec.timestamp_ms
        out_ident = _output_identity(rec.value)
        if out_ident is not None and out_ident in sent_ms and out_ident not in seen:
            seen.add(out_ident)
            if out_ident in measured:
                latencies.append(max(0.0, ts - sent_ms[out_ident]))
    latencies.sort()
    produce_ms = [
        max(0.0, rec.timestamp_ms - sent_ms[rid])
        for rec in read_topic(ctx.settings, ctx.bootstrap, topics.input)
        if (rid := _output_identity(rec.value)) is not None and rid in measured
    ]
    return LatencyResult(
        percentile(latencies, 50),
        percentile(latencies, 99),
        latencies[-1] if latencies else 0.0,
        len(sent_ms) - len(seen),
        stages.breakdown(*snapshots, produce_ms),
    )
