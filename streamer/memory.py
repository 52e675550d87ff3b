"""One memory budget for a worker process, from which every input-keyed bound is derived.

``memory_budget_mb`` is the RSS a worker process should stay under. ``RESERVED_MB`` of it is
what an idle worker holds (the interpreter, the rules and their regex engine, Faust, librdkafka's
threads: measured ~92 MB); the rest, the *usable* part, is split into shares (``SHARES``):

* ``producer_queue`` and ``consumer_queue``: librdkafka's output queue
  (``queue.buffering.max.kbytes``) and prefetch queue (``queued.max.messages.kbytes``);
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
    "producer_queue": 0.15,
    "consumer_queue": 0.05,
    "in_flight": 0.10,
    "windows": 0.15,
    "rollup": 0.10,
    "suppressions": 0.15,
    "caches": 0.15,
}

#: Approximate bytes of one stats row with its counters (measured ~1.1 KB, ~1.3 KB with its
#: own dimension strings) and of its rule-gap detail on average.
ROW_BUDGET_BYTES = 2_000
#: Approximate bytes of one key of the stats rollup with its instances' partials (a partial row
#: as published, ~0.5-1 KB, for the one or two instances a key usually has, and the key's entry).
ROLLUP_ROW_BYTES = 2_500
#: Approximate bytes of one recipient in the suppression stage's memory: a suppressed one keeps
#: its latest hard event's details (measured ~1.8 KB; a delivered-only one ~360 B).
SUPPRESSION_BYTES = 1_800
#: Approximate bytes of one record in flight (measured ~1.1 KB for a 0.6 KB record).
IN_FLIGHT_RECORD_BYTES = 1_500

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


def kafka_queues_kbytes(budget_mb: float) -> tuple[int, int]:
    """librdkafka's (output, prefetch) queue sizes in KiB for a worker of this budget."""
    return (
        max(1024, share_bytes(budget_mb, "producer_queue") // 1024),
        max(1024, share_bytes(budget_mb, "consumer_queue") // 1024),
    )


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
