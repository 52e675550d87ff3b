"""The deliverability dashboard's metrics: outcomes and labels per dimension, rule gaps."""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from streamer.analytics.batch import Folded
from streamer.analytics.heavy import OTHER, BoundedDimension
from streamer.analytics.windows import DIMENSIONS as STATS_DIMENSIONS
from streamer.metrics.collectors import RollingTop

#: Delivery outcomes exported per dimension value: ``delivered`` for Delivery records, else the
#: category of a classified record.
DIMENSIONS = STATS_DIMENSIONS
#: Distinct values per dimension exported as series (the heaviest; the rest count as "other").
METRIC_VALUES_PER_DIMENSION = 50


class DeliverabilityMetrics:
    """The deliverability dashboard's metrics, fed from the analytics' partial counts per batch.

    ``streamer_outcomes_total{dimension,value,outcome}``, ``streamer_labels_total{provider,label}``
    and ``streamer_rule_gaps{template}`` (top rule-gap templates over 5 minutes: Uncategorized, or
    classified by the reply code alone). Label
    values are bounded: the stats dimensions are bounded already, and each dimension exports at
    most ``METRIC_VALUES_PER_DIMENSION`` values (its heaviest) plus ``other``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        max_values: int = METRIC_VALUES_PER_DIMENSION,
        top_keys: int = 2000,
    ) -> None:
        self.outcomes = Counter(
            "streamer_outcomes",
            "Delivery outcomes (delivered, or the category of a classified record) per value "
            "of a dimension (provider, egress_pool, egress_source, tenant).",
            ["dimension", "value", "outcome"],
            registry=registry,
        )
        self.labels = Counter(
            "streamer_labels",
            "Classified records per mailbox provider and label.",
            ["provider", "label"],
            registry=registry,
        )
        self.rule_gaps = RollingTop(
            "streamer_rule_gaps",
            "Rule gaps (Uncategorized, or by the reply code alone) per template, last 5 minutes.",
            ("template",),
            max_keys=top_keys,
        )
        registry.register(self.rule_gaps)
        self._values = {
            d: BoundedDimension(max_values, rebalance_every=100_000) for d in DIMENSIONS
        }
        # bounded: every label value comes through a BoundedDimension or a finite table
        self._children: dict[tuple[str, ...], Any] = {}
        #: The values each dimension exported at the last fold: a value its BoundedDimension
        #: no longer admits (a rebalance) loses its series, so they stay bounded over time.
        self._exported: dict[str, frozenset[str]] = {d: frozenset() for d in DIMENSIONS}

    def record(self, batch: Folded) -> None:
        """Count one fold of the tally (``BatchAggregator.fold_into``).

        Runs once per fold: each dimension value is bounded once per fold, and the counters'
        children are kept (their label sets are bounded), so the cost is per distinct series,
        not per record.
        """
        outcomes: Tally[tuple[str, str, str]] = Tally()
        for i, dim in enumerate(DIMENSIONS):
            volume: Tally[str] = Tally()
            for dims, n in batch.volume.items():
                volume[dims[i]] += n
            if "*" in volume:
                continue  # a dimension the stats leave out
            bounded = {v: self._values[dim].map(v, n) for v, n in volume.items()}
            for dims, tally in batch.outcomes.items():
                v = bounded[dims[i]]
                for outcome, n in tally.items():
                    outcomes[dim, v, outcome] += n
        for series, n in outcomes.items():
            self._child(self.outcomes, series).inc(n)
        for dim in DIMENSIONS:
            self._retire(dim)
        for series2, n in batch.labels.items():
            self._child(self.labels, series2).inc(n)
        self.rule_gaps.add({(t,): n for t, n in batch.gaps.items()})

    def _retire(self, dim: str) -> None:
        """Remove the outcome series of values ``dim`` no longer admits (after a rebalance)."""
        admitted = self._values[dim].admitted
        if admitted == self._exported[dim]:
            return  # the common case: no rebalance since the last fold
        self._exported[dim] = admitted
        name = self.outcomes._name
        for key in [
            k
            for k in self._children
            if k[0] == name and k[1] == dim and k[2] not in admitted and k[2] != OTHER
        ]:
            del self._children[key]
            self.outcomes.remove(*key[1:])

    def _child(self, counter: Counter, series: tuple[str, ...]) -> Any:
        """``counter.labels(*series)``, remembered (a lookup there costs microseconds)."""
        key = (counter._name, *series)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*series)
        return child
