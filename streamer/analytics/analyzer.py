"""The pipeline's analytics step: what each record adds to the enrichment and the aggregates.

For every decoded record the pipeline calls :meth:`Analyzer.observe` once. It returns the
record's ``category`` and ``provider`` (added to a classified record's ``classification``),
counts the record into the batch's windowed partial counts (:class:`BatchAggregator`), and
returns the suppression-topic writes it causes (a hard bounce, a delivery after one).
:meth:`Analyzer.finish` hands over the batch's partial counts.

Costs are per record, so lookups are cached: the category per (label, reply class), the
provider per receiving site (bounded; a site that names no known provider falls back to the
provider matcher's own LRU over site, peer and recipient domain).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import CategoryTable
from streamer.analytics.heavy import OTHER
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppressions import SuppressionTracker
from streamer.analytics.windows import Counts, Key, WindowedStats
from streamer.config import Settings

#: Distinct sites whose provider is remembered (cleared when full: memory stays flat).
SITE_CACHE_SIZE = 10_000


#: (category, provider, suppression writes): category is None for an unclassified record; a
#: write is (key, value) for the suppressions topic, value None being a tombstone.
Observation = tuple[str | None, str, list[tuple[bytes, bytes | None]]]


class Analyzer:
    def __init__(
        self,
        categories: CategoryTable,
        providers: ProviderMatcher,
        aggregator: BatchAggregator,
        suppressions: SuppressionTracker,
        clock: Any,
    ) -> None:
        self.categories = categories
        self.providers = providers
        self.aggregator = aggregator
        self.suppressions = suppressions
        self.clock = clock
        self._category_of: dict[tuple[str, int], str] = {}
        self._site_provider: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Analyzer:
        """The analyzer ``settings`` describe: shipped tables plus the configured ones."""
        from streamer.analytics import shipped_categories_file, shipped_providers_file

        return cls(
            CategoryTable.load([shipped_categories_file(), *settings.category_files]),
            ProviderMatcher.from_files([shipped_providers_file(), *settings.provider_files]),
            BatchAggregator(
                settings.stats_window,
                settings.stats_dimensions,
                pool_capacity=settings.stats_max_pools,
                source_capacity=settings.stats_max_sources,
                tenant_capacity=settings.stats_max_tenants,
            ),
            SuppressionTracker(settings.suppressions_memory),
            time.time,
        )

    def category(self, label: str, code: Any) -> str:
        klass = code // 100 if type(code) is int else 0
        key = (label, klass)
        category = self._category_of.get(key)
        if category is None:
            category = self.categories.category(label, klass * 100 if klass else None)
            if len(self._category_of) > 4096:  # custom labels are finite, but stay bounded
                self._category_of.clear()
            self._category_of[key] = category
        return category

    def provider(self, record: Mapping[str, Any]) -> str:
        site = record.get("site")
        if type(site) is str and site:
            provider = self._site_provider.get(site)
            if provider is None:
                provider = self.providers.match_uncached(site, None, None)
                if len(self._site_provider) >= SITE_CACHE_SIZE:
                    self._site_provider.clear()
                self._site_provider[site] = provider
            if provider != OTHER:
                return provider
        return self.providers.match_record(record)

    def observe(
        self,
        record: Mapping[str, Any],
        rtype: str,
        label: str | None,
        rule: Any,
        line: str | None,
    ) -> Observation:
        """Count one record; ``label``/``rule``/``line`` are None for unclassified types."""
        provider = self.provider(record)
        category = None
        if label is not None:
            response = record.get("response")
            code = response.get("code") if type(response) is dict else None
            category = self.category(label, code)
        self.aggregator.add(record, rtype, label, category, provider, line)
        writes = self.suppressions.update(
            record, label, category, rule, line, provider, self.clock()
        )
        return category, provider, writes

    def finish(self) -> dict[Key, Counts]:
        """The batch's partial counts per (window, dimensions); the next batch starts empty."""
        return self.aggregator.finish()


def windows_from_settings(settings: Settings) -> WindowedStats:
    """The windowed statistics of a worker: late records re-create forgotten windows."""
    return WindowedStats(
        window_s=settings.stats_window,
        grace_s=settings.stats_grace,
        retention_s=settings.stats_retention,
        max_keys=settings.stats_max_rows,
        recreate_late=True,
    )
