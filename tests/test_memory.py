"""The worker's data path holds no memory per record: a leak of a few bytes a record shows.

The path a worker runs for every batch, in one process and without Kafka: the pipeline (decode,
classify, enrich, route; analytics on: category, provider, suppressions, the tally), the fold
into the windows with the deliverability metrics, and the update the worker would publish.
``tracemalloc`` counts Python's allocations exactly, so the bound is bytes per record, not the
tens of megabytes a process's RSS wanders by. Every bounded structure (caches, remembered
recipients, windows held, metric series) is sized small so that it is full after the warm-up:
what grows after that is a leak. (The worker's RSS under back-pressure is watched in
``test_worker_kafka.py``; RSS cannot see a leak of this size.)
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from itertools import islice
from typing import Any

import pytest
from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from streamer.analytics.analyzer import Analyzer, windows_from_settings
from streamer.classifier import ReloadableClassifier
from streamer.config import Settings, shipped_rule_files
from streamer.devkit.sample import generate_records, to_message
from streamer.metrics import Metrics
from streamer.pipeline import Pipeline

BATCH = 500
#: Untraced (fast): long enough to meet the rare rule/category/provider combinations whose
#: objects are kept once each (bounded, but otherwise still arriving while measured).
WARM_UP = 30_000
#: Traced before the measure too: entries that bounded caches replace are then traced both
#: when they go and when their successors come, so churn nets out.
TRACED_WARM_UP = 4_000
MEASURED = 16_000
#: Allowed growth over the measured records: 4 bytes a record. Measured: ~1.3 (the last rare
#: combinations met); a leaked reference is 8 bytes a record, a leaked small object 30-60,
#: a kept record ~2 KB.
BOUND = 4 * MEASURED


def _batches(n: int, seed: int) -> Iterator[list[Any]]:
    records = generate_records(n, seed=seed, records_per_second=50.0)
    offset = 0
    while batch := list(islice(records, BATCH)):
        out = []
        for rec in batch:
            m = to_message(rec)
            out.append(Message(topic="in", partition=0, offset=offset, key=m.key, value=m.value))
            offset += 1
        yield out


@pytest.mark.long
@pytest.mark.timeout(240)
def test_the_data_path_holds_no_memory_per_record() -> None:
    settings = Settings(
        files=shipped_rule_files(),
        suppressions_memory=50,
        analytics_cache_size=64,
        stats_retention=60,
        stats_max_tenants=20,
        stats_max_sources=20,
        stats_max_pools=10,
        stats_dimensions=["provider"],  # few rows held: their churn hides no bytes per record
        cache_size=64,
        uncategorized_cache_size=64,
    )
    analyzer = Analyzer.from_settings(settings)
    pipeline = Pipeline(
        ReloadableClassifier(
            settings.rule_files,
            cache_size=settings.cache_size,
            uncategorized_cache_size=settings.uncategorized_cache_size,
        ),
        output_topic="out",
        dlq_topic="in.dlq",
        analyzer=analyzer,
        suppression_events_topic="supp",
    )
    windows = windows_from_settings(settings)
    metrics = Metrics(CollectorRegistry(), max_values=20, top_keys=50)
    batches = list(
        _batches(WARM_UP + TRACED_WARM_UP + MEASURED, seed=71)
    )  # built before anything is measured
    wall = 1_800_000_000.0

    def run(part: list[list[Any]]) -> int:
        outputs = 0
        for batch in part:
            out, _stats = pipeline.process(batch)
            outputs += len(out)
            metrics.deliverability.record(analyzer.aggregator.fold_into(windows, wall))
            windows.updates(analyzer.aggregator.watermark, wall)
        return outputs

    untraced, traced = WARM_UP // BATCH, (WARM_UP + TRACED_WARM_UP) // BATCH
    assert run(batches[:untraced]) >= WARM_UP
    tracemalloc.start()
    try:
        assert run(batches[untraced:traced]) >= TRACED_WARM_UP
        gc.collect()
        before, _peak = tracemalloc.get_traced_memory()
        assert run(batches[traced:]) >= MEASURED
        gc.collect()
        after, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = after - before
    print(f"\n{grown:,} bytes grown over {MEASURED:,} records ({grown / MEASURED:.1f} B/record)")
    assert grown < BOUND, f"{grown:,} bytes kept over {MEASURED:,} records"
