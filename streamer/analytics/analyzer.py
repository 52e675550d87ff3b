"""The pipeline's analytics step: what each record adds to the enrichment and the aggregates.

For every decoded record the Python path calls :meth:`Analyzer.observe` once. It returns the
record's ``category`` and ``provider`` (added to a classified record's ``classification``),
counts the record into the batch's windowed partial counts (:class:`BatchAggregator`), and
returns the suppression events it causes (a hard bounce, a complaint, a delivery: see
``streamer.analytics.suppressions``).
:meth:`BatchAggregator.fold_into` then counts the tally into the windows at each stats flush.

Costs are per record, so lookups are cached: the category per (label, reply class), the
provider per receiving site, else per peer (MX) name, else per recipient domain (all bounded).
Where the native record path runs (``streamer.native``), it counts the records it decides
itself, asking :meth:`Analyzer.native_lookups` for the provider and category of a value it has
not seen; this module stays the reference, and the path of every record it hands back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import HARD, CategoryTable
from streamer.analytics.heavy import OTHER
from streamer.analytics.providers import INBOUND_TYPES, ProviderMatcher, recipient_domain
from streamer.analytics.suppressions import SuppressionEvent, SuppressionEvents
from streamer.analytics.windows import WindowedStats
from streamer.config import Settings
from streamer.evidence import DEFAULT_SUPPRESS_EVIDENCE, FEEDBACK_REPORT, REPLY_CODE, may_suppress
from streamer.feedback import complained_about
from streamer.memory import stats_byte_budget
from streamer.records import LOG_HOOK_TYPE, LOG_RECORD_PROTOCOL, first_recipient

#: (category, provider, suppression events): category is None for an unclassified record; an
#: event is (key, value) for the suppression events topic (its source not added yet).
Observation = tuple[str | None, str, Sequence[SuppressionEvent]]
#: A lookup of the native path: a name and its JSON (as orjson writes it).
Named = tuple[str, bytes]


class Analyzer:
    def __init__(
        self,
        categories: CategoryTable,
        providers: ProviderMatcher,
        aggregator: BatchAggregator,
        suppressions: SuppressionEvents,
        clock: Any,
        cache_size: int = 4096,
        suppress_evidence: Iterable[str] = DEFAULT_SUPPRESS_EVIDENCE,
    ) -> None:
        #: The evidence a hard classification must rest on to suppress (``streamer.evidence``).
        self.suppress_evidence = frozenset(suppress_evidence)
        #: Evidence whose records :meth:`observe` counts without being told it (None): trusted,
        #: and no rule gap. The pipeline names every other evidence to :meth:`observe`, and
        #: the native path leaves such records (few) to the Python path.
        self.observer_evidence: frozenset[str | None] = frozenset(
            {*(self.suppress_evidence - {REPLY_CODE}), FEEDBACK_REPORT, None}
        )
        self.categories = categories
        self.providers = providers
        self.aggregator = aggregator
        self.suppressions = suppressions
        self.clock = clock
        self._category_of: dict[tuple[str, int], str] = {}
        self.cache_size = cache_size  # each lookup cache is emptied when it reaches this
        self._site_provider: dict[str, str] = {}
        self._domain_provider: dict[str, str] = {}
        self._peer_provider: dict[str, str] = {}

    def native_lookups(
        self,
    ) -> tuple[
        Callable[[str], Named], Callable[[str], Named], Callable[[str], Named], Callable[..., Named]
    ]:
        """What the native path asks on a value it has not seen (it keeps the answers, bounded
        like these caches): the provider of a site, of a peer (MX) name, of a recipient
        domain, and :meth:`category` of (label, reply code)."""

        def named(name: str) -> Named:
            return name, orjson.dumps(name)

        return (
            lambda site: named(self._by_site(site)),
            lambda name: named(self._by_peer(name)),
            lambda domain: named(self._by_domain(domain)),
            lambda label, code: named(self.category(label, code)),
        )

    def oob_tenant_meta(self) -> str | None:
        """The ``meta`` key an OOB's tenant is read from, for the native path: None when the
        tally and the suppression events read different keys (its OOBs then take Python's)."""
        key = self.aggregator.oob_tenant_meta
        return key if key == self.suppressions.oob_tenant_meta else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Analyzer:
        """The analyzer ``settings`` describe: shipped tables plus the configured ones."""
        from streamer.analytics import tables_from_settings

        categories, providers = tables_from_settings(settings)
        return cls(
            categories,
            providers,
            BatchAggregator(
                settings.stats_window,
                settings.stats_dimensions,
                pool_capacity=settings.stats_max_pools,
                source_capacity=settings.stats_max_sources,
                tenant_capacity=settings.stats_max_tenants,
                gap_capacity=settings.stats_max_gaps,
                cache_size=settings.analytics_cache_size,
                oob_tenant_meta=settings.oob_tenant_meta,
            ),
            SuppressionEvents(settings.suppress_feedback_types, settings.oob_tenant_meta),
            time.time,
            settings.analytics_cache_size,
            suppress_evidence=settings.suppress_evidence,
        )

    def category(self, label: str, code: Any) -> str:
        klass = code // 100 if type(code) is int else 0
        key = (label, klass)
        category = self._category_of.get(key)
        if category is None:
            category = self.categories.category(label, klass * 100 if klass else None)
            if len(self._category_of) >= self.cache_size:  # custom labels: finite, yet bounded
                self._category_of.clear()
            self._category_of[key] = category
        return category

    def provider(self, record: Mapping[str, Any]) -> str:
        """The mailbox provider: by the receiving site (MX) first, else the recipient domain.

        The clues of ``providers.record_clues`` (what ``ProviderMatcher.match_record`` reads),
        with a cache per clue and exact-type checks: every record comes here.
        """
        site = record.get("site")
        if type(site) is str and site:
            provider = self._site_provider.get(site)  # inlined _cached: every record comes here
            if provider is None:
                provider = self._cached(self._site_provider, site, self._by_site)
            if provider != OTHER:
                return provider
        rtype = record.get("type")
        if rtype == "Feedback":  # the complainer's mailbox provider, not the report's sender
            recipient: Any = complained_about(record)[0]
        else:
            peer = record.get("peer_address")
            if type(peer) is dict and rtype not in INBOUND_TYPES:
                name = peer.get("name")  # the receiving MX when the site named none we know
                if type(name) is str and name:
                    provider = self._cached(self._peer_provider, name, self._by_peer)
                    if provider != OTHER:
                        return provider
            if rtype == "Rejection" or record.get("reception_protocol") == LOG_RECORD_PROTOCOL:
                recipient = first_recipient(record)  # the refused address; a log hook's: none
            else:
                recipient = record.get("recipient")
                if type(recipient) is list and recipient:  # a multi-recipient transaction: one
                    recipient = recipient[0]  # destination domain (KumoMTA batches per queue)
        if type(recipient) is not str:
            return OTHER
        domain = recipient.rpartition("@")[2]
        return self._cached(self._domain_provider, domain, self._by_domain)

    def _cached(self, cache: dict[str, str], key: str, compute: Callable[[str], str]) -> str:
        """``compute(key)`` remembered in ``cache``, emptied when full (flat memory)."""
        value = cache.get(key)
        if value is None:
            value = compute(key)
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[key] = value
        return value

    def _by_site(self, site: str) -> str:
        return self.providers.match_uncached(site, None, None)

    def _by_peer(self, name: str) -> str:
        return self.providers.match_uncached(None, name, None)

    def _by_domain(self, domain: str) -> str:
        return self.providers.match_uncached(None, None, recipient_domain(domain))

    def observe(
        self,
        record: Mapping[str, Any],
        rtype: str,
        label: str | None,
        rule: Any,
        line: str | None,
        evidence: str | None = None,
    ) -> Observation:
        """Count one record; ``label``/``rule``/``line`` are None for unclassified types.

        ``evidence`` is what a classified record's label rests on; None stands for evidence in
        :attr:`observer_evidence`. A hard record suppresses only on evidence in
        :attr:`suppress_evidence`; a reply-code match counts as a rule gap. The reference
        path: the native one (``streamer.native``) counts alike.
        A log hook's bookkeeping record counts as :data:`LOG_HOOK_TYPE` whatever its type and
        label: no outcome, no category, no suppression write (``recipients`` has nobody).
        """
        if record.get("reception_protocol") == LOG_RECORD_PROTOCOL:
            rtype, label, rule, line = LOG_HOOK_TYPE, None, None, None
        provider = self.provider(record)
        category = None
        if label is not None:
            response = record.get("response")
            code = response.get("code") if type(response) is dict else None
            category = self.category(label, code)
        gap = evidence == REPLY_CODE
        self.aggregator.add(record, rtype, label, category, provider, line, gap)
        if rtype != "Delivery" and category != HARD:
            if rtype == "Feedback" and self.suppressions.complaint_type(record) is not None:
                return (
                    category,
                    provider,
                    self._suppress(record, label, category, rule, line, provider),
                )
            return category, provider, []  # the common case: nothing to suppress or lift
        if category == HARD and not may_suppress(evidence, self.suppress_evidence):
            return category, provider, []  # a label, not proof that the address is bad
        return category, provider, self._suppress(record, label, category, rule, line, provider)

    def _suppress(
        self,
        record: Mapping[str, Any],
        label: str | None,
        category: str | None,
        rule: Any,
        line: str | None,
        provider: str,
    ) -> list[SuppressionEvent]:
        return self.suppressions.update(record, label, category, rule, line, provider, self.clock())


def windows_from_settings(settings: Settings) -> WindowedStats:
    """The windowed statistics of a worker: rows, gap templates and examples stay within the
    share of ``memory_budget_mb`` that ``stats_max_rows`` stands for; its updates carry the
    complaint-rate partials (``streamer.analytics.rates``)."""
    return WindowedStats(
        window_s=settings.stats_window,
        grace_s=settings.stats_grace,
        retention_s=settings.stats_retention,
        max_keys=settings.stats_max_rows,
        max_bytes=stats_byte_budget(settings.stats_max_rows),
        rates=True,
    )
