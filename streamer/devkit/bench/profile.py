"""Where a worker's CPU per event goes: ``streamer bench profile``.

One ``streamer worker`` process drains a pre-filled topic of sample records (analytics on, then
off) while py-spy samples the Python thread holding the GIL (without pausing the worker). The
CPU of its threads is metered over the same stretch, librdkafka's (named ``rdk:*``) apart from
the rest (``ThreadCpu``). Each sample's stack is put in one part of the worker (``part_of``: the
deepest frame that names a part wins), and a part's µs per event is its share of the samples
times the CPU of the threads that are not librdkafka's, over the events out.

Shares, not sample counts, carry the measurement: on a loaded machine a thread holding the GIL
is sampled while descheduled too, so samples count wall time, and the metered CPU says how
much of it was work. Parts are good to a few per cent.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from streamer.config import Settings
from streamer.devkit.bench.e2e import LIVE_RATE, BenchError, create_bench_topics
from streamer.devkit.console import say
from streamer.devkit.harness import Watermarks, WorkerSet, produce_all, wait_for_outputs
from streamer.devkit.sample import generate_records, to_message
from streamer.kafka.admin import delete_topics, topic_partitions

#: py-spy samples per second (per thread).
SAMPLE_RATE = 250
#: Parts of a worker, each named by the frames that belong to it (``part_of``). Order only
#: breaks ties between patterns of one frame; the deepest matching frame of a stack decides.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("analytics", ("streamer/analytics/",)),
    ("stats flushes", ("streamer/worker/stats.py",)),
    ("suppression stage", ("streamer/worker/suppressor.py", "suppression_restore.py")),
    ("pipeline", ("streamer/pipeline.py",)),
    ("produce()", ("_produce_from (streamer/kafka/sink.py", "_produce_again (")),
    ("delivery reports", ("poll (streamer/kafka/sink.py", "on_delivery (streamer/kafka/sink")),
    ("offsets", ("streamer/worker/offsets.py", "make_batch (", "commit_due (", "_commit_owned (")),
    ("consume (fetch thread)", ("_consume (streamer/kafka/source.py",)),
    ("metrics", ("streamer/metrics/", "prometheus_client/")),
)
#: Everything else: the agent and fetch loops, the channel, Faust/mode, asyncio, housekeeping.
GLUE = "event loop, channel, other glue"
#: librdkafka's own threads (metered, never sampled: no Python runs there).
LIBRDKAFKA = "librdkafka threads"


def part_of(frames: list[str]) -> str:
    """The part of the worker a stack (outermost frame first) spends its time in.

    The innermost frame that names a part decides, except that metrics updated by a stats
    flush are the flush's (the brief's split: the flush's cost in full).
    """
    for depth in range(len(frames) - 1, -1, -1):
        frame = frames[depth]
        for part, patterns in PARTS:
            if any(p in frame for p in patterns):
                if part == "metrics" and any("streamer/worker/stats.py" in f for f in frames):
                    return "stats flushes"
                return part
    return GLUE


def parse_raw(text: str) -> Counter[str]:
    """py-spy's raw (collapsed) output: ``frame;frame;... count`` lines -> samples per part."""
    samples: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[part_of(stack.split(";"))] += int(count)
    return samples


@dataclass
class Profile:
    """One run: µs of CPU per event, per part of the worker."""

    analytics: bool
    events: int
    cpu_us: float  # every thread, metered
    samples: int  # py-spy samples of the thread holding the GIL
    parts_us: dict[str, float] = field(default_factory=dict)


