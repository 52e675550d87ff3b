"""``streamer bench soak``: memory under hostile cardinality.

A worker (analytics on) is fed records in which every response line, receiving site, egress
source and pool, tenant and recipient is new, as a misconfigured MTA or an attack on the log
pipeline would produce; or, with ``replay_hours``, hard bounces replayed from old logs at full
speed, whose event time spans that many hours (every recipient, site and response new; tenants,
pools and sources cycling), so that the windows kept for ``stats_retention`` fill up. The run
passes when every record came out, the worker's RSS stayed under the limit and ended within the
allowed drift of its value at 20% of the run (no upward trend), and every exported metric kept
its bounded number of series.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from streamer.config import Settings, rollup_stage_topics, suppression_stage_topics
from streamer.devkit.bench.e2e import BenchError, create_bench_topics
from streamer.devkit.console import Say, say
from streamer.devkit.harness import (
    HarnessError,
    Watermarks,
    WorkerSet,
    produce_all,
    scrape_metrics,
)
from streamer.devkit.sample import SampleMessage
from streamer.kafka.admin import delete_topics
from streamer.metrics import METRIC_VALUES_PER_DIMENSION, SERIES_TYPES

#: Most series each bounded metric may export (label values are bounded in the worker).
SERIES_BOUNDS = {
    "streamer_events_in_total": len(SERIES_TYPES) + 1,
    "streamer_rule_gaps": 20,
    "streamer_outcomes_total": 4 * (METRIC_VALUES_PER_DIMENSION + 1) * 7,
}


@dataclass
class SoakResult:
    events: int
    seconds: float
    outputs: int
    rss_limit_mb: float
    rss_peak_mb: float
    rss_at_20_mb: float
    rss_end_mb: float
    drift: float
    replay_hours: float
    series: dict[str, int]
    timeline: list[tuple[float, int, float]] = field(default_factory=list)  # s, outputs, MB
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.notes

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def _shape(self) -> str:
        if self.replay_hours:
            return (
                f"hard bounces replayed over {self.replay_hours:g} h of event time; every "
                f"recipient, site and response new; {REPLAY_TENANTS} tenants, {REPLAY_POOLS} "
                f"pools, {REPLAY_SOURCES} sources"
            )
        return "every site, source, tenant and response new"

    def table(self) -> str:
        rows = [
            ("events", f"{self.events:,} ({self._shape()})"),
            ("outputs", f"{self.outputs:,} in {self.seconds:.1f}s"),
            ("worker RSS", f"peak {self.rss_peak_mb:.0f} MB (limit {self.rss_limit_mb:.0f})"),
            (
                "RSS trend",
                f"{self.rss_at_20_mb:.0f} MB at 20% of the run, {self.rss_end_mb:.0f} MB at the "
                f"end ({100 * self.drift:+.1f}%)",
            ),
            ("series", ", ".join(f"{k} {v}" for k, v in sorted(self.series.items()))),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"FAILED: {n}" for n in self.notes]
        lines.append("result: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def _start_feeder(
    settings: Settings,
    bootstrap: str,
    topic: str,
    messages: Callable[[], Iterator[SampleMessage]],
    errors: list[BaseException],
) -> threading.Thread:
    """Produce ``messages()`` to ``topic`` in a thread; what fails lands in ``errors``."""

    def feed() -> None:
        try:
            produce_all(settings, bootstrap, topic, messages())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    feeder = threading.Thread(target=feed, name="soak-producer", daemon=True)
    feeder.start()
    return feeder


def _drain(
    ws: WorkerSet,
    marks: Watermarks,
    outputs: list[str],
    proc: psutil.Process,
    events: int,
    errors: list[BaseException],
    started: float,
    timeout: float,
) -> tuple[list[tuple[float, int, float]], int]:
    """Until ``events`` records are out: (seconds, records out, RSS MB) every second."""
    timeline: list[tuple[float, int, float]] = []
    deadline = started + timeout
    done = 0
    while done < events:
        if errors:
            raise BenchError(f"producing failed: {errors[0]}")
        if time.monotonic() > deadline:
            raise BenchError(f"only {done:,}/{events:,} records out after {timeout:.0f}s")
        ws.check()
        done = marks.total(outputs)
        rss = proc.memory_info().rss / 1e6
        timeline.append((round(time.monotonic() - started, 2), done, round(rss, 1)))
        time.sleep(1.0)
    return timeline, done


def _soak_result(
    events: int,
    seconds: float,
    done: int,
    timeline: list[tuple[float, int, float]],
    series: dict[str, int],
    replay_hours: float,
    rss_limit_mb: float,
) -> SoakResult:
    at_20 = next(mb for _s, n, mb in timeline if n >= events * 0.2)
    end = timeline[-1][2]
    return SoakResult(
        events=events,
        seconds=round(seconds, 1),
        outputs=done,
        rss_limit_mb=rss_limit_mb,
        rss_peak_mb=max(mb for _s, _n, mb in timeline),
        rss_at_20_mb=at_20,
        rss_end_mb=end,
        drift=round(end / at_20 - 1, 4),
        replay_hours=replay_hours,
        series=series,
        timeline=timeline,
    )


def _check_limits(result: SoakResult, max_drift: float) -> None:
    """Notes for every limit the run broke (the peak, the drift, the series counts)."""
    rss_limit_mb = result.rss_limit_mb
    peak, end, at_20 = result.rss_peak_mb, result.rss_end_mb, result.rss_at_20_mb
    if peak >= rss_limit_mb:
        result.notes.append(f"peak RSS {peak:.0f} MB >= {rss_limit_mb:.0f} MB")
    if end > at_20 * (1 + max_drift):
        result.notes.append(f"RSS grew {100 * result.drift:.1f}% after 20% of the run")
    for name, bound in SERIES_BOUNDS.items():
        if result.series.get(name, 0) > bound:
            result.notes.append(f"{name}: {result.series[name]} series > {bound}")


def hostile_messages(n: int, seed: int) -> Iterator[SampleMessage]:
    """Bounces (and some deliveries) in which every input value is new."""
    base = 1_790_000_000
    tag = f"{seed:x}"
    for i in range(n):
        rtype = "Delivery" if i % 4 == 0 else "Bounce"
        code = 250 if rtype == "Delivery" else 550
        rec = {
            "type": rtype,
            "id": f"{tag}-{i}",
            "sender": f"bounce-{i}@sender{i}.example",
            "recipient": f"user{i}@domain{i}.example",
            "queue": f"campaign{i}:tenant{i}@domain{i}.example",
            "site": f"source{i}->mx{i}.domain{i}.example",
            "egress_pool": f"pool{i}",
            "egress_source": f"source{i}",
            "timestamp": base + i // 20_000,
            "event_time": f"2026-09-21T{(i // 20_000) // 3600 % 24:02d}:"
            f"{(i // 20_000) // 60 % 60:02d}:{(i // 20_000) % 60:02d}.{i % 1000:03d}Z",
            "response": {
                "code": code,
                "enhanced_code": None,
                "content": f"queue {i:08x} refused by relay{i}.example for reason {i * 7919}",
                "command": None,
            },
        }
        yield SampleMessage(str(i).encode(), orjson.dumps(rec), [], "classify")


#: The replay's shape (issue 24): input values that cycle, and the share of response lines no
#: rule knows (each its own rule-gap template; the others are hard bounces to suppress).
REPLAY_TENANTS, REPLAY_POOLS, REPLAY_SOURCES = 1000, 50, 500
REPLAY_GAP_EVERY = 4
_REPLAY_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a replay of old logs


def _word(n: int) -> str:
    """``n`` in letters: a token no template mask turns into a placeholder."""
    out = ""
    while True:
        n, r = divmod(n, 26)
        out += chr(97 + r)
        if n == 0:
            return out


def replay_messages(n: int, seed: int, hours: float) -> Iterator[SampleMessage]:
    """Hard bounces replayed from old logs at full speed: event time rises over ``hours`` (with
    jitter of a few seconds either way), every recipient, receiving site and response line is
    new, tenants cycle over 1,000, egress pools over 50 and sources over 500. Every
    ``REPLAY_GAP_EVERY``-th response is one no rule classifies (a new rule-gap template)."""
    span_ms = int(hours * 3_600_000)
    tag = f"{seed:x}"
    for i in range(n):
        jitter = (i * 7_919 + seed) % 5_000 - 2_500
        t = _REPLAY_START_MS + max(0, span_ms * i // n + jitter)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000))
        domain = f"d{i}-{tag}.example"
        mix = (i * 2_654_435_761) & 0xFFFF_FFFF  # the dimensions cycle independently
        if i % REPLAY_GAP_EVERY:
            content = f"5.1.1 <user{i}@{domain}>: Recipient address rejected: User unknown"
        else:
            content = f"5.7.1 relay {_word(i)} refused delivery for reason {_word(i * 31 + 7)}"
        rec = {
            "type": "Bounce",
            "id": f"{tag}-{i}",
            "sender": f"bounce-{i}@sender.example",
            "recipient": f"user{i}@{domain}",
            "queue": f"campaign{i % 97}:tenant{mix % REPLAY_TENANTS}@{domain}",
            "site": f"source{(mix >> 16) % REPLAY_SOURCES}->mx{i}.{domain}",
            "egress_pool": f"pool{(mix >> 10) % REPLAY_POOLS}",
            "egress_source": f"source{(mix >> 16) % REPLAY_SOURCES}",
            "timestamp": t // 1000,
            "event_time": f"{stamp}.{t % 1000:03d}Z",
            "response": {"code": 550, "enhanced_code": None, "content": content, "command": None},
        }
        yield SampleMessage(str(i).encode(), orjson.dumps(rec), [], "classify")


def _series(port: int) -> dict[str, int]:
    """How many series each ``streamer_*`` sample name exports now."""
    samples = scrape_metrics(port, timeout=10)
    return {name: len(v) for name, v in samples.items() if not name.endswith("_created")}


def run(
    settings: Settings,
    bootstrap: str,
    *,
    events: int = 1_000_000,
    partitions: int = 4,
    rss_limit_mb: float = 250.0,
    max_drift: float = 0.15,
    seed: int = 0,
    replay_hours: float = 0.0,
    timeout: float = 1800.0,
    say: Say = say,
) -> SoakResult:
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    base = f"streamer.soak.{run_id}"
    t = {"in": f"{base}.in", "out": f"{base}.out", "dlq": f"{base}.dlq"}
    analytics = [f"{t['in']}.stats", f"{t['in']}.suppressions"]
    analytics += suppression_stage_topics(analytics[1])
    analytics += rollup_stage_topics(analytics[0])
    workdir = Path(tempfile.mkdtemp(prefix="streamer-soak-"))
    marks: Watermarks | None = None
    ws: WorkerSet | None = None
    try:
        shape = f"replayed over {replay_hours:g} h" if replay_hours else "hostile"
        say(f"soak {run_id}: {events:,} {shape} records, {partitions} partitions, 1 worker")
        create_bench_topics(settings, bootstrap, {name: False for name in t.values()}, partitions)
        marks = Watermarks(settings, bootstrap)
        ws = WorkerSet.start(bootstrap, t["in"], t["out"], t["dlq"], f"soak-{run_id}", 1, workdir)
        proc = psutil.Process(ws.procs[0].pid)
        errors: list[BaseException] = []

        def messages() -> Iterator[SampleMessage]:
            if replay_hours:
                return replay_messages(events, seed, replay_hours)
            return hostile_messages(events, seed)

        started = time.monotonic()
        feeder = _start_feeder(settings, bootstrap, t["in"], messages, errors)
        outputs = [t["out"], t["dlq"]]
        timeline, done = _drain(ws, marks, outputs, proc, events, errors, started, timeout)
        seconds = time.monotonic() - started
        feeder.join(60)
        time.sleep(2.5)  # a few housekeeping rounds: the rolling tops close their buckets
        series = _series(ws.metrics_ports[0])
        timeline.append((round(seconds, 2), done, round(proc.memory_info().rss / 1e6, 1)))
        result = _soak_result(events, seconds, done, timeline, series, replay_hours, rss_limit_mb)
        _check_limits(result, max_drift)
        return result
    except HarnessError as exc:
        tail = ws.tails() if ws is not None else ""
        raise BenchError(f"{exc}\n{tail}") from exc
    finally:
        if ws is not None:
            ws.stop()
        if marks is not None:
            marks.close()
        delete_topics(settings, bootstrap, [*t.values(), *analytics])
        shutil.rmtree(workdir, ignore_errors=True)
