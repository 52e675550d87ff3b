"""Bounded counting of input-valued keys: a space-saving summary and a dimension built on it.

Anything keyed by values from the input (tenants, pools, templates...) can have unbounded
cardinality; these structures hold at most ``capacity`` keys whatever arrives.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

OTHER = "other"


class SpaceSaving(Generic[K]):
    """Metwally et al.'s space-saving summary: at most ``capacity`` counters.

    A new key when full replaces the key with the smallest count and inherits that count as its
    error (so counts over-estimate by at most ``error(key)``, and every key whose true count
    exceeds total/capacity is kept). Finding the minimum uses a heap whose entries may lag behind
    (counts only grow while a key is tracked): an outdated top entry is refreshed and pushed
    back, so each increment costs O(1) and each eviction amortised O(log capacity). The heap
    holds exactly one entry per tracked key, so memory is bounded too.
    """

    __slots__ = ("_counts", "_errors", "_heap", "_seq", "capacity", "total")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.total = 0
        self._counts: dict[K, int] = {}
        self._errors: dict[K, int] = {}
        self._heap: list[tuple[int, int, K]] = []  # (count when pushed, tie-break, key)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def __iter__(self) -> Iterator[K]:
        return iter(self._counts)

    def count(self, key: K) -> int:
        return self._counts.get(key, 0)

    def error(self, key: K) -> int:
        return self._errors.get(key, 0)

    def add(self, key: K, n: int = 1) -> K | None:
        """Count ``n`` more of ``key``; returns the key evicted to make room, if any."""
        self.total += n
        counts = self._counts
        if key in counts:
            counts[key] += n
            return None
        heap = self._heap
        if len(counts) < self.capacity:
            counts[key] = n
            heapq.heappush(heap, (n, next(self._seq), key))
            return None
        while True:  # find the true minimum: refresh entries that lag behind their key's count
            low, _, victim = heap[0]
            current = counts[victim]
            if current == low:
                break
            heapq.heapreplace(heap, (current, next(self._seq), victim))
        del counts[victim]
        self._errors.pop(victim, None)
        counts[key] = low + n
        if low:
            self._errors[key] = low
        heapq.heapreplace(heap, (low + n, next(self._seq), key))
        return victim

    def top(self, n: int | None = None) -> list[tuple[K, int]]:
        """The ``n`` largest (key, count) pairs, largest first; ties in first-tracked order."""
        ranked = sorted(self._counts.items(), key=lambda kv: -kv[1])
        return ranked if n is None else ranked[:n]

    def items(self) -> list[tuple[K, int]]:
        return list(self._counts.items())

    def scale(self, factor: float) -> None:
        """Multiply every count by ``factor`` (0 < factor <= 1): forget old volume gradually.
        Keys whose count drops to 0 are removed."""
        if not 0 < factor <= 1:
            raise ValueError("factor must be in (0, 1]")
        self._counts = {k: c2 for k, c in self._counts.items() if (c2 := int(c * factor)) > 0}
        self._errors = {k: int(e * factor) for k, e in self._errors.items() if k in self._counts}
        self._seq = itertools.count()
        self._heap = [(c, next(self._seq), k) for k, c in self._counts.items()]
        heapq.heapify(self._heap)
        self.total = int(self.total * factor)


class BoundedDimension:
    """Maps a dimension value to itself while it is a heavy hitter, else to ``"other"``.

    Stability policy (so one value does not flap between itself and "other" record by record):

    * values are *admitted* first come while fewer than ``capacity`` are admitted, so a small
      dimension never sees "other";
    * the admitted set only changes at a *rebalance* (every ``rebalance_every`` observations, or
      when :meth:`rebalance` is called, e.g. once per stats window): it becomes the ``capacity``
      values with the largest counts in a space-saving summary of ``capacity * candidates``
      counters, which are then halved so that volume from long ago fades;
    * an admitted value that is still among the top keeps its place; between rebalances a
      value's mapping never changes.

    Memory: at most ``capacity`` admitted values and ``capacity * candidates`` counters.
    """

    __slots__ = ("_admitted", "_since", "capacity", "other", "rebalance_every", "summary")

    def __init__(
        self,
        capacity: int,
        candidates: int = 4,
        rebalance_every: int = 100_000,
        other: str = OTHER,
    ) -> None:
        if capacity < 1 or candidates < 1 or rebalance_every < 0:
            raise ValueError("capacity and candidates must be >= 1, rebalance_every >= 0")
        self.capacity = capacity
        self.other = other
        self.rebalance_every = rebalance_every  # 0: only explicit rebalance() calls
        self.summary: SpaceSaving[str] = SpaceSaving(capacity * candidates)
        self._admitted: set[str] = set()
        self._since = 0

    def __len__(self) -> int:
        return len(self._admitted)

    @property
    def admitted(self) -> frozenset[str]:
        return frozenset(self._admitted)

    def map(self, value: str, n: int = 1) -> str:
        """Count ``n`` observations of ``value``; return ``value`` or ``other``."""
        summary = self.summary
        counts = summary._counts
        if value in counts:  # the common case, inlined
            counts[value] += n
            summary.total += n
        else:
            summary.add(value, n)
        admitted = self._admitted
        if value in admitted:
            result = value
        elif len(admitted) < self.capacity and value != self.other:
            admitted.add(value)
            result = value
        else:
            result = self.other
        if self.rebalance_every:
            self._since += n
            if self._since >= self.rebalance_every:
                self.rebalance()
        return result

    def rebalance(self) -> None:
        """Re-pick the admitted set from the summary's heaviest values (see the class doc)."""
        self._since = 0
        top = [k for k, _ in self.summary.top(self.capacity) if k != self.other]
        self._admitted = set(top[: self.capacity])
        self.summary.scale(0.5)
