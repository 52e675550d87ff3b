"""The suppression stage's fold: one recipient's suppression events in, its suppression out.

Workers do not decide suppressions: they emit an *event* per hard bounce, per complaint and per
delivery, keyed by the lower-cased recipient (``streamer.analytics.suppressions``; a batch's
deliveries as one record per partition, ``streamer.analytics.delivery_batches``), to the
internal events topic; ``streamer suppressions add/remove`` write manual events there too
(``streamer.kafka.manual_suppressions``). The stage owning a recipient's partition of that topic
folds them here, so every event of a recipient meets one state whatever worker, partition or
order it came from (Kafka Streams' repartition + state store; Faust's ``group_by`` + table).

A recipient is suppressed for up to three *reasons* at once (the public value names the
strongest, ``manual`` > ``complaint`` > ``hard-bounce``, and lists them all):

* ``hard-bounce``, event time latest wins. An *episode* is the set of hard events (hard
  Bounce/OOB) of a recipient newer than its latest delivery. A delivery at time ``d`` removes
  the episode's hard events older than ``d``: all of them (a tombstone) when it is the latest
  event, only the older ones when a hard bounce came after. A hard event older than the latest
  delivery is stale: it changes nothing. Ties: a hard event at the very millisecond of a
  delivery stays (the safe direction). Between hard events of one millisecond, the later source
  (input partition, offset) gives the details.
* ``complaint``: a feedback report of a suppressing type. A delivery never lifts it (it is the
  person's choice, not the address's state).
* ``manual``: an operator's ``add``. A delivery never lifts it either.

A ``remove`` lifts every reason whose events are not newer than it (ties: lifted), and makes
such events arriving later stale.

*OOB trust.* An OOB is a DSN anyone could send us; its ``id`` is the DSN's own. A hard OOB
suppresses only when the recipient's latest delivery is at most ``oob_trust_ms`` older than it
(that delivery is the message the DSN is about). An OOB without one is *held* (not public,
``HELD_LIMIT`` per recipient) and promoted if such a delivery arrives later (events of one
recipient come from many workers, in any order).

Replays are idempotent: an event is identified by its source (input partition and offset; a
manual event's own id), so the same event folded twice counts once; deliveries and removes only
ever raise their times. The fold is pure and framework-free; ``SuppressionStore`` adds the
bounded memory, and ``streamer.worker.suppressor`` the Kafka wiring.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from streamer.analytics.delivery_batches import DELIVERIES

#: Events remembered one by one per reason; older ones are merged into one summary
#: (count, first, last), whose duplicates can then no longer be told apart (docs/analytics.md).
EPISODE_LIMIT = 1000
#: Untrusted OOBs held per recipient, waiting for a delivery that arrives late (oldest go first).
HELD_LIMIT = 16
#: The fields of an event's details that the public value repeats.
DETAILS = ("label", "rule", "response", "provider", "tenant", "sender_domain")

#: Event kinds: ``k`` of an event value. Without ``k`` an event is a delivery, or a (hard)
#: bounce when it has details (``h``): the values written before complaints existed.
DELIVERY = "delivery"
BOUNCE = "bounce"  # a hard Bounce (or an OOB written before OOBs needed trust)
OOB = "oob"  # a hard OOB: suppresses only after a delivery (see the module doc)
COMPLAINT = "complaint"
MANUAL = "manual"
REMOVE = "remove"
KINDS = frozenset({DELIVERY, BOUNCE, OOB, COMPLAINT, MANUAL, REMOVE})
#: Kinds whose event must carry details.
_WITH_DETAILS = frozenset({BOUNCE, OOB, COMPLAINT})

#: Reasons of a suppression (the public value's ``reason``), strongest first.
HARD_BOUNCE = "hard-bounce"
REASONS = (MANUAL, COMPLAINT, HARD_BOUNCE)
#: Details a reason's public value adds to ``DETAILS``.
_EXTRA = {MANUAL: ("note",), COMPLAINT: ("feedback_type",), HARD_BOUNCE: ()}


class Change(Enum):
    NONE = 0  # a duplicate or a stale event
    QUIET = 1  # the state changed, the public value did not (a delivery to no suppression)
    PUBLIC = 2  # the public value changed: write it (and the state)
    HELD = 3  # an untrusted OOB was held (a quiet change, counted by the stage)


class BadEvent(ValueError):
    """An events-topic record that does not decode."""


@dataclass(slots=True)
class Event:
    """One suppression event: its time, source, details (None for a delivery or a remove) and
    kind (default: a bounce with details, a delivery without)."""

    time: int  # event time, epoch ms
    partition: int  # source: input partition and offset (a manual event: -1 and its id)
    offset: int
    details: dict[str, Any] | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = DELIVERY if self.details is None else BOUNCE

    @property
    def source(self) -> tuple[int, int]:
        return self.partition, self.offset


@dataclass(slots=True)
class DeliveryBatch:
    """A record of a batch's deliveries (``streamer.analytics.delivery_batches``): each
    recipient with its latest delivery time, placed for ``partitions`` partitions."""

    partitions: int
    deliveries: list[tuple[str, int]]


def decode_event(value: bytes | None) -> Event:
    """An events-topic value (``{"p":..,"o":..,"t":..[,"k":..][,"h":{..}]}``) as an Event."""
    return _checked_event(*_fields(_load(value)))


def read_event(value: bytes | None) -> Event | int | DeliveryBatch:
    """An events-topic value as the stage folds it: a delivery as its time alone (no object
    built, see ``SuppressionStore.deliver``), a record of deliveries as a DeliveryBatch, any
    other as an Event."""
    doc = _load(value)
    if type(doc) is dict and doc.get("k") == DELIVERIES:
        return _delivery_batch(doc)
    t, p, o, details, kind = _fields(doc)
    if details is None and (not kind or kind == DELIVERY):
        return t
    return _checked_event(t, p, o, details, kind)


def _load(value: bytes | None) -> Any:
    try:
        return orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"undecodable suppression event: {exc}") from None


def _delivery_batch(doc: dict[str, Any]) -> DeliveryBatch:
    n, entries = doc.get("n"), doc.get("d")
    if type(n) is not int or n < 1 or type(entries) is not list:
        raise BadEvent("delivery batch with odd fields")
    for entry in entries:
        if not (
            type(entry) is list
            and len(entry) == 2
            and type(entry[0]) is str
            and entry[0]
            and type(entry[1]) is int
        ):
            raise BadEvent(f"delivery batch with an odd entry: {entry!r:.80}")
    return DeliveryBatch(n, entries)


def _fields(doc: Any) -> tuple[int, int, int, dict[str, Any] | None, str]:
    """A decoded events-topic value's time, source, details and kind; BadEvent when it is
    none."""
    try:
        t, p, o = doc["t"], doc["p"], doc["o"]
        details = doc.get("h")
        kind = doc.get("k", "")
    except (TypeError, KeyError, AttributeError) as exc:
        raise BadEvent(f"undecodable suppression event: {exc}") from None
    if type(t) is not int or type(p) is not int or type(o) is not int:
        raise BadEvent("suppression event with odd fields")
    if details is not None and type(details) is not dict:
        raise BadEvent("suppression event with odd fields")
    if kind and kind not in KINDS:
        raise BadEvent(f"suppression event of unknown kind {kind!r}")
    return t, p, o, details, kind


def _checked_event(t: int, p: int, o: int, details: dict[str, Any] | None, kind: str) -> Event:
    event = Event(t, p, o, details, kind)
    if event.kind in _WITH_DETAILS and details is None:
        raise BadEvent(f"{event.kind} suppression event without details")
    return event


def _later(a: Event, b: Event) -> bool:
    return (a.time, a.partition, a.offset) > (b.time, b.partition, b.offset)


@dataclass(slots=True)
class Episode:
    """The distinct events of one reason (source -> event time), the latest one (its details
    make the public value), and a (count, first, last) summary of those past EPISODE_LIMIT."""

    events: dict[tuple[int, int], int] = field(default_factory=dict)
    latest: Event | None = None
    merged: tuple[int, int, int] | None = None

    @property
    def active(self) -> bool:
        return bool(self.events) or self.merged is not None

    def add(self, event: Event) -> bool:
        """Count ``event``; False for a replay (or, past the limit, what is taken for one)."""
        merged = self.merged
        if event.source in self.events or (merged is not None and event.time <= merged[2]):
            return False
        self.events[event.source] = event.time
        if self.latest is None or _later(event, self.latest):
            self.latest = event
        if len(self.events) > EPISODE_LIMIT:
            source, t = min(self.events.items(), key=lambda item: (item[1], item[0]))
            del self.events[source]
            n, first, last = self.merged or (0, t, t)
            self.merged = (n + 1, min(first, t), max(last, t))
        return True

    def drop_before(self, t: int, *, ties: bool = False) -> bool:
        """Forget the events older than ``t`` (``ties``: at ``t`` too); whether any went."""
        before = len(self.events)
        if before:
            if ties:
                self.events = {s: h for s, h in self.events.items() if h > t}
            else:
                self.events = {s: h for s, h in self.events.items() if h >= t}
        lifted = len(self.events) != before
        merged = self.merged
        if merged is not None and (merged[2] < t or (ties and merged[2] == t)):
            self.merged, lifted = None, True
        if not self.active:
            self.latest = None
        return lifted

    def summary(self) -> tuple[int, int]:
        """(count, first_seen) of the active episode."""
        times = list(self.events.values())
        count = len(times)
        if self.merged is not None:
            count += self.merged[0]
            times.append(self.merged[1])
        return count, min(times)


@dataclass(slots=True)
class RecipientState:
    """What the stage knows of one recipient (see the module doc)."""

    delivered: int | None = None  # latest delivery time
    hard: Episode = field(default_factory=Episode)  # hard events newer than it
    complaints: Episode = field(default_factory=Episode)
    manual: Event | None = None  # the latest manual add
    removed: int | None = None  # the latest remove time
    held: dict[tuple[int, int], Event] = field(default_factory=dict)  # untrusted OOBs

    @property
    def reasons(self) -> list[str]:
        """The reasons it is suppressed for, strongest first (empty: not suppressed)."""
        out = [MANUAL] if self.manual is not None else []  # REASONS' order, spelt out: per write
        if self.complaints.active:
            out.append(COMPLAINT)
        if self.hard.active:
            out.append(HARD_BOUNCE)
        return out

    @property
    def suppressed(self) -> bool:
        return self.manual is not None or self.complaints.active or self.hard.active


def fold(state: RecipientState, event: Event, oob_trust_ms: int | None = None) -> Change:
    """Fold one event into ``state`` (in place); says what changed. ``oob_trust_ms``: how much
    older than an OOB the recipient's latest delivery may be for it to suppress (None: every
    OOB suppresses, as a Bounce does)."""
    kind = event.kind
    if kind == DELIVERY:
        return _deliver(state, event.time, oob_trust_ms)
    if kind == REMOVE:
        return _remove(state, event.time)
    if state.removed is not None and event.time <= state.removed:
        return Change.NONE  # an operator removed the address after it
    if kind == MANUAL:
        if state.manual is not None and not _later(event, state.manual):
            return Change.NONE
        state.manual = event
        return Change.PUBLIC
    if kind == COMPLAINT:
        return Change.PUBLIC if state.complaints.add(event) else Change.NONE
    delivered = state.delivered
    if delivered is not None and event.time < delivered:
        return Change.NONE  # stale: a delivery came after it
    untrusted = delivered is None or event.time - delivered > (oob_trust_ms or 0)
    if kind == OOB and oob_trust_ms is not None and untrusted:
        return _hold(state, event)
    return Change.PUBLIC if state.hard.add(event) else Change.NONE


def _hold(state: RecipientState, event: Event) -> Change:
    held = state.held
    if event.source in held:
        return Change.NONE
    held[event.source] = event
    if len(held) > HELD_LIMIT:
        del held[min(held, key=lambda s: (held[s].time, s))]
    return Change.HELD


def _deliver(state: RecipientState, t: int, oob_trust_ms: int | None) -> Change:
    # Only a delivery newer than the latest known can trust a held OOB: an older one is
    # further from every OOB held (each arrived after, or failed against, the latest).
    if state.delivered is not None and t <= state.delivered:
        return Change.NONE
    state.delivered = t
    promoted = False
    if state.held:
        held, state.held = state.held, {}
        for e in sorted(held.values(), key=lambda e: (e.time, e.source)):
            if e.time < t:
                continue  # stale now: the delivery came after it
            if oob_trust_ms is None or e.time - t <= oob_trust_ms:
                promoted = state.hard.add(e) or promoted
            else:
                state.held[e.source] = e
    if not state.hard.active and not promoted:
        return Change.QUIET  # the common case: a delivery to an address not hard-bounced
    lifted = state.hard.drop_before(t)
    return Change.PUBLIC if lifted or promoted else Change.QUIET


def _remove(state: RecipientState, t: int) -> Change:
    if state.removed is not None and t <= state.removed:
        return Change.NONE
    state.removed = t
    state.hard.drop_before(t, ties=True)
    state.complaints.drop_before(t, ties=True)
    if state.manual is not None and state.manual.time <= t:
        state.manual = None
    state.held = {s: e for s, e in state.held.items() if e.time > t}
    # always written: the public topic may hold an entry this stage does not know (forgotten
    # over its memory bound, or written before an upgrade); a remove must tombstone it
    return Change.PUBLIC


def public_value(recipient: str, state: RecipientState) -> bytes | None:
    """The suppressions-topic value of a recipient: its entry, or None (a tombstone)."""
    reasons = state.reasons
    if not reasons:
        return None
    reason = reasons[0]
    if reason == MANUAL and state.manual is not None:
        latest: Event = state.manual
        count, first = 1, latest.time
    else:
        episode = state.complaints if reason == COMPLAINT else state.hard
        assert episode.latest is not None
        latest = episode.latest
        count, first = episode.summary()
    get = (latest.details or {}).get
    value: dict[str, Any] = {"recipient": recipient, "reason": reason}
    for k in DETAILS:
        value[k] = get(k)
    for k in _EXTRA[reason]:
        value[k] = get(k)
    value["first_seen"] = first
    value["last_seen"] = latest.time
    value["count"] = count
    value["reasons"] = reasons
    return orjson.dumps(value)


def entry_reason(entry: dict[str, Any]) -> str:
    """The reason of a suppressions-topic entry: entries written before reasons existed are
    hard bounces (what readers of the public topic should call)."""
    reason = entry.get("reason")
    return reason if isinstance(reason, str) and reason else HARD_BOUNCE


def _event_doc(e: Event | None) -> list[Any] | None:
    return None if e is None else [e.time, e.partition, e.offset, e.details]


def _episode_doc(ep: Episode) -> dict[str, Any]:
    return {
        "e": [[p, o, t] for (p, o), t in ep.events.items()],
        "l": _event_doc(ep.latest),
        "m": ep.merged,
    }


def encode_state(state: RecipientState) -> bytes:
    """The changelog (state topic) value of a recipient: ``d`` and the hard episode's ``e``,
    ``l``, ``m`` (the keys of values written before reasons existed), and only when set ``c``
    (complaints, an episode), ``x`` (manual), ``r`` (removed), ``u`` (held OOBs)."""
    doc: dict[str, Any] = {"d": state.delivered, **_episode_doc(state.hard)}
    if state.complaints.active:
        doc["c"] = _episode_doc(state.complaints)
    if state.manual is not None:
        doc["x"] = _event_doc(state.manual)
    if state.removed is not None:
        doc["r"] = state.removed
    if state.held:
        doc["u"] = [_event_doc(e) for e in state.held.values()]
    return orjson.dumps(doc)


def _event(doc: Any, kind: str) -> Event | None:
    if doc is None:
        return None
    t, p, o, details = doc
    return Event(int(t), int(p), int(o), details, kind)


def _episode(doc: dict[str, Any], kind: str) -> Episode:
    merged = doc["m"]
    return Episode(
        events={(int(p), int(o)): int(t) for p, o, t in doc["e"]},
        latest=_event(doc["l"], kind),
        merged=None if merged is None else (int(merged[0]), int(merged[1]), int(merged[2])),
    )


def decode_state(value: bytes) -> RecipientState:
    """A changelog value back as a state (one written before reasons existed too); BadEvent
    when it does not decode."""
    try:
        doc = orjson.loads(value)
        complaints = doc.get("c")
        removed = doc.get("r")
        held = [_event(e, OOB) for e in doc.get("u", ())]
        return RecipientState(
            delivered=doc["d"],
            hard=_episode(doc, BOUNCE),
            complaints=Episode() if complaints is None else _episode(complaints, COMPLAINT),
            manual=_event(doc.get("x"), MANUAL),
            removed=None if removed is None else int(removed),
            held={e.source: e for e in held if e is not None},
        )
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError) as exc:
        raise BadEvent(f"undecodable suppression state: {exc}") from None


#: Of events at one millisecond, the reference folds deliveries first (a hard bounce at a
#: delivery's millisecond stays; an OOB is trusted by it) and removes last (they lift ties).
_RANK = {DELIVERY: 0, REMOVE: 2}


def truth(events: Iterable[Event], oob_trust_ms: int | None = None) -> RecipientState:
    """The reference: the state the events give when folded in event-time order, once each
    (what any arrival order and duplication must give; used by the tests)."""
    unique = {(e.source, e.kind): e for e in events}.values()
    state = RecipientState()
    for e in sorted(unique, key=lambda e: (e.time, _RANK.get(e.kind, 1), e.partition, e.offset)):
        fold(state, e, oob_trust_ms)
    return state


class SuppressionStore:
    """The stage's recipients, bounded to ``capacity`` entries.

    Over the bound, entries that suppress nobody go first (least recently used): what is lost
    is a delivery time (a hard bounce older than it arriving later suppresses again, the safe
    direction; an OOB it would have trusted is held) and any held OOB. Only when every entry is
    a suppression is the least recently used one forgotten (``overflowed``): its public entry
    stays as it is until an operator's ``remove`` (a delivery cannot tell whether the forgotten
    reason was a hard bounce it would lift or a complaint it must not), and the forgotten
    recipient's next hard bounce starts a new count.

    A recipient known for its deliveries only (most recipients: every Delivery emits an event)
    is held as its latest delivery time alone, not as a state: ``deliver`` folds a delivery
    without building anything, and the first other event makes it a full state.
    """

    def __init__(self, capacity: int, oob_trust_ms: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.oob_trust_ms = oob_trust_ms
        #: Recipients of the OOBs held untrusted since the owner last emptied it.
        self.untrusted: list[str] = []
        # recipient -> (partition, its state, or only its latest delivery time)
        self._live: OrderedDict[str, tuple[int, RecipientState]] = OrderedDict()
        self._quiet: OrderedDict[str, tuple[int, RecipientState | int]] = OrderedDict()
        self.overflowed = False
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._live) + len(self._quiet)

    def get(self, recipient: str) -> RecipientState | None:
        """The recipient's state (of one known for its deliveries only: a new one that says so)."""
        entry = self._live.get(recipient) or self._quiet.get(recipient)
        if entry is None:
            return None
        state = entry[1]
        return RecipientState(delivered=state) if isinstance(state, int) else state

    def apply(self, partition: int, recipient: str, event: Event) -> tuple[Change, RecipientState]:
        """Fold ``event`` into the recipient's state (created when new); returns what changed
        and the state (which the bound may already have forgotten)."""
        live, quiet = self._live, self._quiet
        table: OrderedDict[str, Any] = live
        entry: tuple[int, Any] | None = live.get(recipient)
        if entry is None:
            table, entry = quiet, quiet.get(recipient)
        if entry is None:
            state = RecipientState()
            change = fold(state, event, self.oob_trust_ms)
            self._put(recipient, partition, state)
            if change is Change.HELD:
                self.untrusted.append(recipient)
            return change, state
        known = entry[1]
        if isinstance(known, int):  # known for its deliveries only: a full state from now on
            known = RecipientState(delivered=known)
            entry = quiet[recipient] = (entry[0], known)
        state = known
        change = fold(state, event, self.oob_trust_ms)
        if change is Change.HELD:
            self.untrusted.append(recipient)
        self._touched(table, recipient, entry, state)
        return change, state

    def fold(
        self, partition: int, recipient: str, event: Event | int
    ) -> tuple[Change, RecipientState | None]:
        """Fold what ``read_event`` read: a delivery's time (``deliver``) or an Event
        (``apply``)."""
        if isinstance(event, int):
            return self.deliver(partition, recipient, event)
        return self.apply(partition, recipient, event)

    def deliver(
        self, partition: int, recipient: str, t: int
    ) -> tuple[Change, RecipientState | None]:
        """Fold a delivery at ``t`` (what ``read_event`` reads as a time): ``apply`` without
        an Event. The state is None while the recipient is known for its deliveries only
        (nothing public changed then)."""
        live, quiet = self._live, self._quiet
        entry = quiet.get(recipient)
        if entry is not None and type(entry[1]) is int:
            quiet.move_to_end(recipient)  # most recently used
            if t <= entry[1]:
                return Change.NONE, None
            quiet[recipient] = (entry[0], t)
            return Change.QUIET, None
        table: OrderedDict[str, Any] = quiet
        if entry is None:
            table, entry = live, live.get(recipient)
            if entry is None:
                self._put(recipient, partition, t)
                return Change.QUIET, None
        state = entry[1]
        assert type(state) is RecipientState
        change = _deliver(state, t, self.oob_trust_ms)
        self._touched(table, recipient, entry, state)
        return change, state

    def _touched(
        self,
        table: OrderedDict[str, Any],
        recipient: str,
        entry: tuple[int, Any],
        state: RecipientState,
    ) -> None:
        """The entry was used: the most recent of its table, or moved to the other one."""
        live = self._live
        if (table is live) == state.suppressed:
            table.move_to_end(recipient)
        else:
            del table[recipient]
            (self._quiet if table is live else live)[recipient] = entry

    def restore(self, partition: int, recipient: str, state: RecipientState | None) -> None:
        """A changelog record read back (None: a tombstone, forget the recipient)."""
        self._live.pop(recipient, None)
        self._quiet.pop(recipient, None)
        if state is not None:
            self._put(recipient, partition, state)

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the recipients of partitions no longer owned."""
        gone = set(partitions)
        tables: tuple[OrderedDict[str, Any], ...] = (self._live, self._quiet)
        for table in tables:
            for key in [k for k, (p, _) in table.items() if p in gone]:
                del table[key]

    def _put(self, recipient: str, partition: int, state: RecipientState | int) -> None:
        if isinstance(state, RecipientState) and state.suppressed:
            self._live[recipient] = (partition, state)
        else:
            self._quiet[recipient] = (partition, state)
        while len(self._live) + len(self._quiet) > self.capacity:
            self.evicted += 1
            if self._quiet:
                self._quiet.popitem(last=False)
            else:
                self._live.popitem(last=False)
                self.overflowed = True
