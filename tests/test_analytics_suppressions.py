"""Suppressions: hard bounces write entries, Deliveries tombstone known ones, memory is bounded."""

from __future__ import annotations

from typing import Any

import orjson

from streamer.analytics.suppressions import SuppressionTracker
from streamer.rules import Rule

T0 = 1_767_268_800
RULE = Rule(3, "InvalidRecipient", "(?i)user unknown", "rules/x.toml")
LINE = "550 5.1.1 user unknown"


def bounce(
    recipient: str = "Bob@Example.com", t: int = T0, rtype: str = "Bounce"
) -> dict[str, Any]:
    return {"type": rtype, "recipient": recipient, "timestamp": t}


def hard(tr: SuppressionTracker, record: dict[str, Any]) -> list[tuple[bytes, bytes | None]]:
    return tr.update(record, "InvalidRecipient", "hard", RULE, LINE, "google", now=0)


def test_hard_bounce_writes_an_entry_and_counts_repeats() -> None:
    tr = SuppressionTracker()
    [(k, v)] = hard(tr, bounce())
    assert k == b"bob@example.com"
    assert v is not None
    doc = orjson.loads(v)
    assert doc == {
        "recipient": "bob@example.com",
        "label": "InvalidRecipient",
        "rule": {
            "file": "rules/x.toml",
            "label": "InvalidRecipient",
            "index": 3,
            "pattern": "(?i)user unknown",
        },
        "response": LINE,
        "provider": "google",
        "first_seen": T0 * 1000,
        "last_seen": T0 * 1000,
        "count": 1,
    }
    [(_, v2)] = hard(tr, bounce("bob@example.com", T0 + 100, rtype="OOB"))
    assert v2 is not None
    doc2 = orjson.loads(v2)
    assert (doc2["first_seen"], doc2["last_seen"], doc2["count"]) == (
        T0 * 1000,
        (T0 + 100) * 1000,
        2,
    )
    [(_, v3)] = hard(tr, bounce(t=T0 - 50))  # out of order: first_seen moves back, last stays
    assert v3 is not None
    doc3 = orjson.loads(v3)
    assert (doc3["first_seen"], doc3["last_seen"], doc3["count"]) == (
        (T0 - 50) * 1000,
        (T0 + 100) * 1000,
        3,
    )


def test_only_hard_bounces_suppress() -> None:
    tr = SuppressionTracker()
    assert tr.update(bounce(), "QuotaIssues", "soft", None, LINE, "g", 0) == []
    assert tr.update(bounce(), "SpamBlock", "block", None, LINE, "g", 0) == []
    assert (
        tr.update(bounce(rtype="TransientFailure"), "InvalidRecipient", "hard", None, LINE, "g", 0)
        == []
    )
    assert tr.update({"type": "Bounce"}, "InvalidRecipient", "hard", None, LINE, "g", 0) == []
    assert len(tr) == 0


def test_delivery_tombstones_a_known_suppression_once() -> None:
    tr = SuppressionTracker()
    hard(tr, bounce())
    delivery = {"type": "Delivery", "recipient": "BOB@example.com"}
    assert tr.update(delivery, None, None, None, None, "google", 0) == [(b"bob@example.com", None)]
    assert tr.update(delivery, None, None, None, None, "google", 0) == []  # already removed
    assert (
        tr.update({"type": "Delivery", "recipient": "new@x"}, None, None, None, None, "g", 0) == []
    )


def test_tombstone_all_deliveries_option() -> None:
    tr = SuppressionTracker(tombstone_all_deliveries=True)
    out = tr.update({"type": "Delivery", "recipient": "New@X"}, None, None, None, None, "g", 0)
    assert out == [(b"new@x", None)]


def test_memory_is_bounded_and_an_evicted_entry_restarts_its_count() -> None:
    tr = SuppressionTracker(capacity=100)
    for i in range(10_000):
        hard(tr, bounce(f"user{i}@x.example"))
        assert len(tr) <= 100
    [(_, v)] = hard(tr, bounce("user0@x.example", T0 + 5))
    assert v is not None
    doc = orjson.loads(v)
    assert doc["count"] == 1 and doc["first_seen"] == (T0 + 5) * 1000


def test_now_stands_in_for_a_missing_event_time() -> None:
    tr = SuppressionTracker()
    [(_, v)] = tr.update(
        {"type": "Bounce", "recipient": "a@b"}, "X", "hard", "rule-text", LINE, "g", now=12.5
    )
    assert v is not None
    doc = orjson.loads(v)
    assert doc["first_seen"] == 12_500 and doc["rule"] == "rule-text"


def test_a_multi_recipient_record_suppresses_and_lifts_each_recipient() -> None:
    # KumoMTA logs a multi-recipient transaction's recipient as a list (since 2025.12.02).
    tr = SuppressionTracker()
    record: dict[str, Any] = {
        "type": "Bounce",
        "recipient": ["<A@x.example>", "b@x.example", 7, ""],
        "timestamp": T0,
    }
    writes = hard(tr, record)
    assert [k for k, _v in writes] == [b"a@x.example", b"b@x.example"]  # junk entries skipped
    assert all(orjson.loads(v or b"")["count"] == 1 for _k, v in writes)
    delivered = {"type": "Delivery", "recipient": ["B@x.example", "c@x.example"]}
    assert tr.update(delivered, None, None, None, None, "g", 0) == [(b"b@x.example", None)]
    assert "a@x.example" in tr and "b@x.example" not in tr
