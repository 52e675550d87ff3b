"""Tumbling-window statistics per (provider, egress pool, egress source, tenant).

Pure aggregation: the worker counts records into rows (:meth:`WindowedStats.row`) and
publishes, every flush, the rows that changed (:meth:`WindowedStats.updates`), each with its
window's *full* counts, so the latest row per key is the truth. A window's rows are published
once more as ``final`` once event time has passed its end plus a grace period. Windows are kept
for ``retention_s`` of event time and at most ``max_windows`` at once. A record for a window no
longer held (older than the retention, or evicted by the cap) starts a new instance of that
window with another ``serial``: every row carries its window's serial in its key, so an
instance's rows never overwrite, nor add to, another's, and nothing counted is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from streamer.analytics.heavy import OTHER, SpaceSaving
from streamer.analytics.rates import RATE_DIMENSIONS, WindowRates

#: (window_start_ms, provider, egress_pool, egress_source, tenant)
Key = tuple[int, str, str, str, str]
DimKey = tuple[str, str, str, str]

#: The keys of a stats row, in key order: the one list of them (settings, metrics derive theirs).
DIMENSIONS: tuple[str, ...] = ("provider", "egress_pool", "egress_source", "tenant")
#: Where each complaint-rate dimension sits in a row's dimensions.
RATE_POSITIONS = {d: DIMENSIONS.index(d) for d in RATE_DIMENSIONS}
OVERFLOW: DimKey = (OTHER, OTHER, OTHER, OTHER)

GAP_CAPACITY = 32
#: An example line is kept up to this length (a response can be as long as a message).
EXAMPLE_MAX = 1000

#: Approximate bytes held (measured with tracemalloc; CPython 3.11, 64-bit): a row with its
#: counters, plus the length of its dimension values; a row's gap summary once it has one; a
#: gap template, plus the lengths of the template and its example.
ROW_BYTES = 1_100
GAPS_BYTES = 600
GAP_BYTES = 170


class ByteLedger:
    """Approximate bytes the rows of a :class:`WindowedStats` hold, against ``limit`` (None:
    no limit). Counted as values arrive, so the bound holds between publications too."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.used = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.used >= self.limit


