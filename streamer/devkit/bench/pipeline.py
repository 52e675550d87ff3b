"""``streamer bench pipeline``: ``Pipeline.process`` on the native and the Python record path.

Both paths run in the same process over the same sample records (analytics off, the shipped
rules), interleaved round by round, so that the ratio holds on a machine whose load changes.
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
from streamer.classifier import ReloadableClassifier
from streamer.config import shipped_rule_files
from streamer.devkit.sample import generate_records
from streamer.pipeline import Pipeline

#: Records per ``Pipeline.process`` call (the worker's batches are of this order).
BATCH = 2000
#: Passes over the records per path and round: the first is the cold one.
PASSES = 3


@dataclass
class PipelineReport:
    records: int
    rounds: int
    #: path -> (cold µs per record, warm µs per record), one pair per round
    runs: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def medians(self, path: str) -> tuple[float, float]:
        pairs = self.runs[path]
        return median(c for c, _ in pairs), median(w for _, w in pairs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"records": self.records, "rounds": self.rounds, "runs": self.runs}
        if native.NATIVE in self.runs:
            (pc, pw), (nc, nw) = self.medians(native.PYTHON), self.medians(native.NATIVE)
            out["ratio_cold"], out["ratio_warm"] = nc / pc, nw / pw
        return out

    def table(self) -> str:
        lines = [f"Pipeline.process, analytics off, {self.records:,} sample records"]
        for path in self.runs:
            cold, warm = self.medians(path)
            lines.append(f"  {path:7} cold {cold:6.2f} µs/record   warm {warm:6.2f} µs/record")
        if native.NATIVE in self.runs:
            data = self.to_json()
            lines.append(
                f"  native / python: cold {data['ratio_cold']:.2f}, warm {data['ratio_warm']:.2f}"
                f" (medians of {self.rounds} rounds)"
            )
        else:
            lines.append(f"  native: not built ({native.MISSING})")
        return "\n".join(lines)


def _passes(pipeline: Pipeline, batches: list[list[Any]], n: int) -> tuple[float, float]:
    times = []
    for _ in range(PASSES):
        started = time.process_time()
        for batch in batches:
            pipeline.process(batch)
        times.append((time.process_time() - started) / n * 1e6)
    return times[0], min(times[1:])


def run(records: int, rounds: int, progress: Callable[[str], None]) -> PipelineReport:
    values = [orjson.dumps(r) for r in generate_records(records, seed=1)]
    messages = [
        Message(topic="in", partition=0, offset=i, key=None, value=v) for i, v in enumerate(values)
    ]
    batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    paths = [(native.PYTHON, False)] + ([(native.NATIVE, True)] if native.AVAILABLE else [])
    report = PipelineReport(records, rounds)
    for round_ in range(rounds):
        for name, use_native in paths:
            progress(f"round {round_ + 1}/{rounds}: {name}")
            pipeline = Pipeline(
                ReloadableClassifier(shipped_rule_files()),
                output_topic="out",
                dlq_topic="dlq",
                native=use_native,
            )
            report.runs.setdefault(name, []).append(_passes(pipeline, batches, len(messages)))
    return report
