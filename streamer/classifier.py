"""The bounce classifier: rules + engine + two LRU caches, plus reload and a batch/async API.

Semantics are KumoMTA's ``configure_bounce_classifier``: the label of the lowest-index matching
pattern, else ``Uncategorized``. Results are cached by line in two separate LRUs so a flood of
unknown responses (Uncategorized) cannot evict the useful entries.

Cache counters: a line served from a cache counts a hit on that cache; a line that had to be
classified counts a miss on the cache its result is stored in. So for each cache,
``hits / (hits + misses)`` is the share of its kind of lines answered from memory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any

from streamer.cache import LRUCache
from streamer.engine import EngineError, MatchEngine
from streamer.evidence import EvidenceMemo
from streamer.rules import UNCATEGORIZED, Rule, RulesError, RuleSet, load_rules

if TYPE_CHECKING:  # imported where used: asyncio costs ~30 ms at a start that never needs it
    import asyncio


@dataclass(frozen=True, slots=True)
class Classification:
    label: str
    rule: Rule | None
    #: What the label rests on (``streamer.evidence``); None for Uncategorized.
    evidence: str | None = None


@dataclass(frozen=True)
class Explanation:
    line: str
    label: str
    rule: Rule | None
    #: Every rule that matches the line, lowest index (the winner) first.
    matches: list[Rule]
    #: What the winner's label rests on (``streamer.evidence``); None for Uncategorized.
    evidence: str | None = None


_UNCATEGORIZED = Classification(UNCATEGORIZED, None)


class Classifier:
    def __init__(
        self, ruleset: RuleSet, cache_size: int = 1024, uncategorized_cache_size: int = 1024
    ) -> None:
        self.ruleset = ruleset
        try:
            self.engine = MatchEngine(ruleset.translations)
        except EngineError as exc:
            where = ruleset.describe(exc.index) if exc.index >= 0 else ", ".join(ruleset.files)
            raise RulesError([f"{where}: {exc.reason}"]) from None
        # (rule index, evidence) -> its result: one long-lived object each, so that callers
        # may remember what they derive from a result by its identity
        self._results: dict[tuple[int, str], Classification] = {}
        self._evidence = EvidenceMemo(self.engine.matches)
        self._categorized: LRUCache[str, Classification] = LRUCache(cache_size)
        self._uncategorized: LRUCache[str, Classification] = LRUCache(uncategorized_cache_size)

    @classmethod
    def from_files(cls, files: Iterable[str | PathLike[str]], **opts: Any) -> Classifier:
        return cls(load_rules(files), **opts)

    @property
    def version(self) -> str:
        return self.ruleset.version

    @property
    def rules(self) -> list[Rule]:
        return self.ruleset.rules

    def classify(self, line: str) -> Classification:
        cat = self._categorized
        hit = cat.lookup(line)
        if hit is not None:
            cat.hits += 1
            return hit
        unc = self._uncategorized
        if unc.lookup(line) is not None:
            unc.hits += 1
            return _UNCATEGORIZED
        idx = self.engine.first_match(line)
        if idx < 0:
            unc.misses += 1
            unc.put(line, _UNCATEGORIZED)
            return _UNCATEGORIZED
        result = self._result(idx, line)
        cat.misses += 1
        cat.put(line, result)
        return result

    def classify_uncached(self, line: str) -> Classification:
        """Classify without touching the caches (benchmarks, explain)."""
        idx = self.engine.first_match(line)
        return _UNCATEGORIZED if idx < 0 else self._result(idx, line)

    def _result(self, idx: int, line: str) -> Classification:
        """The result of rule ``idx`` matching ``line``, with the evidence it rests on."""
        evidence = self._evidence(idx, line)
        result = self._results.get((idx, evidence))
        if result is None:  # setdefault: threads racing here keep one object
            rule = self.ruleset.rules[idx]
            result = self._results.setdefault(
                (idx, evidence), Classification(rule.label, rule, evidence)
            )
        return result

    def classify_many(self, lines: Iterable[str]) -> list[Classification]:
        classify = self.classify
        return [classify(line) for line in lines]

    def explain(self, line: str) -> Explanation:
        matches = [self.ruleset.rules[i] for i in self.engine.all_matches(line)]
        winner = self.classify_uncached(line)
        return Explanation(
            line=line,
            label=winner.label,
            rule=winner.rule,
            matches=matches,
            evidence=winner.evidence,
        )

    @property
    def cache_sizes(self) -> tuple[int, int]:
        """Capacities of the categorized and the Uncategorized cache (the native path's caches
        in front of this classifier take the same)."""
        return self._categorized.maxsize, self._uncategorized.maxsize

    def count_hits(self, categorized: int, uncategorized: int) -> None:
        """Count lines a cache in front of this one answered (the native path's): the counters
        keep meaning the share of lines answered from memory."""
        self._categorized.hits += categorized
        self._uncategorized.hits += uncategorized

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return {
            "categorized": self._categorized.stats(),
            "uncategorized": self._uncategorized.stats(),
        }


class ReloadableClassifier:
    """Holds the current classifier; :meth:`reload` swaps in a new one atomically.

    A failed reload raises :class:`RulesError` and keeps serving with the old classifier.
    The old classifier's caches go away with it (they belong to the old rules).
    """

    def __init__(self, files: Iterable[str | PathLike[str]], **opts: Any) -> None:
        self.files = [str(f) for f in files]
        self.opts = opts
        self._lock = threading.Lock()
        self.current: Classifier = Classifier.from_files(self.files, **opts)
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def reload(self) -> Classifier:
        with self._lock:  # two concurrent reloads would only waste work
            try:
                new = Classifier.from_files(self.files, **self.opts)
            except RulesError as exc:
                self.failures += 1
                self.last_error = str(exc)
                raise
            self.current = new  # a single reference assignment: readers see old or new
            self.reloads += 1
            self.last_error = None
            return new

    def classify(self, line: str) -> Classification:
        return self.current.classify(line)

    @property
    def version(self) -> str:
        return self.current.version


class ClassifierPool:
    """Batch/async classification honouring ``pool_size`` and ``back_pressure``.

    ``back_pressure`` bounds the classifications in flight: :meth:`classify_batch` (and
    :meth:`submit`) wait while admitting the new lines would exceed it. With ``pool_size`` 1
    the work runs inline on the caller's thread; with more, batches are split across a thread
    pool of that size. Measured here: RE2's set match holds the GIL, so threads do not add
    throughput (the configuration reference, ``pool_size``); the pool exists for the
    configuration contract and so that long batches can leave the event loop responsive.
    """

    def __init__(
        self,
        classifier: Classifier | ReloadableClassifier,
        pool_size: int = 1,
        back_pressure: int = 131072,
    ) -> None:
        if pool_size < 1 or back_pressure < 1:
            raise ValueError("pool_size and back_pressure must be >= 1")
        self._source = classifier
        self.pool_size = pool_size
        self.back_pressure = back_pressure
        self.in_flight = 0
        self.blocked = 0  # times a caller had to wait for capacity
        self._cond: asyncio.Condition | None = None
        self._executor = None
        if pool_size > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="classify")

    @property
    def classifier(self) -> Classifier:
        src = self._source
        return src.current if isinstance(src, ReloadableClassifier) else src

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            import asyncio

            self._cond = asyncio.Condition()
        return self._cond

    async def _acquire(self, n: int) -> None:
        cond = self._condition()
        async with cond:
            if self.in_flight + n > self.back_pressure:
                self.blocked += 1
                await cond.wait_for(lambda: self.in_flight + n <= self.back_pressure)
            self.in_flight += n

    async def _release(self, n: int) -> None:
        cond = self._condition()
        async with cond:
            self.in_flight -= n
            cond.notify_all()

    async def classify_batch(self, lines: Sequence[str]) -> list[Classification]:
        out: list[Classification] = []
        step = self.back_pressure  # a batch larger than the limit is admitted in slices
        for start in range(0, len(lines), step):
            chunk = lines[start : start + step]
            await self._acquire(len(chunk))
            try:
                out.extend(await self._run(chunk))
            finally:
                await self._release(len(chunk))
        return out

    async def submit(self, line: str) -> Classification:
        return (await self.classify_batch([line]))[0]

    async def _run(self, lines: Sequence[str]) -> list[Classification]:
        classifier = self.classifier  # one rule version per slice, even across a reload
        if self._executor is None or len(lines) < 2 * self.pool_size:
            return classifier.classify_many(lines)
        import asyncio

        loop = asyncio.get_running_loop()
        size = -(-len(lines) // self.pool_size)
        parts = [lines[i : i + size] for i in range(0, len(lines), size)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._executor, classifier.classify_many, p) for p in parts)
        )
        return [c for part in results for c in part]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
