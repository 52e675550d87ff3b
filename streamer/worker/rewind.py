"""Rewinding: exactly-once recovery, in place, from a transaction a rebalance overtook.

A rebalance can overtake a transaction in flight: its offsets carry a generation of the group
that is no longer current, the broker refuses them, and the checkpoint aborts the transaction
(``ExactlyOnce.on_aborted``). Nothing of it is visible to ``read_committed`` readers, so the
worker reads the uncommitted records again, as a restarted worker would, without leaving the
group (which would make two more rebalances):

1. the tracker abandons every uncommitted chunk (queued batches are skipped, late
   acknowledgements ignored) and says where each partition must be read again from;
2. the source seeks there before its next fetch; until it reports a partition read from there,
   the tracker drops that partition's records (they were fetched before the seek);
3. the analytics start a new session: the windows had counted the aborted records, and the
   old session's committed rows stay true for what it committed. (Suppression events of the
   aborted transaction were never visible; the suppression stage folds their re-emission.)

More than ``MAX_REWINDS`` rewinds within ``REWIND_WINDOW_S`` stop the worker with exit 75 (a
group that never settles is better served by a restart).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from streamer.kafka.source import TP
from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.worker.offsets import OffsetTracker
from streamer.worker.stats import StatsPublisher

log = logging.getLogger("streamer.worker")

#: A join or leave of a busy group makes two rebalances, and each can overtake a transaction of
#: every member: measured up to 5 rewinds of one worker within 25 s of four joins and leaves.
MAX_REWINDS = 30
REWIND_WINDOW_S = 60.0


class Seeker(Protocol):
    """Where partitions are read again from (``streamer.kafka.source.Source``)."""

    def rewind(self, positions: dict[TP, int]) -> None: ...


class Rewinder:
    def __init__(
        self,
        tracker: OffsetTracker,
        source: Seeker,
        metrics: Metrics,
        stats: StatsPublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.source = source
        self.metrics = metrics
        self.stats = stats
        self.clock = clock
        self._recent: deque[float] = deque()

    def rewind(self) -> bool:
        """Read every uncommitted record again; False when rewinds come too often."""
        now = self.clock()
        recent = self._recent
        recent.append(now)
        while recent and recent[0] < now - REWIND_WINDOW_S:
            recent.popleft()
        if len(recent) > MAX_REWINDS:
            log_event(
                log,
                logging.WARNING,
                "rewinding too often; stopping",
                rewinds=len(recent),
                within_s=REWIND_WINDOW_S,
            )
            return False
        positions, records = self.tracker.rewind()
        self.source.rewind(positions)
        self.metrics.rewinds.inc()
        self.metrics.abandoned.inc(records)
        if self.stats is not None:
            self.stats.new_session()
        log_event(
            log,
            logging.WARNING,
            "rewound to the last commit",
            partitions=",".join(f"{t}:{p}@{o}" for (t, p), o in sorted(positions.items())),
            records=records,
            session=self.stats.session if self.stats is not None else None,
        )
        return True
