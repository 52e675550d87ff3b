"""One memory budget for a worker process, from which every input-keyed bound is derived.

``memory_budget_mb`` is the RSS a worker process should stay under. ``RESERVED_MB`` of it is
what an idle worker holds (the interpreter, the rules and their regex engine, Faust, librdkafka's
threads: measured ~92 MB); the rest, the *usable* part, is split into shares (``SHARES``):

* ``kafka``: what librdkafka's clients in the process may hold, split between them by
  ``KAFKA_CLIENTS`` (the records' consumer and producer, each keyed stage's consumer, producer
  and changelog reader, the Redis mirror's consumer): a consumer its prefetch queue
  (``queued.max.messages.kbytes``) plus the one fetch response that may overshoot it, counted
  decompressed (``fetch.max.bytes`` x ``FETCH_EXPANSION``); a producer its queue of writes
  waiting for the broker (``queue.buffering.max.kbytes`` and, for librdkafka's own bytes per
  message, ``queue.buffering.max.messages``) (``kafka_client_config``);
* ``in_flight``: records consumed and not yet acknowledged, ``back_pressure`` of them at
  ``IN_FLIGHT_RECORD_BYTES`` each (a KumoMTA record, its fetched message and its output);
* ``windows``: the windowed stats, ``stats_max_rows`` rows at ``ROW_BUDGET_BYTES`` each (a row,
  its counters, and its share of rule-gap templates and examples); the windows account the
  approximate bytes of what they hold against ``stats_max_rows * ROW_BUDGET_BYTES`` as values
  arrive (``streamer.analytics.windows``);
* ``rollup``: the keys (window and dimensions) the stats rollup stage holds, their instances'
  latest partial rows (``stats_rollup_rows`` at ``ROLLUP_ROW_BYTES`` each, accounted in bytes as
  partials arrive: ``streamer.analytics.rollup``);
* ``suppressions``: the recipients the suppression stage remembers (``suppressions_memory``,
  ``SUPPRESSION_BYTES`` each);
* ``caches``: the lookup caches and rolling tops (``cache_size``, ``uncategorized_cache_size``,
  ``analytics_cache_size``, ``metrics_top_keys``), their values at the default budget scaled
  with the usable part (at the default: ~5 MB of caches, and ~20 MB for the two rolling tops,
  which keep up to ``metrics_top_keys`` keys in each of their 30 buckets);
* the rest is headroom: the tally between folds, a stats update being encoded, allocator
  fragmentation.

A bound given explicitly (flag, environment, config file) wins over its derived value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_BUDGET_MB = 250
#: An idle worker's RSS, measured ~92 MB (``bench soak`` before its first record), rounded up.
RESERVED_MB = 100
#: The smallest budget accepted: the reserve plus room for some of everything.
MIN_BUDGET_MB = RESERVED_MB + 50

SHARES: dict[str, float] = {
    "kafka": 0.20,
    "in_flight": 0.10,
    "windows": 0.15,
    "rollup": 0.10,
    "suppressions": 0.15,
    "caches": 0.15,
}

#: Bytes of one stats row in a worker's RSS: measured ~1.1 KB alone (~1.3 KB with its own
#: dimension strings) plus its rule-gap detail, but ~3.9 KB per row of RSS in the
#: 2,000,000-record replay (11,250 -> 1,000 rows gave back 40 MB: the updates built from the
#: rows, the allocator's share), which is what the budget has to hold.
ROW_BUDGET_BYTES = 4_000
#: Approximate bytes of one key of the stats rollup with its instances' partials (a partial row
#: as published, ~0.5-1 KB, for the one or two instances a key usually has, and the key's entry).
ROLLUP_ROW_BYTES = 2_500
#: Bytes of one recipient in the suppression stage's memory: a suppressed one keeps its latest
#: hard event's details (measured ~1.8 KB alone; a delivered-only one ~360 B), ~2.8 KB per
#: recipient of RSS in the 2,000,000-record replay (12,500 -> 1,000 gave back 32 MB).
SUPPRESSION_BYTES = 3_000
#: Approximate bytes of one record in flight (measured ~1.1 KB for a 0.6 KB record).
IN_FLIGHT_RECORD_BYTES = 1_500

#: librdkafka's clients in one worker process: how many of each kind, and the part of the
#: ``kafka`` share each one may hold. The record path moves most bytes; a keyed stage's inputs
#: and writes are a batch (2,000) of small values at a time.
KAFKA_CLIENTS: dict[str, tuple[int, float]] = {
    "records_consumer": (1, 0.30),  # the input records (streamer.kafka.source)
    "records_producer": (1, 0.30),  # outputs, dead letters, stage inputs (streamer.kafka.sink)
    "stage_consumer": (2, 0.07),  # each keyed stage's inputs
    "stage_producer": (2, 0.07),  # each keyed stage's public and changelog writes
    "changelog_reader": (2, 0.04),  # each keyed stage's restore on assignment
    "mirror_consumer": (1, 0.04),  # the Redis mirror of the suppressions (when configured)
}
#: A fetch response is bounded compressed (``fetch.max.bytes``), its records are queued
#: decompressed: lz4 batches of KumoMTA's JSON records measured 3.75x (a 4 MiB fetch queued
#: 15.7 MB). Half of a consumer's bytes go to that one fetch, half to its queue.
FETCH_EXPANSION = 4
#: librdkafka's own bytes per queued message besides its key and value (~150 B); a producer's
#: message count is bounded so that these stay under 60% of its queue's bytes.
PRODUCER_MESSAGE_BYTES = 256
PRODUCER_OVERHEAD = 0.6
#: The smallest values derived (a tiny budget still fetches and queues something useful).
MIN_FETCH_BYTES = 32_768
MIN_QUEUE_KBYTES = 128

#: The cache sizes at the default budget; another budget scales them with its usable part.
CACHE_DEFAULTS: dict[str, int] = {
    "cache_size": 1024,
    "uncategorized_cache_size": 1024,
    "analytics_cache_size": 4096,
    "metrics_top_keys": 2000,
}
#: Lower limits of the derived values (each setting's own minimum).
_MINIMUM = {"analytics_cache_size": 16}


def usable_bytes(budget_mb: float) -> int:
    """What the budget leaves for input-keyed state once the reserve is taken."""
    return int(max(budget_mb - RESERVED_MB, 0) * 1_000_000)


def share_bytes(budget_mb: float, share: str) -> int:
    return int(usable_bytes(budget_mb) * SHARES[share])


def derived_bounds(budget_mb: float) -> dict[str, int]:
    """Every bound the budget implies that is a setting, by setting name."""
    scale = usable_bytes(budget_mb) / usable_bytes(DEFAULT_BUDGET_MB)
    bounds = {
        "back_pressure": max(1, share_bytes(budget_mb, "in_flight") // IN_FLIGHT_RECORD_BYTES),
        "stats_max_rows": max(1, share_bytes(budget_mb, "windows") // ROW_BUDGET_BYTES),
        "suppressions_memory": max(1, share_bytes(budget_mb, "suppressions") // SUPPRESSION_BYTES),
        "stats_rollup_rows": max(1, share_bytes(budget_mb, "rollup") // ROLLUP_ROW_BYTES),
    }
    for name, default in CACHE_DEFAULTS.items():
        bounds[name] = max(_MINIMUM.get(name, 1), round(default * scale))
    return bounds


def kafka_client_bytes(budget_mb: float, client: str) -> int:
    """The bytes one librdkafka client of this kind may hold (``KAFKA_CLIENTS``)."""
    return int(share_bytes(budget_mb, "kafka") * KAFKA_CLIENTS[client][1])


def kafka_client_config(budget_mb: float, client: str) -> dict[str, int]:
    """librdkafka's queue bounds for one client of this kind (``KAFKA_CLIENTS``) within its
    part of the budget: a consumer's prefetch queue and fetch size, a producer's queue."""
    held = kafka_client_bytes(budget_mb, client)
    if client.endswith("_producer"):
        payload = int(held / (1 + PRODUCER_OVERHEAD))
        return {
            "queue.buffering.max.kbytes": max(MIN_QUEUE_KBYTES, payload // 1024),
            "queue.buffering.max.messages": max(1000, payload // PRODUCER_MESSAGE_BYTES),
        }
    fetch = max(MIN_FETCH_BYTES, held // (2 * FETCH_EXPANSION))
    return {
        "queued.max.messages.kbytes": max(
            MIN_QUEUE_KBYTES, (held - fetch * FETCH_EXPANSION) // 1024
        ),
        "fetch.max.bytes": fetch,
        "max.partition.fetch.bytes": fetch,
        # librdkafka refuses a fetch.max.bytes below message.max.bytes (1 MB by default), the
        # largest request this consumer sends: its requests are small (fetches, commits)
        "message.max.bytes": fetch,
    }


def kafka_client_held_bytes(config: Mapping[str, int]) -> int:
    """What a client with these bounds may hold: the inverse of ``kafka_client_config``."""
    if "queue.buffering.max.kbytes" in config:
        payload = config["queue.buffering.max.kbytes"] * 1024
        return payload + int(
            config["queue.buffering.max.messages"] * PRODUCER_MESSAGE_BYTES * PRODUCER_OVERHEAD
        )
    return config["queued.max.messages.kbytes"] * 1024 + config["fetch.max.bytes"] * FETCH_EXPANSION


def fill_derived(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (a settings source's values) with every bound it does not give derived from
    its ``memory_budget_mb`` (or the default budget). A budget that is no number is left for
    the setting's own validation to report."""
    out = dict(data)
    raw = out.get("memory_budget_mb", DEFAULT_BUDGET_MB)
    try:
        budget = float(raw)
    except (TypeError, ValueError):
        return out
    if budget < MIN_BUDGET_MB:
        return out  # reported by the setting's own bound
    for name, value in derived_bounds(budget).items():
        out.setdefault(name, value)
    return out


def stats_byte_budget(max_rows: int) -> int:
    """The bytes the windowed stats may hold: ``max_rows`` rows with their gap detail."""
    return max_rows * ROW_BUDGET_BYTES


def rollup_byte_budget(rows: int) -> int:
    """The bytes the stats rollup stage may hold: ``rows`` keys with their partials."""
    return rows * ROLLUP_ROW_BYTES
