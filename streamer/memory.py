"""One memory budget for a worker process, from which every input-keyed bound is derived.

``memory_budget_mb`` is the RSS a worker process should stay under. ``RESERVED_MB`` of it is
what a worker holds whatever its input (the interpreter, the rules and their regex engine,
librdkafka's buffers, Faust, the batches in flight); the rest, the *usable* part, is split:

* ``WINDOWS_SHARE`` for the windowed stats: ``stats_max_rows`` rows at ``ROW_BUDGET_BYTES``
  each (a row, its counters, and its share of rule-gap templates and examples); the windows
  account the approximate bytes of what they hold against ``stats_max_rows * ROW_BUDGET_BYTES``
  as values arrive (``streamer.analytics.windows``);
* ``SUPPRESSIONS_SHARE`` for the remembered hard-bounced recipients (``suppressions_memory``,
  ``SUPPRESSION_BYTES`` each);
* ``CACHES_SHARE`` for the lookup caches and rolling tops (``cache_size``,
  ``uncategorized_cache_size``, ``analytics_cache_size``, ``metrics_top_keys``), which scale
  with the usable part from their values at the default budget;
* the rest is headroom (the tally between folds, allocator fragmentation).

A bound given explicitly (flag, environment, config file) wins over its derived value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_BUDGET_MB = 250
#: An idle worker's RSS (measured: ~100 MB) plus what a busy one holds whatever its input.
RESERVED_MB = 110
#: The smallest budget accepted: the reserve plus room for a few thousand rows and recipients.
MIN_BUDGET_MB = RESERVED_MB + 20

WINDOWS_SHARE = 0.50
SUPPRESSIONS_SHARE = 0.25
CACHES_SHARE = 0.10

#: Approximate bytes of one stats row with its counters (measured ~1.1 KB, ~1.3 KB with its
#: own dimension strings) and of its rule-gap detail on average.
ROW_BUDGET_BYTES = 2_000
#: Approximate bytes of one remembered recipient (key, entry, ordered-dict slot).
SUPPRESSION_BYTES = 350

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


def derived_bounds(budget_mb: float) -> dict[str, int]:
    """Every input-keyed bound the budget implies, by setting name."""
    usable = usable_bytes(budget_mb)
    scale = usable / usable_bytes(DEFAULT_BUDGET_MB)
    bounds = {
        "stats_max_rows": max(1, int(usable * WINDOWS_SHARE) // ROW_BUDGET_BYTES),
        "suppressions_memory": max(1, int(usable * SUPPRESSIONS_SHARE) // SUPPRESSION_BYTES),
    }
    for name, default in CACHE_DEFAULTS.items():
        bounds[name] = max(_MINIMUM.get(name, 1), round(default * scale))
    return bounds


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
