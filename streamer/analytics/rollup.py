"""The stats rollup's fold: partial rows in, one summed row per window and dimensions out.

Workers do not publish the stats topic: each publishes *partial* rows (``streamer.worker.stats``)
to the internal partials topic, keyed like the public row (window start and dimensions:
``streamer.analytics.windows.row_key``), so every partial of one key meets in one partition,
owned by one stage (``streamer.worker.rollup``). A partial holds the cumulative counts of one
*instance*: a worker session (a token drawn at start, and again after an aborted transaction)
and the serial of its window (a window forgotten and counted again is a new instance). Its
``seq`` (the session's update number) grows with every update the session publishes.

The fold, per key: the latest partial of each instance (highest ``seq``) replaces that
instance's earlier one, never adds to it, so a partial read twice (a stage restarted, a
rebalance, a producer's retry) or out of order changes nothing; the public row is the sum of
every instance's latest partial. ``final`` is true once one instance said so (a worker's event
time passed the window's end plus ``stats_grace``); the rule-gap tops are merged.

Memory: the store keeps a key while its window is within ``retention_ms`` of the stage's event
time (the latest window start it folded, never more than ``FUTURE_SKEW_MS`` ahead of the wall
clock) and within its byte bound; a key past either is *retired*: forgotten, its public row
stays as it was. A partial for a key its partition retired (its window ended before the
partition's ``retired_below``) is *late*: counted, not folded (Kafka Streams' grace period);
``stats_rollup_retention`` longer than the workers' ``stats_retention`` and their lag makes it
rare.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from streamer.analytics.rates import is_rate_row, with_rate
from streamer.analytics.windows import DIMENSIONS

#: The fields that identify a row (its key) and those only a partial carries.
IDENTITY = ("window_start", "window_end", *DIMENSIONS)
PARTIAL_ONLY = frozenset({"session", "serial", "seq"})
#: Number fields summed over the instances (a rate row's denominator); other scalars identify.
SUMMED = frozenset({"delivered"})
#: The changelog key of a partition's retirement mark (no row key is a JSON string).
RETIRED_KEY = b'"retired"'
#: The stage's event time never runs further ahead of the wall clock (as the windows').
FUTURE_SKEW_MS = 300_000
#: Approximate bytes of a key held (its entry, index and instance table; measured with
#: tracemalloc, CPython 3.11) and of an instance besides its partial's own bytes.
KEY_BYTES = 600
INSTANCE_BYTES = 200

Instance = tuple[str, int]  # (session, serial)


class Fold(Enum):
    NONE = 0  # a partial read again, or superseded: nothing changes
    CHANGED = 1  # the key's sum changed: write it
    LATE = 2  # the key's window was retired: not folded


class BadPartial(ValueError):
    """A partials-topic record that does not decode."""


@dataclass(slots=True)
class Partial:
    instance: Instance
    seq: int
    window_end: int
    value: bytes  # the partial row as published
    rate: bool = False  # a complaint-rate partial (``streamer.analytics.rates``)


def decode_partial(value: bytes | None) -> Partial:
    try:
        doc = orjson.loads(value or b"")
        session, serial, seq = doc["session"], doc["serial"], doc["seq"]
        start, end = doc["window_start"], doc["window_end"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise BadPartial(f"undecodable stats partial: {exc}") from None
    if type(session) is not str or not all(type(n) is int for n in (serial, seq, start, end)):
        raise BadPartial("stats partial with odd fields")
    return Partial((session, serial), seq, end, value or b"", is_rate_row(doc))


@dataclass(slots=True)
class KeyState:
    partition: int
    window_end: int
    instances: dict[Instance, Partial] = field(default_factory=dict)
    nbytes: int = 0
    rate: bool = False  # its public row goes to the rates topic


def summed_row(partials: Iterable[bytes]) -> dict[str, Any]:
    """The public row of a key: the sum of its instances' latest partials (see the module doc).
    Counter maps (any field whose value is an object of numbers) are summed field by field, so
    a map added to the rows needs nothing here; so are the ``SUMMED`` numbers. A rate row
    (``streamer.analytics.rates``) has no gaps and gains its rate."""
    row: dict[str, Any] = {}
    gaps: dict[str, list[Any]] = {}  # template -> [count, example]
    top = 0
    final = False
    for value in partials:
        doc = orjson.loads(value)
        for name, v in doc.items():
            if name in PARTIAL_ONLY:
                continue
            if name == "gaps":
                top = max(top, len(v))
                for g in v:
                    tally = gaps.setdefault(g["template"], [0, g.get("example", "")])
                    tally[0] += g["count"]
            elif name == "final":
                final = final or bool(v)
            elif isinstance(v, dict):
                mine = row.setdefault(name, {})
                for k, n in v.items():
                    mine[k] = mine.get(k, 0) + n
            elif name in SUMMED:
                row[name] = row.get(name, 0) + v
            else:
                row.setdefault(name, v)
    rate = is_rate_row(row)
    if not rate:
        ranked = sorted(gaps.items(), key=lambda item: (-item[1][0], item[0]))[:top]
        row["gaps"] = [{"template": t, "count": n, "example": ex} for t, (n, ex) in ranked]
    row["final"] = final
    return with_rate(row) if rate else row


def public_value(state: KeyState) -> bytes:
    ordered = sorted(state.instances.items())  # deterministic: an example is the first one's
    return orjson.dumps(summed_row(p.value for _, p in ordered))


def encode_state(state: KeyState) -> bytes:
    """The changelog value of a key: its instances' latest partials, as a JSON array."""
    return b"[" + b",".join(p.value for p in state.instances.values()) + b"]"


