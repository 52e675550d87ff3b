"""Generic Prometheus collectors the worker's metrics are built from.

``BulkHistogram`` takes a whole batch of observations per call (a bisect per value instead of a
lock and a label lookup); ``RollingTop`` exports the heaviest keys of a sliding time window.
"""

from __future__ import annotations

import heapq
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class BulkHistogram(Collector):
    """A histogram that takes many observations per call (exported like a normal histogram)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # last slot: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Iterable[float]) -> None:
        bounds = self.bounds
        counts = [0] * len(self._counts)
        total = 0.0
        for v in values:
            counts[bisect_left(bounds, v)] += 1
            total += v
        with self._lock:
            for i, n in enumerate(counts):
                self._counts[i] += n
            self._sum += total

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum

    def collect(self) -> Iterator[Metric]:
        counts, total = self.snapshot()
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, n in zip(self.bounds, counts, strict=False):
            cumulative += n
            buckets.append((repr(bound), cumulative))
        cumulative += counts[-1]
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


LabelValues = tuple[str, ...]


class RollingTop(Collector):
    """A gauge of the ``top`` keys with the most counts over the last ``window`` seconds.

    Keys are tuples of label values. With ``per`` set, each value of that label gets its own top
    list (``streamer_top_sites``: the top sites of each label); without, there is one list.
    Bounded cardinality: at most ``top`` series per list, and a key that drops out of its list
    (or out of the window) is no longer exported. Cheap: ``add`` merges a batch's counts into
    the current time bucket, and ``refresh`` (from the worker's timer) closes buckets as their
    time passes, keeping a running total (add the new bucket, subtract the one leaving the
    window) and recomputing the top lists once per bucket. Memory stays bounded however many
    keys the traffic names: a bucket keeps at most ``max_keys`` keys (its largest), and the
    current bucket is trimmed to that as soon as it holds twice as many.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: LabelValues,
        *,
        per: int | None = None,
        top: int = 20,
        window: float = 300.0,
        buckets: int = 30,
        max_keys: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.per = per
        self.top = top
        self.buckets = buckets
        self.width = window / buckets
        self.max_keys = max_keys
        self.clock = clock
        self._closed: deque[Tally[LabelValues]] = deque()
        self._total: Tally[LabelValues] = Tally()
        self._current: Tally[LabelValues] = Tally()
        self._bucket_start = clock()
        self._series: list[tuple[LabelValues, float]] = []  # replaced whole: read by the scraper

    def add(self, counts: Mapping[Any, int]) -> None:
        if counts:
            self._current.update(counts)
            if len(self._current) > 2 * self.max_keys:
                self._current = Tally(dict(self._current.most_common(self.max_keys)))

    def refresh(self) -> bool:
        """Close the buckets whose time is up; True when the exported top lists changed."""
        elapsed = int((self.clock() - self._bucket_start) // self.width)
        if elapsed < 1:
            return False
        self._bucket_start += elapsed * self.width
        current, self._current = self._current, Tally()
        if len(current) > self.max_keys:
            current = Tally(dict(current.most_common(self.max_keys)))
        # the closed bucket, then one empty bucket per bucket time that passed without a refresh
        for bucket in [current, *([Tally()] * min(elapsed - 1, self.buckets))]:
            self._closed.append(bucket)
            self._total.update(bucket)
            if len(self._closed) > self.buckets:
                self._total.subtract(self._closed.popleft())
        self._total = +self._total  # drop keys whose count fell to zero
        lists: dict[str, list[tuple[int, LabelValues]]] = {}
        for key, n in self._total.items():
            lists.setdefault("" if self.per is None else key[self.per], []).append((n, key))
        self._series = [
            (key, float(n))
            for _group, counts in sorted(lists.items())
            for n, key in heapq.nlargest(self.top, counts)
        ]
        return True

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for key, n in self._series:
            family.add_metric(list(key), n)
        yield family