@dataclass
class ProfileResult:
    events: int
    runs: list[Profile]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.cpu_us > 0 and r.samples > 0 for r in self.runs)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def table(self) -> str:
        names = [p for p, _ in PARTS] + [GLUE, LIBRDKAFKA]
        head = ["part"] + [f"analytics {'on' if r.analytics else 'off'}" for r in self.runs]
        rows = [[n] + [f"{r.parts_us.get(n, 0.0):.2f} µs" for r in self.runs] for n in names]
        rows.append(["total (metered)"] + [f"{r.cpu_us:.2f} µs" for r in self.runs])
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows]
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def run(
    settings: Settings,
    bootstrap: str,
    *,
    events: int,
    seed: int = 0,
    raw_dir: Path | None = None,
) -> ProfileResult:
    """Fill a topic once, then profile a worker draining it with analytics on, then off.

    ``raw_dir``: keep py-spy's collapsed stacks there (``on.raw``, ``off.raw``).
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise BenchError("py-spy is not installed (pip install -e '.[dev]')")
    base = f"streamer.bench.profile.{uuid.uuid4().hex[:8]}"
    topics = {"in": f"{base}.in"}
    for kind in ("on", "off"):
        topics[f"{kind}_out"], topics[f"{kind}_dlq"] = f"{base}.{kind}.out", f"{base}.{kind}.dlq"
    workdir = Path(tempfile.mkdtemp(prefix="streamer-profile-"))
    marks: Watermarks | None = None
    try:
        create_bench_topics(settings, bootstrap, dict.fromkeys(topics.values(), False), 4)
        marks = Watermarks(settings, bootstrap)
        records = generate_records(events, seed=seed, records_per_second=LIVE_RATE)
        n, secs = produce_all(settings, bootstrap, topics["in"], (to_message(r) for r in records))
        say(f"profile: {n:,} records in {topics['in']} ({secs:.1f}s)")
        runs = [
            _profile_one(spy, settings, bootstrap, topics, kind, events, marks, workdir)
            for kind in ("on", "off")
        ]
        if raw_dir is not None:
            raw_dir.mkdir(parents=True, exist_ok=True)
            for kind in ("on", "off"):
                shutil.copy(workdir / f"{kind}.raw", raw_dir / f"{kind}.raw")
        return ProfileResult(events, runs)
    finally:
        if marks is not None:
            marks.close()
        with contextlib.suppress(Exception):
            made = [t for t in topic_partitions(settings, bootstrap) if t.startswith(base)]
            delete_topics(settings, bootstrap, made)
        shutil.rmtree(workdir, ignore_errors=True)


def _profile_one(
    spy: str,
    settings: Settings,
    bootstrap: str,
    topics: dict[str, str],
    kind: str,
    events: int,
    marks: Watermarks,
    workdir: Path,
) -> Profile:
    """One worker drains the input under py-spy, from its first output to the last."""
    out, dlq = topics[f"{kind}_out"], topics[f"{kind}_dlq"]
    env = {"STREAMER_ANALYTICS": "true" if kind == "on" else "false"}
    group = f"bench-profile-{kind}-{uuid.uuid4().hex[:8]}"
    ws = WorkerSet.start(bootstrap, topics["in"], out, dlq, group, 1, workdir / kind, env)
    raw = workdir / f"{kind}.raw"
    meter = ThreadCpu(ws.procs[0].pid)
    spy_proc: subprocess.Popen[bytes] | None = None
    try:
        # wait for the first output: start-up (imports, rules) is no part of the per-event cost
        wait_for_outputs(marks, [out, dlq], 1, 120.0, ws.check, f"profile ({kind})")
        spy_proc = _spy(spy, ws.procs[0].pid, raw)
        first = marks.total([out, dlq])
        start = meter.read()
        last = wait_for_outputs(marks, [out, dlq], events, 600.0, ws.check, f"profile ({kind})")
        end = meter.read()
    finally:
        if spy_proc is not None:
            _stop_spy(spy_proc)
        ws.stop()
    counted = last - first
    if counted <= 0 or not raw.exists():
        raise BenchError(f"profile ({kind}): nothing measured ({counted} events, {raw})")
    samples = parse_raw(raw.read_text(errors="replace"))
    total = sum(samples.values())
    rdk_us = 1e6 * (end[0] - start[0]) / counted
    python_us = 1e6 * (end[1] - start[1]) / counted
    parts = {p: python_us * c / total for p, c in samples.items()} if total else {}
    parts[LIBRDKAFKA] = rdk_us
    cpu_us = rdk_us + python_us
    say(f"profile ({kind}): {counted:,} events, {cpu_us:.1f} µs CPU per event")
    rounded = {p: round(us, 2) for p, us in parts.items()}
    return Profile(kind == "on", counted, round(cpu_us, 2), total, rounded)


class ThreadCpu:
    """CPU seconds of one process's threads: (librdkafka's, the others')."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)

    def read(self) -> tuple[float, float]:
        rdk = other = 0.0
        for t in self.process.threads():
            seconds = t.user_time + t.system_time
            try:
                name = Path(f"/proc/{self.process.pid}/task/{t.id}/comm").read_text()
            except OSError:  # gone meanwhile: its time is lost to both sides alike
                continue
            if name.startswith("rdk:"):
                rdk += seconds
            else:
                other += seconds
        return rdk, other


def _spy(spy: str, pid: int, raw: Path) -> subprocess.Popen[bytes]:
    # --gil: only the thread holding the GIL, i.e. Python's own work (threads waiting in C,
    # like consume() and librdkafka's, are the metered CPU that is not sampled)
    cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--gil"]
    cmd += ["--rate", str(SAMPLE_RATE), "-o", str(raw)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)  # attached: its first samples are taken within this
    return proc


def _stop_spy(proc: subprocess.Popen[bytes]) -> None:
    """py-spy writes its file on SIGINT."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
