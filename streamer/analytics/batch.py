"""Pre-aggregation: one dict update per record, merged into the windows once per distinct key.

The worker tallies every record it has classified (:meth:`BatchAggregator.add`, or the native
record path for the records it decides: ``streamer.native``) and folds the tally into its
:class:`WindowedStats` at each stats flush (:meth:`BatchAggregator.fold_into`), so the windowed
state is touched once per (window, key) per flush instead of once per record.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

from streamer.analytics.categories import COMPLAINT
from streamer.analytics.heavy import OTHER, BoundedDimension
from streamer.analytics.templates import template
from streamer.analytics.windows import (
    DIMENSIONS,
    GAP_CAPACITY,
    Counts,
    Key,
    WindowedStats,
    event_time_ms,
)
from streamer.cache import LRUCache
from streamer.feedback import complained_about, feedback_type
from streamer.records import LOG_HOOK_TYPE, RECORD_TYPES
from streamer.rules import UNCATEGORIZED

#: KumoMTA's record types and a log hook's bookkeeping records (``LOG_HOOK_TYPE``); other
#: types are input values, bounded (``type_capacity``).
KNOWN_TYPES = frozenset({*RECORD_TYPES, LOG_HOOK_TYPE})

#: ``event_time`` as KumoMTA writes it (UTC, to the second or a fraction of it): the form the
#: caches of ``BatchAggregator._event_ms`` (and the native path) take; any other takes the parse.
_KUMO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](?:\.[0-9]+)?Z")

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


def oob_tenant(record: Mapping[str, Any], meta_key: str = "tenant") -> str:
    """The tenant of an OOB record: ``meta[meta_key]`` when a non-empty string, else ``""``.

    KumoMTA builds an OOB record from the incoming DSN: its ``meta`` and ``queue`` are the DSN
    message's, not those of the message that bounced, so the queue says nothing of the tenant.
    A policy that knows the tenant (from the VERP return path the DSN was sent to, say) sets it
    as meta on the DSN at reception, and logs that meta key (see README "Tenant of an OOB").
    """
    meta = record.get("meta")
    if type(meta) is dict:
        t = meta.get(meta_key)
        if type(t) is str and t:
            return t
    return ""


class Folded:
    """A batch as the deliverability metrics see it: per dimensions (provider, pool, source,
    tenant) the records and their outcomes (``delivered``, or a classified record's category),
    labels per provider, and the Uncategorized templates."""

    __slots__ = ("gaps", "labels", "outcomes", "volume")

    def __init__(self) -> None:
        self.volume: dict[tuple[str, str, str, str], int] = {}
        self.outcomes: dict[tuple[str, str, str, str], dict[str, int]] = {}
        self.labels: dict[tuple[str, str], int] = {}
        self.gaps: dict[str, int] = {}

    def add(self, key: Key, n: int) -> None:
        dims = (key[1], key[2], key[3], key[4])
        self.volume[dims] = self.volume.get(dims, 0) + n

    def count(self, key: Key, rtype: str, label: str | None, category: str | None, n: int) -> None:
        outcome = "delivered" if rtype == "Delivery" else category
        if outcome is not None:
            dims = (key[1], key[2], key[3], key[4])
            tally = self.outcomes.get(dims)
            if tally is None:
                tally = self.outcomes[dims] = {}
            tally[outcome] = tally.get(outcome, 0) + n
        if label is not None:
            self.labels[key[1], label] = self.labels.get((key[1], label), 0) + n


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
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
        oob_tenant_meta: str = "tenant",
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
        self.oob_tenant_meta = oob_tenant_meta
        self.pool = BoundedDimension(pool_capacity, rebalance_every=0)
        self.source = BoundedDimension(source_capacity, rebalance_every=0)
        self.tenant = BoundedDimension(tenant_capacity, rebalance_every=0)
        # unknown record types (input values too) beyond type_capacity count as "other"
        self.types = BoundedDimension(type_capacity, rebalance_every=0)
        self.watermark: int | None = None  # largest event time seen (ms): feed it to updates()
        self._latest_window: int | None = None
        self.cache_size = cache_size  # each lookup cache is emptied (the LRU: trimmed) when full
        self._templates: LRUCache[str, str] = LRUCache(cache_size)
        self._minutes: dict[str, int] = {}  # "2026-11-30T21:40" (UTC) -> its epoch ms
        self._seconds: dict[str, int] = {}  # "2026-11-30T21:40:30" (UTC) -> its epoch ms
        # this batch: raw key -> records, and the few records that also need more than a count
        self._tally: dict[tuple[Any, ...], int] = {}
        # every Feedback record's (key, Feedback-Type)
        self._feedback: list[tuple[tuple[Any, ...], str]] = []
        self._gaps: list[tuple[tuple[Any, ...], str]] = []
        self._tenants: dict[str, str] = {}  # queue name -> tenant
        #: The native path's tally (``streamer._native.Tally``) while it runs: this side counts
        #: there too (``count(key)``, ``gap(key, line)``, ``feedback(key, type)``; False: a key
        #: it cannot hold), so the fold sees one tally in record order; ``drain_into(tally,
        #: gaps, feedback)`` before every fold.
        self.elsewhere: Any = None

    @property
    def pending_keys(self) -> int:
        """Distinct keys tallied since the last fold."""
        elsewhere = self.elsewhere
        return len(self._tally) + (elsewhere.pending if elsewhere is not None else 0)

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
        gap: bool = False,
    ) -> None:
        """Count one record. ``label``/``category``/``line`` are None for records that were not
        classified (Reception, Delivery...). Uncategorized lines become gap templates, and so
        do lines that ``gap`` says only a reply-code fallback classified.

        Runs for every record, so it only tallies raw values under one tuple key; ``finish``
        maps them onto the bounded dimensions once per distinct key of the batch.
        """
        t = self._event_ms(record)
        if t is None:
            t = int(self.clock() * 1000)
        elif self.watermark is None or t > self.watermark:
            self.watermark = t
        start = t - t % self.window_ms
        pool = record.get("egress_pool")
        if type(pool) is not str:
            pool = ""  # as the bounded key counts it; and a list or object is no dict key
        source = record.get("egress_source")
        if type(source) is not str:
            source = ""
        key = (start, provider, pool, source, self._tenant(record), rtype, label, category)
        elsewhere = self.elsewhere
        native = elsewhere is not None and elsewhere.count(key)
        if not native:
            tally = self._tally
            tally[key] = tally.get(key, 0) + 1
        if rtype == "Feedback":
            kind = feedback_type(record) or OTHER
            if not (native and elsewhere.feedback(key, kind)):
                self._feedback.append((key, kind))
        elif (gap or label == UNCATEGORIZED) and line and not (native and elsewhere.gap(key, line)):
            self._gaps.append((key, line))

    def _tenant(self, record: Mapping[str, Any]) -> str:
        rtype = record.get("type")
        if rtype == "Feedback":  # the tenant that sent the message complained of
            return complained_about(record)[1] or ""
        if rtype == "OOB":  # the DSN's queue is not the bounced message's
            return oob_tenant(record, self.oob_tenant_meta)
        meta = record.get("meta")
        if type(meta) is dict and "tenant" in meta:
            return tenant_of(record)
        queue = record.get("queue")
        if type(queue) is not str:
            return ""
        tenant = self._tenants.get(queue)
        if tenant is None:
            tenant = tenant_of(record)
            if (
                len(self._tenants) >= self.cache_size
            ):  # bounded: queue names carry recipient domains
                self._tenants.clear()
            self._tenants[queue] = tenant
        return tenant

    def _event_ms(self, record: Mapping[str, Any]) -> int | None:
        """``event_time_ms`` to the second (all a window needs), cached per distinct minute.

        KumoMTA writes ``event_time`` (RFC 3339, UTC: ``...T21:40:30.123Z``) on every record;
        parsing it costs ~1 µs, while the minute's start from a dict plus the two digits of
        the seconds cost a fraction of that. Only that form takes the caches, so the answer
        never depends on the records seen before (an odd time gets the full parse, then
        ``timestamp``: as ``event_time_ms``, and as the native path).
        """
        et = record.get("event_time")
        if type(et) is str and _KUMO_TIME.fullmatch(et) is not None:
            ms = self._seconds.get(et[:19])  # the common case: a second seen before
            if ms is not None:
                return ms
            minute = self._minutes.get(et[:16])
            if minute is not None:
                ms = minute + int(et[17:19]) * 1000
                if len(self._seconds) >= self.cache_size:  # bounded: a replay walks through time
                    self._seconds.clear()
                self._seconds[et[:19]] = ms
                return ms
            ms = event_time_ms({"event_time": et})
            if ms is not None:
                if len(self._minutes) >= self.cache_size:  # bounded: a replay walks through time
                    self._minutes.clear()
                self._minutes[et[:16]] = ms - ms % 60_000
                return ms - ms % 1000
        ms = event_time_ms(record)
        return None if ms is None else ms - ms % 1000

    def finish(self) -> dict[Key, Counts]:
        """The batch's counts per key; the aggregator starts a new batch."""
        out: dict[Key, Counts] = {}

        def row(key: Key, n: int) -> Counts:
            c = out.get(key)
            if c is None:
                c = out[key] = Counts(self.gap_capacity)
            return c

        self._fold(row)
        return out

    def fold_into(self, windows: WindowedStats, wall: float) -> Folded:
        """Count the batch straight into ``windows`` (no partial rows in between); returns what
        the deliverability metrics need. The aggregator starts a new batch."""
        folded = Folded()

        def row(key: Key, n: int) -> Counts:
            folded.add(key, n)
            return windows.row(key, wall, n, self.gap_capacity)

        self._fold(row, folded)
        return folded

    def _fold(self, row_of: Callable[[Key, int], Counts], folded: Folded | None = None) -> None:
        """Map the batch's raw tally onto bounded keys and count it into ``row_of(key)``."""
        if self.elsewhere is not None:
            self.elsewhere.drain_into(self._tally, self._gaps, self._feedback)
        tally, self._tally = self._tally, {}
        gaps, self._gaps = self._gaps, []
        feedback, self._feedback = self._feedback, []
        # Raw keys differ in their dimensions, type, label and category; the bounded key and
        # the row cost most, so they are found once per (window, dimensions) group.
        groups: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], int]]] = {}
        for raw, n in tally.items():
            dims = raw[:5]
            members = groups.get(dims)
            if members is None:
                groups[dims] = [(raw, n)]
            else:
                members.append((raw, n))
        rows: dict[tuple[Any, ...], Counts] = {}  # (start, dimensions) -> its row
        for dims in sorted(groups, key=itemgetter(0)):  # windows in time order
            members = groups[dims]
            start, provider, pool, source, tenant = dims
            latest = self._latest_window
            if latest is None or start > latest:
                self._new_window(start)
            total = sum(n for _, n in members)
            key = self._key(start, provider, pool, source, tenant, total)
            c = rows[dims] = row_of(key, total)
            for raw, n in members:
                rtype, label, category = raw[5], raw[6], raw[7]
                if rtype not in KNOWN_TYPES:
                    rtype = self.types.map(rtype, n)
                if folded is not None:
                    folded.count(key, rtype, label, category, n)
                c.counts[rtype] = c.counts.get(rtype, 0) + n
                if label is not None:
                    c.labels[label] = c.labels.get(label, 0) + n
                if category is not None:
                    c.categories[category] = c.categories.get(category, 0) + n
        for raw, ft in feedback:  # every report by type; the complaints among them apart
            c = rows[raw[:5]]
            c.feedback[ft] = c.feedback.get(ft, 0) + 1
            if raw[7] == COMPLAINT:
                c.complaints[ft] = c.complaints.get(ft, 0) + 1
        for raw, line in gaps:
            tpl = self._templates.lookup(line)
            if tpl is None:
                tpl = template(line)
                self._templates.put(line, tpl)
            if folded is not None:
                folded.gaps[tpl] = folded.gaps.get(tpl, 0) + 1
            rows[raw[:5]].add_gap(tpl, line)

    def _key(self, start: int, provider: str, pool: Any, source: Any, tenant: str, n: int) -> Key:
        """The bounded window key of ``n`` records with these raw dimension values."""
        return (
            start,
            provider if self._by_provider else ALL,
            self.pool.map(pool if type(pool) is str else "", n) if self._by_pool else ALL,
            self.source.map(source if type(source) is str else "", n) if self._by_source else ALL,
            self.tenant.map(tenant, n) if self._by_tenant else ALL,
        )
