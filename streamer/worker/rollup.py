"""The stats rollup stage: sums the workers' partial rows per window and dimensions, writes
the stats topic.

A keyed stage (``streamer.worker.keyed_stage``): every worker process runs one beside its
suppression stage. A consumer in the group ``<group_id>.stats`` reads the internal partials
topic (``stats_partials_topic``, keyed by window start and dimensions), ``RollupStore`` folds
the partials (``streamer.analytics.rollup``), and a producer writes, once per batch, every key
whose sum changed:

- the public, compacted ``stats_topic``: the key's summed row, under the same key, so the
  latest row per key is the truth and a sink upserts by key;
- the compacted ``stats_rates_topic``: a complaint-rate key's summed row
  (``streamer.analytics.rates``), likewise;
- the changelog, compacted ``stats_state_topic`` (co-partitioned with the partials): the
  key's instances' latest partials (tombstoned when the key retires), and each partition's
  retirement mark.

Nothing is kept in memory only, so no inputs are read again on assignment (no replay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from streamer.analytics.rollup import BadPartial, Fold, RollupStore, decode_partial, encode_state
from streamer.analytics.rollup import public_value as summed_value
from streamer.config import Settings
from streamer.logs import log_event
from streamer.memory import rollup_byte_budget
from streamer.metrics import Metrics
from streamer.worker.keyed_stage import KeyedStage
from streamer.worker.stage_output import Writes


class RollupStage(KeyedStage):
    kind = "rollup"
    unit = "partials"
    drain_on_stop = True
    store: RollupStore
    log = logging.getLogger("streamer.stats")

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        worker_id: str,
        on_failure: Callable[[], object] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(
            settings,
            bootstrap,
            worker_id=worker_id,
            inputs_topic=settings.stats_partials_topic or "",
            state_topic=settings.stats_state_topic or "",
            public_topic=settings.stats_topic,
            group_suffix="stats",
            on_failure=on_failure,
            metrics=metrics,
        )
        self.rates_topic = settings.stats_rates_topic or ""
        self.store = RollupStore(
            settings.stats_rollup_retention * 1000, rollup_byte_budget(settings.stats_rollup_rows)
        )

    def status(self) -> dict[str, Any]:
        store = self.store
        return {
            **super().status(),
            "keys": len(store),
            "bytes": store.nbytes,
            "retired": store.retired,
            "evicted": store.evicted,
            "late": store.late,
        }

    def fold(self, messages: list[Message]) -> Writes:
        store = self.store
        writes = Writes()
        changed: dict[bytes, int] = {}  # key -> its partition
        late = store.late
        for m in messages:
            key = m.key()
            try:
                if not key:
                    raise BadPartial("stats partial without a key")
                partial = decode_partial(m.value())
            except BadPartial as exc:
                self.skipped(str(exc))
                continue
            p = m.partition() or 0
            if store.apply(p, key, partial) is Fold.CHANGED:
                changed[key] = p
            writes.folded += 1
        for key, p in changed.items():
            state = store.keys[key]
            if state.rate:
                writes.elsewhere[self.rates_topic, key] = summed_value(state)
            else:
                writes.public[key] = summed_value(state)
            writes.state[p, key] = encode_state(state)
        # retired after the batch's sums are written: a key's last sum goes out first
        writes.state.update(store.retire())
        if store.late > late:
            self.metrics.rollup_late.inc(store.late - late)
            log_event(
                self.log,
                logging.WARNING,
                "stats partials for retired windows not folded",
                partials=store.late - late,
            )
        return writes

    def stage_metrics(self) -> tuple[Any, Any, Any]:
        m = self.metrics
        return m.rollup_partials, m.rollup_writes, m.rollup_keys

    def restored(self, partition: int, key: bytes, value: bytes | None) -> None:
        try:
            self.store.restore(partition, key, value)
        except (BadPartial, ValueError, TypeError, KeyError) as exc:
            log_event(self.log, logging.WARNING, "bad stats rollup state", error=str(exc))

    def drop(self, partitions: list[int]) -> None:
        self.store.drop(partitions)
