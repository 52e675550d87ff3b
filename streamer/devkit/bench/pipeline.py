"""``streamer bench pipeline``: ``Pipeline.process`` on the native and the Python record path.

Both paths run in the same process over the same sample records (the shipped rules), with
analytics off and on (a fresh analyzer of the default settings, its tally folded after each
pass, as a stats flush does), interleaved round by round, so that the ratios hold on a machine
whose load changes.
The figure is CPU time per record (``time.process_time``): the first pass over the records
with a fresh classifier (cold: every distinct response line is new) and the best later pass
(warm: the caches hold what they can).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import orjson
from confluent_kafka import Message

from streamer import native
from streamer.analytics.analyzer import Analyzer
from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppressions import SuppressionEvents
from streamer.classifier import ReloadableClassifier
from streamer.config import shipped_rule_files
from streamer.devkit.sample import generate_records
from streamer.pipeline import Pipeline

#: Records per second of event time (``bench e2e``'s ``LIVE_RATE``, not imported: that module
#: starts brokers).
LIVE_RATE = 20_000.0
#: Records per ``Pipeline.process`` call (the worker's batches are of this order).
BATCH = 2000
#: Passes over the records per path and round: the first is the cold one.
PASSES = 3
#: The suffix of a path's name with analytics on.
ANALYTICS = "+analytics"


@dataclass
class PipelineReport:
    records: int
    rounds: int
    #: path -> (cold µs per record, warm µs per record), one pair per round
    runs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def medians(self, path: str) -> tuple[float, float]:
        pairs = self.runs[path]
        return median(c for c, _ in pairs), median(w for _, w in pairs)

    def ratio(self, path: str, against: str) -> tuple[float, float]:
        """(cold, warm) medians of ``path`` over those of ``against``."""
        (ac, aw), (pc, pw) = self.medians(against), self.medians(path)
        return pc / ac, pw / aw

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"records": self.records, "rounds": self.rounds, "runs": self.runs}
        if native.NATIVE in self.runs:
            out["ratio_cold"], out["ratio_warm"] = self.ratio(native.NATIVE, native.PYTHON)
            counted = native.NATIVE + ANALYTICS
            out["analytics_ratio_cold"], out["analytics_ratio_warm"] = self.ratio(
                counted, native.PYTHON + ANALYTICS
            )
            out["analytics_cost_cold"], out["analytics_cost_warm"] = (
                r - 1 for r in self.ratio(counted, native.NATIVE)
            )
        return out

    def table(self) -> str:
        lines = [f"Pipeline.process, {self.records:,} sample records"]
        for path in self.runs:
            cold, warm = self.medians(path)
            lines.append(f"  {path:17} cold {cold:6.2f} µs/record   warm {warm:6.2f} µs/record")
        if native.NATIVE in self.runs:
            data = self.to_json()
            lines += [
                f"  native / python, analytics off: cold {data['ratio_cold']:.2f}, warm"
                f" {data['ratio_warm']:.2f}; on: cold {data['analytics_ratio_cold']:.2f}, warm"
                f" {data['analytics_ratio_warm']:.2f}",
                f"  native analytics cost: cold {data['analytics_cost_cold']:+.0%}, warm"
                f" {data['analytics_cost_warm']:+.0%} (medians of {self.rounds} rounds)",
            ]
        else:
            lines.append(f"  native: not built ({native.MISSING})")
        return "\n".join(lines)


def _passes(pipeline: Pipeline, batches: list[list[Any]], n: int) -> tuple[float, float]:
    times = []
    for _ in range(PASSES):
        started = time.process_time()
        for batch in batches:
            pipeline.process(batch)
        if pipeline.analyzer is not None:
            pipeline.analyzer.aggregator.finish()  # a stats flush's fold
        times.append((time.process_time() - started) / n * 1e6)
    return times[0], min(times[1:])


def _analyzer() -> Analyzer:
    """An analyzer of the default settings and the shipped tables."""
    tables = CategoryTable.shipped(), ProviderMatcher.shipped()
    return Analyzer(*tables, BatchAggregator(), SuppressionEvents(), time.time)


def run(records: int, rounds: int, progress: Callable[[str], None]) -> PipelineReport:
    # event times as dense as a busy MTA's (``bench e2e``'s): the stats fold is per distinct key,
    # and the sample's own 4 records/s would make nearly every record a row of its own
    values = [
        orjson.dumps(r) for r in generate_records(records, seed=1, records_per_second=LIVE_RATE)
    ]
    messages = [
        Message(topic="in", partition=0, offset=i, key=None, value=v) for i, v in enumerate(values)
    ]
    batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    paths = [(native.PYTHON, False)] + ([(native.NATIVE, True)] if native.AVAILABLE else [])
    paths += [(name + ANALYTICS, use_native) for name, use_native in paths]
    report = PipelineReport(records, rounds)
    for round_ in range(rounds):
        for name, use_native in paths:
            progress(f"round {round_ + 1}/{rounds}: {name}")
            pipeline = Pipeline(
                ReloadableClassifier(shipped_rule_files()),
                output_topic="out",
                dlq_topic="dlq",
                native=use_native,
                analyzer=_analyzer() if name.endswith(ANALYTICS) else None,
                suppression_events_topic="supp",
            )
            report.runs.setdefault(name, []).append(_passes(pipeline, batches, len(messages)))
    return report