def decode_state(value: bytes) -> list[Partial]:
    try:
        docs = orjson.loads(value)
        if type(docs) is not list:
            raise TypeError("not a list")
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise BadPartial(f"undecodable stats rollup state: {exc}") from None
    return [decode_partial(orjson.dumps(doc)) for doc in docs]


class RollupStore:
    """The stage's keys, within ``retention_ms`` of its event time and ``max_bytes``."""

    def __init__(
        self, retention_ms: int, max_bytes: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.retention_ms = retention_ms
        self.max_bytes = max_bytes
        self.clock = clock
        self.keys: dict[bytes, KeyState] = {}
        self.by_end: dict[int, set[bytes]] = {}  # window end -> its keys (retired together)
        self.retired_below: dict[int, int] = {}  # partition -> mark (see the module doc)
        self.watermark: int | None = None
        self.nbytes = 0
        self.late = 0
        self.retired = 0
        self.evicted = 0  # keys retired early by the byte bound

    def __len__(self) -> int:
        return len(self.keys)

    def apply(self, partition: int, key: bytes, partial: Partial) -> Fold:
        state = self.keys.get(key)
        if state is None:
            if partial.window_end < self.retired_below.get(partition, 0):
                self.late += 1
                return Fold.LATE
            state = self.keys[key] = KeyState(partition, partial.window_end, rate=partial.rate)
            self.by_end.setdefault(partial.window_end, set()).add(key)
            self._charge(state, KEY_BYTES + len(key))
        current = state.instances.get(partial.instance)
        if current is not None and current.seq >= partial.seq:
            return Fold.NONE
        state.instances[partial.instance] = partial
        before = INSTANCE_BYTES + len(current.value) if current is not None else 0
        self._charge(state, INSTANCE_BYTES + len(partial.value) - before)
        self._advance(partial.window_end)
        return Fold.CHANGED

    def _charge(self, state: KeyState, n: int) -> None:
        state.nbytes += n
        self.nbytes += n

    def _advance(self, window_end: int) -> None:
        capped = min(window_end, int(self.clock() * 1000) + FUTURE_SKEW_MS)
        if self.watermark is None or capped > self.watermark:
            self.watermark = capped

    def restore(self, partition: int, key: bytes, value: bytes | None) -> None:
        """A changelog record read back (None: a tombstone, the key was retired)."""
        if key == RETIRED_KEY:
            if value:
                mark = int(orjson.loads(value)["below"])
                self.retired_below[partition] = max(self.retired_below.get(partition, 0), mark)
            return
        self._forget(key)
        if value is None:
            return
        for partial in decode_state(value):
            self.apply(partition, key, partial)

    def retire(self) -> dict[tuple[int, bytes], bytes | None]:
        """Retire the keys past the retention, then the oldest windows while over the byte
        bound; returns the changelog writes that say so (tombstones, then the marks of the
        partitions concerned), by (partition, key)."""
        out: dict[tuple[int, bytes], bytes | None] = {}
        marks: dict[int, int] = {}
        if self.watermark is not None:
            horizon = self.watermark - self.retention_ms
            for end in sorted(e for e in self.by_end if e < horizon):
                self._retire_window(end, horizon, out, marks)
        while self.nbytes > self.max_bytes and len(self.by_end) > 1:
            end = min(self.by_end)
            self.evicted += len(self.by_end[end])
            self._retire_window(end, end + 1, out, marks)
        for p, mark in marks.items():
            self.retired_below[p] = below = max(self.retired_below.get(p, 0), mark)
            out[p, RETIRED_KEY] = orjson.dumps({"below": below})
        return out

    def _retire_window(
        self,
        end: int,
        mark: int,
        out: dict[tuple[int, bytes], bytes | None],
        marks: dict[int, int],
    ) -> None:
        for key in self.by_end.pop(end):
            state = self.keys.pop(key)
            self.nbytes -= state.nbytes
            self.retired += 1
            out[state.partition, key] = None
            marks[state.partition] = max(marks.get(state.partition, 0), mark)

    def _forget(self, key: bytes) -> None:
        state = self.keys.pop(key, None)
        if state is not None:
            self.nbytes -= state.nbytes
            keys = self.by_end[state.window_end]
            keys.discard(key)
            if not keys:
                del self.by_end[state.window_end]

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the keys (and marks) of partitions no longer owned."""
        gone = set(partitions)
        for key in [k for k, st in self.keys.items() if st.partition in gone]:
            self._forget(key)
        for p in gone:
            self.retired_below.pop(p, None)
