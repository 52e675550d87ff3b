"""The classifier's state: the rules loaded, their reloads, its caches, its record path."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge


class ClassifierMetrics:
    """Which rules classify, whether reloads work, and how well the caches hit."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.cache_hits = Counter(
            "streamer_cache_hits", "Classifier cache hits.", ["cache"], registry=r
        )
        self.cache_misses = Counter(
            "streamer_cache_misses", "Classifier cache misses.", ["cache"], registry=r
        )
        self.rules_info = Gauge(
            "streamer_rules_info",
            "The loaded rules' version (value is always 1).",
            ["version"],
            registry=r,
        )
        self.native_path = Gauge(
            "streamer_native_path",
            "1: records take the native record path (streamer._native); 0: the Python path.",
            registry=r,
        )
        self.rules_reloads = Counter(
            "streamer_rules_reloads", "Successful rules reloads.", registry=r
        )
        self.rules_reload_failures = Counter(
            "streamer_rules_reload_failures", "Failed rules reloads (old rules kept).", registry=r
        )
        self._rules_version: str | None = None
        self._cache_seen: dict[tuple[str, str], int] = {}

    def set_rules_version(self, version: str) -> None:
        if self._rules_version is not None and self._rules_version != version:
            self.rules_info.remove(self._rules_version)
        self._rules_version = version
        self.rules_info.labels(version).set(1)

    def update_cache_stats(self, stats: Mapping[str, Mapping[str, int]], *, reset: bool) -> None:
        """Feed the cumulative counts of the current classifier's caches (reset: a new one)."""
        if reset:
            self._cache_seen.clear()
        for cache, s in stats.items():
            for kind, counter in (("hits", self.cache_hits), ("misses", self.cache_misses)):
                now = int(s.get(kind, 0))
                delta = now - self._cache_seen.get((cache, kind), 0)
                if delta > 0:
                    counter.labels(cache).inc(delta)
                self._cache_seen[cache, kind] = now
