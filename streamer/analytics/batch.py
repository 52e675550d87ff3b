"""Per-batch pre-aggregation: one dict update per record, merged into the windows per batch.

The worker calls :meth:`BatchAggregator.add` for every record it has classified and hands
:meth:`BatchAggregator.finish` to :meth:`WindowedStats.add` once per batch, so the windowed
state is touched once per (window, key) per batch instead of once per record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streamer.analytics.heavy import OTHER, BoundedDimension
from streamer.analytics.templates import template
from streamer.analytics.windows import DIMENSIONS, GAP_CAPACITY, Counts, Key, event_time_ms
from streamer.cache import LRUCache
from streamer.feedback import feedback_type
from streamer.rules import UNCATEGORIZED

#: KumoMTA's record types (kumo-log-types RecordType, plus "Delay" seen in some exports).
KNOWN_TYPES = frozenset(
    {
        "Reception",
        "Delivery",
        "Bounce",
        "TransientFailure",
        "Expiration",
        "AdminBounce",
        "OOB",
        "Feedback",
        "Rejection",
        "AdminRebind",
        "Delayed",
        "Delay",
        "XferOut",
        "XferIn",
        "Any",
    }
)

#: A dimension that is switched off is reported with this value.
ALL = "*"


def tenant_of(record: Mapping[str, Any]) -> str:
    """The tenant of a record; ``""`` when it has none.

    ``meta.tenant`` wins when it is a non-empty string: it is the explicit field KumoMTA derives
    the queue name from, and it survives custom queue names (``meta.queue``). Otherwise the
    tenant part of the queue name: ``campaign:tenant@domain`` or ``tenant@domain`` (an
    optional ``!routing_domain`` suffix sits in the domain part and is ignored).
    """
    meta = record.get("meta")
    if type(meta) is dict:
        t = meta.get("tenant")
        if type(t) is str and t:
            return t
    queue = record.get("queue")
    if type(queue) is not str:
        return ""
    head, at, _ = queue.rpartition("@")
    if not at:
        return ""
    return head.partition(":")[2] if ":" in head else head


class BatchAggregator:
    """Accumulates one batch of records into :class:`Counts` per window key.

    The bounded dimensions live as long as the aggregator (create one per worker and reuse
    it across batches); they are rebalanced whenever a newer window starts, so a value's
    mapping to itself or to "other" is stable inside a window. The provider is not bounded
    here: its values come from the provider table, which bounds it already.
    """

    def __init__(
        self,
        window_s: float = 60,
        dimensions: Iterable[str] = DIMENSIONS,
        pool_capacity: int = 200,
        source_capacity: int = 1000,
        tenant_capacity: int = 500,
        type_capacity: int = 16,
        gap_capacity: int = GAP_CAPACITY,
        template_cache: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        enabled = set(dimensions)
        unknown = enabled - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimensions: {sorted(unknown)}; use {list(DIMENSIONS)}")
        self.enabled = enabled
        self._by_provider = "provider" in enabled
        self._by_pool = "egress_pool" in enabled
        self._by_source = "egress_source" in enabled
        self._by_tenant = "tenant" in enabled
        self.window_ms = int(window_s * 1000)
        self.gap_capacity = gap_capacity
        self.clock = clock
        self.pool = BoundedDimension(pool_capacity, rebalance_every=0)
        self.source = BoundedDimension(source_capacity, rebalance_every=0)
        self.tenant = BoundedDimension(tenant_capacity, rebalance_every=0)
        # unknown record types (input values too) beyond type_capacity count as "other"
        self.types = BoundedDimension(type_capacity, rebalance_every=0)
        self.watermark: int | None = None  # largest event time seen (ms): feed it to due()
        self._latest_window: int | None = None
        self._templates: LRUCache[str, str] = LRUCache(template_cache)
        self._partial: dict[Key, Counts] = {}

    def _new_window(self, start: int) -> None:
        if self._latest_window is not None:
            for dim in (self.pool, self.source, self.tenant, self.types):
                dim.rebalance()
        self._latest_window = start

    def add(
        self,
        record: Mapping[str, Any],
        rtype: str,
        label: str | None,
        category: str | None,
        provider: str,
        line: str | None,
    ) -> None:
        """Count one record. ``label``/``category``/``line`` are None for records that were not
        classified (Reception, Delivery...). Uncategorized lines become gap templates."""
        ts = record.get("timestamp")
        if type(ts) is int and "event_time" not in record:  # KumoMTA's usual form, fast
            t: int | None = ts * 1000
        else:
            t = event_time_ms(record)
        if t is None:
            t = int(self.clock() * 1000)
        elif self.watermark is None or t > self.watermark:
            self.watermark = t
        start = t - t % self.window_ms
        latest = self._latest_window
        if latest is None or start > latest:
            self._new_window(start)
        pool = record.get("egress_pool")
        source = record.get("egress_source")
        key: Key = (
            start,
            provider if self._by_provider else ALL,
            self.pool.map(pool if type(pool) is str else "") if self._by_pool else ALL,
            self.source.map(source if type(source) is str else "") if self._by_source else ALL,
            self.tenant.map(tenant_of(record)) if self._by_tenant else ALL,
        )
        c = self._partial.get(key)
        if c is None:
            c = self._partial[key] = Counts(self.gap_capacity)
        if rtype not in KNOWN_TYPES:
            rtype = self.types.map(rtype)
        counts = c.counts
        counts[rtype] = counts.get(rtype, 0) + 1
        if label is not None:
            c.labels[label] = c.labels.get(label, 0) + 1
        if category is not None:
            c.categories[category] = c.categories.get(category, 0) + 1
        if rtype == "Feedback":
            ft = feedback_type(record) or OTHER  # a bounded set: feedback types are inputs too
            c.complaints[ft] = c.complaints.get(ft, 0) + 1
        elif label == UNCATEGORIZED and line:
            cache = self._templates
            tpl = cache.lookup(line)
            if tpl is None:
                tpl = template(line)
                cache.put(line, tpl)
            c.add_gap(tpl, line)

    def finish(self) -> dict[Key, Counts]:
        """The batch's counts per key; the aggregator starts a new batch."""
        out, self._partial = self._partial, {}
        return out
