"""``streamer classify`` records through the worker's native record path, byte for byte.

The worker's native path (``streamer._native.RecordPath``, see :mod:`streamer.native`) decides
a whole list of records in one call and writes an enriched record by splicing the enrichment
into its original bytes. ``classify`` writes each record as orjson re-encodes it, so the two
agree only where a record's line is already orjson's own writing of its value: each chunk's
lines are first sorted by ``streamer._native.canonical_or_none`` (in one call), and only those
take the native path. Whatever it hands back (another form of JSON, a malformed line, a
Feedback record, a hard Bounce with analytics on...) takes the Python path of
:class:`~streamer.offline.labeller.Labeller`, which stays the reference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from streamer import native as native_path
from streamer.analytics.categories import HARD, CategoryTable
from streamer.analytics.heavy import OTHER
from streamer.analytics.providers import ProviderMatcher, recipient_domain
from streamer.analytics.suppressions import rule_object
from streamer.classifier import Classification, Classifier
from streamer.records import CLASSIFIABLE_TYPES, LOG_HOOK_TYPE, RECORD_TYPES
from streamer.rules import UNCATEGORIZED

log = logging.getLogger("streamer.offline")

#: A response line's (label, classification object), as the Python labeller makes them.
Made = Callable[[str, Classification], tuple[str, dict[str, Any]]]
#: The window of the native tally: ``classify`` keeps none of its counts, and one window for
#: every event time (~35 years) keeps its distinct keys, so its draining, rare.
_WINDOW_MS = 1 << 40
#: The native tally's counts are thrown away after this many chunks (its rule-gap lines grow
#: with the records: bounded memory), or sooner when it holds this many distinct keys.
_DRAIN_EVERY = 16
_DRAIN_AT = 4096
#: Answers of the record path that are a classified record: (value, type, label, site, seconds,
#: a hard bounce's suppression events), as :data:`streamer.native.Enriched`.
_ENRICHED = 6


class NativeRecordRows:
    """The output rows of records, from the native record path where it writes them exactly
    as the Python path would (None where the Python path must make the row)."""

    def __init__(
        self,
        classifier: Classifier,
        made: Made,
        max_bytes: int,
        cache_size: int,
        tables: tuple[CategoryTable, ProviderMatcher] | None,
    ) -> None:
        native = native_path.module()
        self.classifier = classifier
        self._made = made
        # KumoMTA's size limit counts a line's newline; an input's unterminated last line
        # (its limit is one byte more) takes the Python path
        self._path = native.RecordPath(
            self._resolve,
            max(max_bytes - 1, 0),
            cache_size,
            cache_size,
            [*RECORD_TYPES, LOG_HOOK_TYPE],
            sorted(CLASSIFIABLE_TYPES),
        )
        self._canonical = native.canonical_or_none
        self._tally: Any = None
        self._undrained = 0  # chunks counted since the tally was last emptied
        if tables is not None:  # category and provider in the enrichment: the worker's way
            self._tally = native.Tally()
            self._path.count_into(
                self._tally,
                _WINDOW_MS,
                cache_size,
                (OTHER, HARD, UNCATEGORIZED),
                *_lookups(*tables),
                None,  # no OOB tenant: OOBs take the Python path (classify counts no tenant)
                [],  # no suppression events (nor Feedback labelled here: the Python path's)
            )

    def rows(self, raws: list[bytes], open_last: bool) -> list[bytes | None]:
        """The output row (without its newline) of each of ``raws``, or None (the Python
        path's to make)."""
        values = self._canonical(raws)
        if open_last and values:
            values[-1] = None
        try:
            answers = self._path.decide(values)
        except BaseException as exc:  # a Rust panic arrives as a BaseException
            if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
                log.exception("native record path failed: this chunk takes the Python path")
                return [None] * len(raws)
            raise
        if self._tally is not None:
            self._path.count_until()
            self._undrained += 1
            if self._undrained >= _DRAIN_EVERY or self._tally.pending > _DRAIN_AT:
                self._tally.drain_into({}, [], [])  # counted on the way, kept by no one
                self._undrained = 0
        return [
            answer
            if answer is None
            else answer[0]
            if type(answer) is tuple and len(answer) == _ENRICHED
            else raw  # passed through: the record's bytes are its orjson writing
            for raw, answer in zip(raws, answers, strict=True)
        ]

    def _resolve(self, line: str) -> tuple[bool, str, bytes, bytes, bool, bytes]:
        """A line the native caches lack: the Python labeller's label and classification
        object, encoded (every record may take the dimensions: ``classify`` counts none)."""
        result = self.classifier.classify_uncached(line)  # the native caches are the cache
        label, obj = self._made(line, result)
        rule = orjson.dumps(rule_object(result.rule))  # a hard bounce's event: unused here
        return result.rule is not None, label, orjson.dumps(label), orjson.dumps(obj), True, rule


def _lookups(
    categories: CategoryTable, providers: ProviderMatcher
) -> tuple[Callable[..., tuple[str, bytes]], ...]:
    """What the native path asks of a value it has not seen (``Analyzer.native_lookups``,
    from the tables alone): the provider of a site, a peer (MX) name, a recipient domain, and
    the category of a label for a reply class (as a code, 0 when none)."""

    def named(name: str) -> tuple[str, bytes]:
        return name, orjson.dumps(name)

    return (
        lambda site: named(providers.match_uncached(site, None, None)),
        lambda name: named(providers.match_uncached(None, name, None)),
        lambda domain: named(providers.match_uncached(None, None, recipient_domain(domain))),
        lambda label, code: named(categories.category(label, code or None)),
    )