class Counts:
    """The counters of one row: record types, labels, categories, feedback, complaints, gaps.

    ``feedback`` counts every Feedback record by its Feedback-Type (``not-spam`` too);
    ``complaints`` only those whose category is ``complaint`` (what a complaint rate sums).

    ``gaps`` is a space-saving summary of Uncategorized templates (``gap_capacity`` at most),
    with the first example line seen for each template kept in ``examples``. A row of a
    :class:`WindowedStats` charges its bytes to the windows' ``ledger``; once that is full, a
    template the row does not track yet is counted as ``other``, without an example.
    """

    __slots__ = (
        "categories",
        "complaints",
        "counts",
        "examples",
        "feedback",
        "gap_capacity",
        "gaps",
        "labels",
        "ledger",
        "nbytes",
        "rated_complaints",
        "rated_delivered",
    )

    def __init__(self, gap_capacity: int = GAP_CAPACITY, ledger: ByteLedger | None = None) -> None:
        self.counts: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.categories: dict[str, int] = {}
        self.complaints: dict[str, int] = {}
        self.feedback: dict[str, int] = {}
        self.gaps: SpaceSaving[str] | None = None  # created on the first gap: most rows have none
        self.examples: dict[str, str] = {}
        self.gap_capacity = gap_capacity
        self.ledger = ledger
        self.nbytes = 0  # charged to the ledger (a row's own bytes are charged by its windows)
        # what the window's complaint rates have counted of this row (``WindowRates.count``)
        self.rated_delivered = 0
        self.rated_complaints: dict[str, int] | None = None

    def add_gap(self, template: str, example: str, n: int = 1) -> None:
        gaps = self.gaps
        ledger = self.ledger
        if gaps is None:
            gaps = self.gaps = SpaceSaving(self.gap_capacity)
            self._charge(GAPS_BYTES)
        if ledger is not None and template not in gaps and ledger.full:
            template, example = OTHER, ""  # over the memory budget: counted, not detailed
        evicted = gaps.add(template, n)
        if evicted is not None:
            dropped = self.examples.pop(evicted, "")
            self._charge(-(GAP_BYTES + len(evicted) + len(dropped)))
        if template not in self.examples:
            kept = self.examples[template] = example[:EXAMPLE_MAX]
            self._charge(GAP_BYTES + len(template) + len(kept))

    def _charge(self, n: int) -> None:
        if self.ledger is not None:
            self.nbytes += n
            self.ledger.used += n

    def merge(self, other: Counts) -> None:
        for mine, theirs in (
            (self.counts, other.counts),
            (self.labels, other.labels),
            (self.categories, other.categories),
            (self.complaints, other.complaints),
            (self.feedback, other.feedback),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        if other.gaps is not None:
            for tpl, n in other.gaps.items():
                self.add_gap(tpl, other.examples.get(tpl, ""), n)

    def total(self) -> int:
        return sum(self.counts.values())

    def gap_rows(self, top: int) -> list[dict[str, Any]]:
        if self.gaps is None:
            return []
        return [
            {"template": t, "count": n, "example": self.examples.get(t, "")}
            for t, n in self.gaps.top(top)
        ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        mine = self.gaps.items() if self.gaps else []
        theirs = other.gaps.items() if other.gaps else []
        return (
            self.counts == other.counts
            and self.labels == other.labels
            and self.categories == other.categories
            and self.complaints == other.complaints
            and self.feedback == other.feedback
            and sorted(mine) == sorted(theirs)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Counts(counts={self.counts}, labels={self.labels}, categories={self.categories})"


@dataclass(slots=True)
class _Window:
    start: int
    serial: int  # tells a window re-created after it was forgotten from the first one
    rows: dict[DimKey, Counts] = field(default_factory=dict)
    dirty: set[DimKey] = field(default_factory=set)
    final: bool = False  # its rows were published as final (end + grace passed)
    rates: WindowRates | None = None  # with ``WindowedStats.rates``
    rate_bytes: int = 0  # its rates' totals charged to the ledger while held
    held: bool = True  # not forgotten nor evicted (its bytes count in the ledger)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


#: Epoch seconds of 0001-01-01 and 10000-01-01 (UTC): a ``timestamp`` outside is no time.
_FIRST, _BEYOND = -62_135_596_800, 253_402_300_800


def event_time_ms(record: Mapping[str, Any]) -> int | None:
    """A record's event time in epoch ms: ``event_time`` (RFC 3339) when it parses, else
    ``timestamp`` (epoch seconds, int or float, within years 1 to 9999); None when neither
    is usable."""
    value = record.get("event_time")
    if isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.upper())
        except ValueError:
            dt = None
        if dt is not None:
            if dt.tzinfo is None:  # RFC 3339 requires an offset; assume UTC without one
                dt = dt.replace(tzinfo=UTC)
            return (dt - _EPOCH) // _MS  # exact: float seconds * 1000 can lose the last ms
    ts = record.get("timestamp")
    if isinstance(ts, int | float) and not isinstance(ts, bool) and _FIRST <= ts < _BEYOND:
        return int(ts * 1000)  # within datetime's years: not NaN, not infinite
    return None


def row_key(row: Mapping[str, Any]) -> bytes:
    """The Kafka key of a stats row, a JSON array: window start, the dimensions, and for a row
    a worker published its session and the window's serial (see ``streamer.worker.stats``).
    A rate row's is ``[window_start, dimension, value]`` (``streamer.analytics.rates``)."""
    if "dimension" in row:
        parts = [row["window_start"], row["dimension"], row["value"]]
    else:
        parts = [row["window_start"], *(row[d] for d in DIMENSIONS)]
    if "session" in row:
        parts += [row["session"], row.get("serial", 0)]
    return orjson.dumps(parts)


class WindowedStats:
    """Aggregates counts into tumbling windows; :meth:`updates` returns the rows to publish.

    Bounds: at most ``max_windows`` windows (the oldest is forgotten to make room; its changed
    rows go out with the next update, under its serial)
    and ``max_keys`` rows over all windows (a new key beyond that is counted in the window's
    all-"other" row). With ``max_bytes``, the rows' approximate bytes (counters, gap templates
    and examples: :class:`ByteLedger`) are bounded too: once they reach it, a new key counts in
    the all-"other" row and a new gap template as ``other``, and after each publication the
    oldest windows (just published) are forgotten until half the bytes are free. Counts are
    never dropped: only their detail is coarsened. Event time never runs more than
    ``future_skew_s`` ahead of the wall clock, so one record stamped in the far future cannot
    close every window early. With ``rates``, :meth:`updates` adds each changed window's
    complaint-rate partials (``streamer.analytics.rates``): each window keeps a total per
    provider and tenant, updated from its changed rows and charged to the byte budget.
    """

    def __init__(
        self,
        window_s: float = 60,
        grace_s: float = 10,
        retention_s: float = 3600,
        max_windows: int = 512,
        max_keys: int = 100_000,
        gaps_top: int = 10,
        future_skew_s: float = 300,
        clock: Callable[[], float] = time.time,
        max_bytes: int | None = None,
        rates: bool = False,
    ) -> None:
        if window_s <= 0 or max_windows < 1 or max_keys < 1:
            raise ValueError("window_s, max_windows and max_keys must be positive")
        if retention_s < grace_s:
            raise ValueError("retention_s must be >= grace_s")
        self.window_ms = int(window_s * 1000)
        self.grace_ms = int(grace_s * 1000)
        self.retention_ms = int(retention_s * 1000)
        self.max_windows = max_windows
        self.max_keys = max_keys
        self.gaps_top = gaps_top
        self.future_skew_ms = int(future_skew_s * 1000)
        self.clock = clock
        self._serial = 0
        self.watermark: int | None = None
        self.overflowed = 0  # records folded into the all-"other" row by max_keys
        self._windows: dict[int, _Window] = {}
        self._nkeys = 0
        self._evicted: list[_Window] = []  # windows evicted by max_windows, with changed rows
        self.ledger = ByteLedger(max_bytes)
        self.rates = rates

    def empty_copy(self) -> WindowedStats:
        """A new, empty instance with the same settings."""
        return WindowedStats(
            window_s=self.window_ms / 1000,
            grace_s=self.grace_ms / 1000,
            retention_s=self.retention_ms / 1000,
            max_windows=self.max_windows,
            max_keys=self.max_keys,
            gaps_top=self.gaps_top,
            future_skew_s=self.future_skew_ms / 1000,
            clock=self.clock,
            max_bytes=self.ledger.limit,
            rates=self.rates,
        )

    def __len__(self) -> int:
        """Rows held (over all windows)."""
        return self._nkeys

    @property
    def windows(self) -> list[int]:
        return sorted(self._windows)

    def add(self, partial: Mapping[Key, Counts], now_wall: float | None = None) -> None:
        wall = self.clock() if now_wall is None else now_wall
        for key, counts in partial.items():
            self.row(key, wall, counts.total(), counts.gap_capacity).merge(counts)

    def row(self, key: Key, wall: float, n: int, gap_capacity: int = GAP_CAPACITY) -> Counts:
        """The row ``n`` records of ``key`` are counted into (marked changed). A window not held
        (never seen, forgotten or evicted) is created anew, with a new serial."""
        start = key[0]
        windows = self._windows
        win = windows.get(start)
        if win is None:
            if len(windows) >= self.max_windows:
                self._evict_oldest()
            self._serial += 1
            win = windows[start] = _Window(start, self._serial)
        dims: DimKey = (key[1], key[2], key[3], key[4])
        row = win.rows.get(dims)
        if row is None:
            full = self._nkeys >= self.max_keys or self.ledger.full
            if full and dims != OVERFLOW:
                self.overflowed += n
                dims = OVERFLOW
                row = win.rows.get(dims)
            if row is None:
                row = win.rows[dims] = Counts(gap_capacity, self.ledger)
                row._charge(ROW_BYTES + sum(map(len, dims)))
                self._nkeys += 1
        win.dirty.add(dims)
        return row

    def _evict_oldest(self) -> None:
        win = self._windows.pop(min(self._windows))
        if win.dirty:  # published by the next update, still under its own serial
            self._evicted.append(win)
        self._dropped(win)

    def _dropped(self, win: _Window) -> None:
        """Account for a window that was forgotten (a fold may still count into its rows:
        they no longer charge the ledger)."""
        self._nkeys -= len(win.rows)
        for c in win.rows.values():
            self.ledger.used -= c.nbytes
            c.ledger = None
        self.ledger.used -= win.rate_bytes
        win.rate_bytes = 0
        win.held = False

    def _trim(self) -> None:
        """Over the byte budget: forget the oldest windows (published already: nothing of
        theirs is pending) until half of it is free, keeping the newest."""
        ledger = self.ledger
        if not ledger.full or ledger.limit is None:
            return
        while ledger.used > ledger.limit // 2 and len(self._windows) > 1:
            start = min(self._windows)
            if self._windows[start].dirty:
                return
            self._dropped(self._windows.pop(start))

    def _closed(self, start: int) -> bool:
        """Event time passed the window's end plus the grace period."""
        mark = self.watermark
        return mark is not None and start + self.window_ms + self.grace_ms <= mark

    def _rows(
        self, win: _Window, keys: set[DimKey] | dict[DimKey, Counts], final: bool | None = None
    ) -> list[dict[str, Any]]:
        out = []
        for dims in sorted(keys):
            c = win.rows[dims]
            row = {
                "window_start": win.start,
                "window_end": win.start + self.window_ms,
                **dict(zip(DIMENSIONS, dims, strict=True)),
                "counts": dict(c.counts),
                "labels": dict(c.labels),
                "categories": dict(c.categories),
                "complaints": dict(c.complaints),
                "feedback": dict(c.feedback),
                "gaps": c.gap_rows(self.gaps_top),
            }
            if final is not None:
                row["final"] = final
                row["serial"] = win.serial
            out.append(row)
        return out

    def _rate_rows(
        self, win: _Window, final: bool, everything: bool = False
    ) -> list[dict[str, Any]]:
        """The window's rate partials: for the providers and tenants of its changed rows (all
        of them with ``everything``). Call before its ``dirty`` is cleared."""
        if not self.rates:
            return []
        rates = win.rates
        if rates is None:
            rates = win.rates = WindowRates(RATE_POSITIONS)
        touched, charged = rates.count(win.dirty, win.rows)
        if win.held:
            self.ledger.used += charged
            win.rate_bytes += charged
        values = rates.totals if everything else touched
        extra = {"final": final, "serial": win.serial}
        return rates.rows(win.start, win.start + self.window_ms, values, extra)

    def _advance(self, now_event_ms: int | None, wall: float) -> int | None:
        """Move the watermark (never more than ``future_skew_s`` ahead of the wall clock)."""
        if now_event_ms is not None:
            capped = min(now_event_ms, int(wall * 1000) + self.future_skew_ms)
            if self.watermark is None or capped > self.watermark:
                self.watermark = capped
        return self.watermark

    def updates(
        self, now_event_ms: int | None, now_wall: float | None = None
    ) -> list[dict[str, Any]]:
        """Every row that changed since the last call, with its window's full counts, plus all
        rows of each window that closed since (``final``: its end + grace passed in event
        time); windows older than the retention are forgotten. The worker publishes these with
        the records they count, so the published rows never lag the committed offsets."""
        wall = self.clock() if now_wall is None else now_wall
        mark = self._advance(now_event_ms, wall)
        evicted, self._evicted = self._evicted, []
        out = []
        for win in evicted:
            out += self._rows(win, win.dirty, self._closed(win.start))
            out += self._rate_rows(win, self._closed(win.start))
        for start in sorted(self._windows):
            win = self._windows[start]
            closed = self._closed(start)
            if closed and not win.final:
                out.extend(self._rows(win, win.rows, final=True))
                out.extend(self._rate_rows(win, final=True, everything=True))
                win.final = True
                win.dirty = set()
            elif win.dirty:
                out.extend(self._rows(win, win.dirty, final=closed))
                out.extend(self._rate_rows(win, final=closed))
                win.dirty = set()
        self._forget_old(mark)
        self._trim()
        return out

    def _forget_old(self, mark: int | None) -> None:
        if mark is None:
            return
        horizon = mark - self.retention_ms
        for start in [s for s in self._windows if s + self.window_ms < horizon]:
            self._dropped(self._windows.pop(start))

    def snapshot(self) -> list[dict[str, Any]]:
        """Every row held now (``/stats``), changed or not."""
        return [
            row
            for start in sorted(self._windows)
            for row in self._rows(
                self._windows[start], self._windows[start].rows, self._closed(start)
            )
        ]

    def flush_all(self) -> list[dict[str, Any]]:
        """Every changed row now, without ``final`` and ``serial`` (the offline report: one
        pass over its inputs, nothing late, nothing evicted)."""
        evicted, self._evicted = self._evicted, []
        out = [row for win in evicted for row in self._rows(win, win.dirty)]
        for start in sorted(self._windows):
            win = self._windows[start]
            if win.dirty:
                out.extend(self._rows(win, win.dirty))
                win.dirty = set()
        return out
