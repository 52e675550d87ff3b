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
