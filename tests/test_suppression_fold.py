"""The suppression stage's fold: any arrival order or duplication of a recipient's events gives
the value of the events folded once each in event-time order."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics import suppression_fold as sf
from streamer.analytics.suppression_fold import (
    BadEvent,
    Change,
    Event,
    RecipientState,
    SuppressionStore,
    decode_event,
    decode_state,
    encode_state,
    fold,
    public_value,
    read_event,
    truth,
)

R = "bob@example.com"


def hard(t: int, p: int = 0, o: int = 0, label: str = "InvalidRecipient") -> Event:
    return Event(t, p, o, {"label": label, "provider": "google", "tenant": "t1"})


def deliver(t: int, p: int = 0, o: int = 0) -> Event:
    return Event(t, p, o)


def folded(events: list[Event]) -> RecipientState:
    state = RecipientState()
    for e in events:
        fold(state, e)
    return state


def value(state: RecipientState) -> Any:
    v = public_value(R, state)
    return None if v is None else orjson.loads(v)


def test_a_hard_bounce_suppresses_with_its_details() -> None:
    state = RecipientState()
    assert fold(state, hard(1000, 2, 7)) is Change.PUBLIC
    assert value(state) == {
        "recipient": R,
        "label": "InvalidRecipient",
        "rule": None,
        "response": None,
        "provider": "google",
        "tenant": "t1",
        "sender_domain": None,
        "first_seen": 1000,
        "last_seen": 1000,
        "count": 1,
        "reason": "hard-bounce",
        "reasons": ["hard-bounce"],
    }


def test_replays_count_once_and_out_of_order_times_widen() -> None:
    state = folded([hard(2000, 0, 5), hard(1000, 1, 9)])
    assert fold(state, hard(2000, 0, 5)) is Change.NONE  # the same source again
    doc = value(state)
    assert (doc["count"], doc["first_seen"], doc["last_seen"]) == (2, 1000, 2000)


def test_a_later_delivery_lifts_and_an_older_one_does_not() -> None:
    state = folded([hard(1000, 0, 1), hard(3000, 0, 2)])
    assert fold(state, deliver(2000)) is Change.PUBLIC  # the 1000 one goes, 3000 stays
    doc = value(state)
    assert (doc["count"], doc["first_seen"], doc["last_seen"]) == (1, 3000, 3000)
    assert fold(state, deliver(1500)) is Change.NONE  # older than the delivery known
    assert fold(state, deliver(4000)) is Change.PUBLIC
    assert value(state) is None  # tombstone
    assert fold(state, hard(3500, 1, 1)) is Change.NONE  # stale: delivered after it


def test_a_delivery_to_no_suppression_changes_no_public_value() -> None:
    state = RecipientState()
    assert fold(state, deliver(5000)) is Change.QUIET
    assert value(state) is None
    assert fold(state, hard(4000, 0, 1)) is Change.NONE  # the late older bounce is stale


def test_ties_keep_the_address_suppressed() -> None:
    assert value(folded([hard(1000), deliver(1000)])) is not None
    assert value(folded([deliver(1000), hard(1000)])) is not None


def test_the_latest_hard_event_gives_the_details() -> None:
    state = folded([hard(2000, 0, 1, "Late"), hard(1000, 0, 2, "Early")])
    assert value(state)["label"] == "Late"
    state = folded([hard(2000, 0, 1, "A"), hard(2000, 1, 0, "B")])  # tie: later source
    assert value(state)["label"] == "B"


def test_the_episode_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "EPISODE_LIMIT", 3)
    state = folded([hard(t, 0, t) for t in (10, 20, 30, 40, 50)])
    assert len(state.hard.events) == 3 and state.hard.merged == (2, 10, 20)
    doc = value(state)
    assert (doc["count"], doc["first_seen"], doc["last_seen"]) == (5, 10, 50)
    assert fold(state, deliver(15)) is Change.QUIET  # inside the merged span: kept (safe)
    assert value(state)["count"] == 5
    fold(state, deliver(25))
    assert value(state)["count"] == 3  # the merged ones all older: gone
    fold(state, deliver(60))
    assert value(state) is None


def test_state_round_trips_through_the_changelog_value() -> None:
    state = folded([hard(1000, 0, 1), deliver(1500), hard(2000, 3, 4), hard(2500, 1, 2)])
    again = decode_state(encode_state(state))
    assert again == state
    assert public_value(R, again) == public_value(R, state)
    with pytest.raises(BadEvent):
        decode_state(b"{}")


def test_events_decode_or_say_why() -> None:
    assert decode_event(b'{"p":1,"o":2,"t":3}') == Event(3, 1, 2)
    assert decode_event(b'{"p":1,"o":2,"t":3,"h":{"label":"x"}}').details == {"label": "x"}
    for bad in (
        b"",
        b"[]",
        b'{"p":1,"o":2}',
        b'{"p":"1","o":2,"t":3}',
        b'{"p":1,"o":2,"t":3,"h":1}',
    ):
        with pytest.raises(BadEvent):
            decode_event(bad)


# A recipient's events: hard or delivery, times from a small range (ties happen), sources from
# a few partitions with distinct offsets.
EVENTS = st.lists(
    st.tuples(st.booleans(), st.integers(0, 20), st.integers(0, 3)), min_size=1, max_size=25
).map(
    lambda specs: [
        hard(t * 100, p, i, f"L{i}") if is_hard else deliver(t * 100, p, i)
        for i, (is_hard, t, p) in enumerate(specs)
    ]
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(EVENTS, st.randoms(use_true_random=False), st.lists(st.integers(0, 24), max_size=10))
def test_any_order_and_duplication_gives_the_event_time_truth(
    events: list[Event], rnd: Any, dups: list[int]
) -> None:
    arrival = events + [events[i % len(events)] for i in dups]
    rnd.shuffle(arrival)
    assert public_value(R, folded(arrival)) == public_value(R, truth(events))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(EVENTS, st.randoms(use_true_random=False), st.integers(0, 25))
def test_a_restart_from_the_changelog_then_a_replay_gives_the_truth(
    events: list[Event], rnd: Any, cut: int
) -> None:
    """The stage folds a prefix, persists its state, restarts from it and reads again from an
    earlier point (at-least-once): still the truth."""
    arrival = list(events)
    rnd.shuffle(arrival)
    cut = min(cut, len(arrival))
    state = decode_state(encode_state(folded(arrival[:cut])))
    replay_from = rnd.randint(0, cut)
    for e in arrival[replay_from:]:
        fold(state, e)
    assert public_value(R, state) == public_value(R, truth(events))


def test_the_store_forgets_quiet_recipients_first() -> None:
    store = SuppressionStore(capacity=2)
    assert store.apply(0, "a", hard(10, 0, 1))[0] is Change.PUBLIC
    assert store.apply(0, "b", deliver(10))[0] is Change.QUIET
    assert store.apply(1, "c", deliver(10))[0] is Change.QUIET  # "b" goes, "a" stays
    assert store.get("b") is None and store.get("a") is not None and not store.overflowed
    assert store.apply(1, "d", hard(10, 0, 2))[0] is Change.PUBLIC  # "c" goes
    assert store.apply(1, "e", hard(10, 0, 3))[0] is Change.PUBLIC  # only suppressions: "a" goes
    assert store.overflowed and store.get("a") is None and len(store) == 2
    store.drop([1])
    assert len(store) == 0
    # a delivery to a forgotten recipient cannot tell a hard bounce (which it would lift) from
    # a complaint (which it must not): its entry stays (the safe direction)
    assert store.apply(0, "a", deliver(20))[0] is Change.QUIET


# --- reasons: complaints, manual suppressions, removes -------------------------------------
DAY = 86_400_000


def complaint(t: int, p: int = 0, o: int = 0, kind: str = "abuse") -> Event:
    details = {"label": "FeedbackAbuse", "provider": "yahoo", "tenant": "t2", "feedback_type": kind}
    return Event(t, p, o, details, sf.COMPLAINT)


def manual(t: int, o: int = 0, note: str | None = "asked by phone") -> Event:
    return Event(t, -1, o, {"note": note}, sf.MANUAL)


def remove(t: int, o: int = 0) -> Event:
    return Event(t, -1, o, None, sf.REMOVE)


def oob(t: int, p: int = 0, o: int = 0) -> Event:
    return Event(t, p, o, {"label": "InvalidRecipient", "provider": "other"}, sf.OOB)


def test_a_complaint_suppresses_and_no_delivery_lifts_it() -> None:
    state = folded([deliver(500), complaint(1000, 3, 4)])
    doc = value(state)
    assert (doc["reason"], doc["reasons"], doc["feedback_type"]) == (
        "complaint",
        ["complaint"],
        "abuse",
    )
    assert (doc["label"], doc["tenant"], doc["count"], doc["first_seen"]) == (
        "FeedbackAbuse",
        "t2",
        1,
        1000,
    )
    assert fold(state, deliver(2000)) is Change.QUIET  # the person's choice stays
    assert value(state) == doc


def test_a_delivery_lifts_the_hard_bounce_beside_a_complaint_only() -> None:
    state = folded([hard(1000, 0, 1), complaint(1500, 0, 2)])
    assert value(state)["reasons"] == ["complaint", "hard-bounce"]
    assert fold(state, deliver(2000)) is Change.PUBLIC
    assert value(state)["reasons"] == ["complaint"]


def test_a_manual_add_outranks_and_a_remove_lifts_every_reason() -> None:
    state = folded([hard(1000, 0, 1), complaint(1100, 0, 2), manual(1200, 7)])
    doc = value(state)
    assert (doc["reason"], doc["note"], doc["count"], doc["last_seen"]) == (
        "manual",
        "asked by phone",
        1,
        1200,
    )
    assert doc["reasons"] == ["manual", "complaint", "hard-bounce"]
    assert fold(state, deliver(5000)) is Change.PUBLIC  # lifts the hard bounce only
    assert value(state)["reasons"] == ["manual", "complaint"]
    assert fold(state, remove(6000, 9)) is Change.PUBLIC
    assert value(state) is None  # a tombstone
    assert fold(state, complaint(5500, 0, 3)) is Change.NONE  # older than the remove: stale
    assert fold(state, manual(6000, 8)) is Change.NONE  # a tie goes to the remove
    assert fold(state, complaint(7000, 0, 4)) is Change.PUBLIC  # a newer one suppresses again
    assert value(state)["reason"] == "complaint"


def test_a_remove_of_an_unknown_address_writes_a_tombstone() -> None:
    state = RecipientState()
    assert fold(state, remove(1000)) is Change.PUBLIC and value(state) is None
    assert fold(state, remove(1000)) is Change.NONE  # replayed


# --- OOB trust -----------------------------------------------------------------------------


def test_an_oob_without_a_delivery_is_held_not_suppressing() -> None:
    state = RecipientState()
    assert fold(state, oob(10 * DAY, 0, 1), DAY) is Change.HELD  # a forged DSN, say
    assert value(state) is None and not state.suppressed
    assert fold(state, oob(10 * DAY, 0, 1), DAY) is Change.NONE  # replayed: held once
    assert fold(state, deliver(11 * DAY), DAY) is Change.QUIET  # after it: stale, dropped
    assert state.held == {}


def test_an_oob_within_the_trust_period_of_a_delivery_suppresses() -> None:
    state = folded([deliver(DAY)])
    assert fold(state, oob(2 * DAY, 0, 1), DAY) is Change.PUBLIC  # exactly the period: trusted
    assert value(state)["reason"] == "hard-bounce"
    stale = folded([deliver(DAY)])
    assert fold(stale, oob(2 * DAY + 1, 0, 1), DAY) is Change.HELD  # a day and a ms: not
    assert fold(state, oob(3 * DAY), None) is Change.PUBLIC  # no trust asked: a Bounce's rule


def test_a_delivery_arriving_after_the_oob_trusts_it() -> None:
    state = RecipientState()
    assert fold(state, oob(5 * DAY, 2, 9), DAY) is Change.HELD
    assert fold(state, deliver(3 * DAY), DAY) is Change.QUIET  # too old to vouch: still held
    assert fold(state, deliver(4 * DAY + 5), DAY) is Change.PUBLIC  # vouches: promoted
    doc = value(state)
    assert (doc["count"], doc["first_seen"]) == (1, 5 * DAY) and state.held == {}


def test_held_oobs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "HELD_LIMIT", 2)
    state = RecipientState()
    for o in range(4):
        fold(state, oob(DAY + o, 0, o), 10)
    assert sorted(state.held) == [(0, 2), (0, 3)]  # the newest kept


# --- values written before reasons existed -------------------------------------------------


def test_values_written_before_reasons_existed_read_as_hard_bounces() -> None:
    # an event and a changelog value of the previous release, as they sit in the topics
    event = decode_event(b'{"p":1,"o":2,"t":3,"h":{"label":"InvalidRecipient"}}')
    assert event.kind == sf.BOUNCE
    old = b'{"d":5,"e":[[1,2,9]],"l":[9,1,2,{"label":"InvalidRecipient"}],"m":null}'
    state = decode_state(old)
    assert state.reasons == ["hard-bounce"] and state.delivered == 5
    assert value(state)["reason"] == "hard-bounce"
    # an entry of the previous release in the public topic
    assert sf.entry_reason({"recipient": R, "count": 1}) == "hard-bounce"
    assert sf.entry_reason({"recipient": R, "reason": "manual"}) == "manual"


def test_new_events_decode_or_say_why() -> None:
    assert decode_event(b'{"p":-1,"o":5,"t":3,"k":"remove"}').kind == sf.REMOVE
    assert decode_event(b'{"p":-1,"o":5,"t":3,"k":"manual"}').kind == sf.MANUAL
    for bad in (b'{"p":1,"o":2,"t":3,"k":"complaint"}', b'{"p":1,"o":2,"t":3,"k":"nope"}'):
        with pytest.raises(BadEvent):
            decode_event(bad)


def test_every_reason_round_trips_through_the_changelog() -> None:
    state = folded([hard(1000, 0, 1), complaint(1100, 0, 2), manual(1200, 7), remove(900)])
    fold(state, oob(9 * DAY, 0, 5), DAY)
    again = decode_state(encode_state(state))
    assert again == state and public_value(R, again) == public_value(R, state)


def _event_of(i: int, kind: str, t: int, p: int) -> Event:
    if kind == "d":
        return deliver(t * 100, p, i)
    if kind == "h":
        return hard(t * 100, p, i, f"L{i}")
    if kind == "o":
        return oob(t * 100, p, i)
    if kind == "c":
        return complaint(t * 100, p, i)
    return manual(t * 100, i, f"n{i}") if kind == "m" else remove(t * 100, i)


# Every kind, times from a small range (ties happen); at most HELD_LIMIT OOBs.
KINDS_EVENTS = st.lists(
    st.tuples(st.sampled_from("dhocmr"), st.integers(0, 20), st.integers(0, 3)),
    min_size=1,
    max_size=16,
).map(lambda specs: [_event_of(i, *spec) for i, spec in enumerate(specs)])


@settings(max_examples=400, deadline=None, derandomize=True)
@given(KINDS_EVENTS, st.randoms(use_true_random=False), st.lists(st.integers(0, 15), max_size=6))
def test_every_kind_in_any_order_gives_the_event_time_truth(
    events: list[Event], rnd: Any, dups: list[int]
) -> None:
    trust = 500  # 5 time steps: some OOBs are vouched for, some not
    arrival = events + [events[i % len(events)] for i in dups]
    rnd.shuffle(arrival)
    state = RecipientState()
    for e in arrival:
        fold(state, e, trust)
    assert public_value(R, state) == public_value(R, truth(events, trust))


def _value(e: Event) -> bytes:
    """The events-topic value of an event, as a worker or the CLI writes it."""
    doc: dict[str, Any] = {"p": e.partition, "o": e.offset, "t": e.time}
    if e.kind not in (sf.DELIVERY, sf.BOUNCE):
        doc["k"] = e.kind
    if e.details is not None:
        doc["h"] = e.details
    return orjson.dumps(doc)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(KINDS_EVENTS, st.randoms(use_true_random=False), st.lists(st.integers(0, 15), max_size=6))
def test_the_store_folding_event_values_gives_the_event_time_truth(
    events: list[Event], rnd: Any, dups: list[int]
) -> None:
    """What the stage does with each value: a delivery read as its time alone (held as that
    while nothing else is known of the recipient), any other as an Event."""
    trust = 500
    arrival = events + [events[i % len(events)] for i in dups]
    rnd.shuffle(arrival)
    store = SuppressionStore(capacity=10, oob_trust_ms=trust)
    for e in arrival:
        store.fold(e.partition, R, read_event(_value(e)))
    state = store.get(R)
    assert state is not None
    assert public_value(R, state) == public_value(R, truth(events, trust))
    assert state.delivered == truth(events, trust).delivered


def test_a_delivery_is_read_as_its_time_alone() -> None:
    assert read_event(b'{"p":1,"o":2,"t":3}') == 3
    assert read_event(b'{"p":1,"o":2,"t":3,"k":"delivery"}') == 3
    assert read_event(b'{"p":-1,"o":2,"t":3,"k":"remove"}') == Event(3, -1, 2, None, sf.REMOVE)
    with pytest.raises(BadEvent, match="odd fields"):
        read_event(b'{"p":1,"o":2,"t":"3"}')
    store = SuppressionStore(capacity=2)
    assert store.deliver(0, "a", 10) == (Change.QUIET, None)
    assert store.deliver(0, "a", 5) == (Change.NONE, None)
    assert store.get("a") == RecipientState(delivered=10)
    change, state = store.apply(0, "a", hard(9, 0, 1))  # older than the delivery: stale
    assert change is Change.NONE and state == RecipientState(delivered=10)
    assert store.apply(0, "a", hard(11, 0, 2))[0] is Change.PUBLIC
    assert store.deliver(0, "a", 12)[0] is Change.PUBLIC  # lifts it
    assert store.get("a") == RecipientState(delivered=12)
