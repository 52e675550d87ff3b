"""The suppression stage's fold: one recipient's suppression events in, its suppression out.

Workers do not decide suppressions: they emit an *event* per hard bounce and per delivery,
keyed by the lower-cased recipient (``streamer.analytics.suppressions``), to the internal
events topic. The stage owning a recipient's partition of that topic folds them here, so every
event of a recipient meets one state whatever worker, partition or order it came from (Kafka
Streams' repartition + state store; Faust's ``group_by`` + table).

Semantics, event time latest wins:

* An *episode* is the set of hard events (hard Bounce/OOB) of a recipient newer than its latest
  delivery. The recipient is suppressed while its episode is not empty; the public value says
  ``count`` (distinct hard events of the episode), ``first_seen``/``last_seen`` (their event
  times) and the label, rule, response, provider, tenant and sender domain of the latest one.
* A delivery at time ``d`` removes the episode's hard events older than ``d``: all of them
  (a tombstone) when it is the latest event, only the older ones when a hard bounce came after.
* A hard event older than the latest delivery is stale: it changes nothing.
* Ties: a hard event at the very millisecond of a delivery stays (the safe direction: the
  address stays suppressed). Between hard events of one millisecond, the later source
  (input partition, offset) gives the details.
* Replays are idempotent: a hard event is identified by its source (input partition and
  offset), so the same record folded twice counts once; deliveries only ever raise ``d``.

The fold is pure and framework-free; ``SuppressionStore`` adds the bounded memory, and
``streamer.worker.suppressor`` the Kafka wiring.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

#: Hard events remembered one by one per episode; older ones are merged into one summary
#: (count, first, last), whose duplicates can then no longer be told apart (docs/analytics.md).
EPISODE_LIMIT = 1000
#: The fields of a hard event's details that the public value repeats.
DETAILS = ("label", "rule", "response", "provider", "tenant", "sender_domain")


class Change(Enum):
    NONE = 0  # a duplicate or a stale event
    QUIET = 1  # the state changed, the public value did not (a delivery to no suppression)
    PUBLIC = 2  # the public value changed: write it (and the state)


class BadEvent(ValueError):
    """An events-topic record that does not decode."""


@dataclass(slots=True)
class Event:
    """One suppression event. ``hard`` holds the details of a hard event; None: a delivery."""

    time: int  # event time, epoch ms
    partition: int  # source: input partition and offset
    offset: int
    hard: dict[str, Any] | None = None

    @property
    def source(self) -> tuple[int, int]:
        return self.partition, self.offset


def decode_event(value: bytes | None) -> Event:
    """An events-topic value (``{"p":..,"o":..,"t":..[,"h":{..}]}``) as an Event."""
    try:
        doc = orjson.loads(value or b"")
        t, p, o = doc["t"], doc["p"], doc["o"]
        hard = doc.get("h")
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise BadEvent(f"undecodable suppression event: {exc}") from None
    if type(t) is not int or type(p) is not int or type(o) is not int:
        raise BadEvent("suppression event with odd fields")
    if hard is not None and type(hard) is not dict:
        raise BadEvent("suppression event with odd fields")
    return Event(t, p, o, hard)


@dataclass(slots=True)
class RecipientState:
    """What the stage knows of one recipient (see the module doc)."""

    delivered: int | None = None  # latest delivery time
    episode: dict[tuple[int, int], int] = field(default_factory=dict)  # source -> time
    latest: Event | None = None  # the episode's latest hard event (its details)
    merged: tuple[int, int, int] | None = None  # (count, first, last) beyond EPISODE_LIMIT

    @property
    def suppressed(self) -> bool:
        return bool(self.episode) or self.merged is not None


def _later(a: Event, b: Event) -> bool:
    return (a.time, a.partition, a.offset) > (b.time, b.partition, b.offset)


def fold(state: RecipientState, event: Event) -> Change:
    """Fold one event into ``state`` (in place); says what changed."""
    if event.hard is None:
        return _deliver(state, event.time)
    if state.delivered is not None and event.time < state.delivered:
        return Change.NONE  # stale: a delivery came after it
    merged = state.merged
    if event.source in state.episode or (merged is not None and event.time <= merged[2]):
        return Change.NONE  # a replay (or, past the limit, taken for one)
    state.episode[event.source] = event.time
    if state.latest is None or _later(event, state.latest):
        state.latest = event
    if len(state.episode) > EPISODE_LIMIT:
        _merge_oldest(state)
    return Change.PUBLIC


def _deliver(state: RecipientState, t: int) -> Change:
    if state.delivered is not None and t <= state.delivered:
        return Change.NONE
    state.delivered = t
    before = len(state.episode)
    if not before and state.merged is None:
        return Change.QUIET  # the common case: a delivery to an address not suppressed
    if before:
        state.episode = {s: h for s, h in state.episode.items() if h >= t}
    merged = state.merged
    lifted = len(state.episode) != before
    if merged is not None and merged[2] < t:
        state.merged, lifted = None, True
    if not state.suppressed:
        state.latest = None
    return Change.PUBLIC if lifted else Change.QUIET


def _merge_oldest(state: RecipientState) -> None:
    source, t = min(state.episode.items(), key=lambda item: (item[1], item[0]))
    del state.episode[source]
    n, first, last = state.merged or (0, t, t)
    state.merged = (n + 1, min(first, t), max(last, t))


def public_value(recipient: str, state: RecipientState) -> bytes | None:
    """The suppressions-topic value of a recipient: its entry, or None (a tombstone)."""
    latest = state.latest
    if not state.suppressed or latest is None:
        return None
    times = list(state.episode.values())
    count = len(times)
    if state.merged is not None:
        count += state.merged[0]
        times.append(state.merged[1])
    details = latest.hard or {}
    value: dict[str, Any] = {"recipient": recipient}
    value.update((k, details.get(k)) for k in DETAILS)
    value.update(first_seen=min(times), last_seen=latest.time, count=count)
    return orjson.dumps(value)


def encode_state(state: RecipientState) -> bytes:
    """The changelog (state topic) value of a recipient."""
    latest = state.latest
    doc = {
        "d": state.delivered,
        "e": [[p, o, t] for (p, o), t in state.episode.items()],
        "l": None
        if latest is None
        else [latest.time, latest.partition, latest.offset, latest.hard],
        "m": state.merged,
    }
    return orjson.dumps(doc)


def decode_state(value: bytes) -> RecipientState:
    """A changelog value back as a state; BadEvent when it does not decode."""
    try:
        doc = orjson.loads(value)
        latest = doc["l"]
        merged = doc["m"]
        return RecipientState(
            delivered=doc["d"],
            episode={(int(p), int(o)): int(t) for p, o, t in doc["e"]},
            latest=None if latest is None else Event(*latest),
            merged=None if merged is None else (int(merged[0]), int(merged[1]), int(merged[2])),
        )
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise BadEvent(f"undecodable suppression state: {exc}") from None


def truth(events: Iterable[Event]) -> RecipientState:
    """The reference: the state the events give when folded in event-time order, once each
    (what any arrival order and duplication must give; used by the tests)."""
    unique = {(e.source, e.hard is None): e for e in events}.values()
    state = RecipientState()
    for e in sorted(unique, key=lambda e: (e.time, e.hard is not None, e.partition, e.offset)):
        fold(state, e)
    return state


class SuppressionStore:
    """The stage's recipients, bounded to ``capacity`` entries.

    Over the bound, entries that suppress nobody go first (least recently used): what is lost
    is a delivery time, so a hard bounce older than it arriving later suppresses again (the
    safe direction). Only when every entry is a suppression is the least recently used one
    forgotten; from then on (``overflowed``) a delivery to a recipient the store does not know
    writes a tombstone, since it may lift one forgotten (a write per such delivery: volume, not
    a wrong answer), and a forgotten recipient's next hard bounce starts a new count.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._live: OrderedDict[str, tuple[int, RecipientState]] = OrderedDict()
        self._quiet: OrderedDict[str, tuple[int, RecipientState]] = OrderedDict()
        self.overflowed = False
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._live) + len(self._quiet)

    def get(self, recipient: str) -> RecipientState | None:
        entry = self._live.get(recipient) or self._quiet.get(recipient)
        return None if entry is None else entry[1]

    def apply(self, partition: int, recipient: str, event: Event) -> tuple[Change, RecipientState]:
        """Fold ``event`` into the recipient's state (created when new); returns what changed
        and the state (which the bound may already have forgotten)."""
        live, quiet = self._live, self._quiet
        table, entry = live, live.get(recipient)
        if entry is None:
            table, entry = quiet, quiet.get(recipient)
        if entry is None:
            state = RecipientState()
            change = fold(state, event)
            self._put(recipient, partition, state)
            if self.overflowed and event.hard is None:
                change = Change.PUBLIC  # it may lift a forgotten suppression: tombstone
            return change, state
        state = entry[1]
        change = fold(state, event)
        if (table is live) == state.suppressed:
            table.move_to_end(recipient)  # most recently used
        else:
            del table[recipient]
            (live if table is quiet else quiet)[recipient] = entry
        return change, state

    def restore(self, partition: int, recipient: str, state: RecipientState | None) -> None:
        """A changelog record read back (None: a tombstone, forget the recipient)."""
        self._live.pop(recipient, None)
        self._quiet.pop(recipient, None)
        if state is not None:
            self._put(recipient, partition, state)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the recipients of partitions no longer owned."""
        gone = set(partitions)
        for table in (self._live, self._quiet):
            for key in [k for k, (p, _) in table.items() if p in gone]:
                del table[key]

    def _put(self, recipient: str, partition: int, state: RecipientState) -> None:
        (self._live if state.suppressed else self._quiet)[recipient] = (partition, state)
        while len(self._live) + len(self._quiet) > self.capacity:
            self.evicted += 1
            if self._quiet:
                self._quiet.popitem(last=False)
            else:
                self._live.popitem(last=False)
                self.overflowed = True
