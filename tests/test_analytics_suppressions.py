"""Suppression events: what a worker emits for the stage (hard bounces and deliveries, one event
per recipient, keyed by the normalised address)."""

from __future__ import annotations

from typing import Any

import orjson

from streamer.analytics.suppression_fold import decode_event
from streamer.analytics.suppressions import SuppressionEvents, with_source
from streamer.rules import Rule

T0 = 1_767_268_800
RULE = Rule(3, "InvalidRecipient", "(?i)user unknown", "rules/x.toml")
LINE = "550 5.1.1 user unknown"


def bounce(
    recipient: Any = "Bob@Example.com", t: int = T0, rtype: str = "Bounce"
) -> dict[str, Any]:
    return {
        "type": rtype,
        "recipient": recipient,
        "timestamp": t,
        "sender": "<News@Mail.Shop.example>",
        "queue": "campaign:acme@example.com",
    }


def hard(tr: SuppressionEvents, record: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return tr.update(record, "InvalidRecipient", "hard", RULE, LINE, "google", now=0)


def test_a_hard_bounce_emits_its_details() -> None:
    [(k, v)] = hard(SuppressionEvents(), bounce())
    assert k == b"bob@example.com"
    assert orjson.loads(v) == {
        "t": T0 * 1000,
        "h": {
            "label": "InvalidRecipient",
            "rule": {
                "file": "rules/x.toml",
                "label": "InvalidRecipient",
                "index": 3,
                "pattern": "(?i)user unknown",
            },
            "response": LINE,
            "provider": "google",
            "tenant": "acme",
            "sender_domain": "mail.shop.example",
        },
    }
    event = decode_event(with_source(v, 3, 12345))
    assert (event.partition, event.offset, event.time) == (3, 12345, T0 * 1000)
    assert event.details is not None and event.details["label"] == "InvalidRecipient"


def test_only_hard_bounces_and_deliveries_emit() -> None:
    tr = SuppressionEvents()
    assert tr.update(bounce(), "QuotaIssues", "soft", None, LINE, "g", 0) == []
    assert tr.update(bounce(), "SpamBlock", "block", None, LINE, "g", 0) == []
    transient = bounce(rtype="TransientFailure")
    assert tr.update(transient, "InvalidRecipient", "hard", None, LINE, "g", 0) == []
    assert tr.update({"type": "Bounce"}, "InvalidRecipient", "hard", None, LINE, "g", 0) == []
    oob = hard(tr, bounce(rtype="OOB"))
    assert [k for k, _ in oob] == [b"bob@example.com"]


def test_every_delivery_emits_a_small_event() -> None:
    tr = SuppressionEvents()
    delivery = {"type": "Delivery", "recipient": "BOB@example.com", "timestamp": T0}
    [(k, v)] = tr.update(delivery, None, None, None, None, "google", 0)
    assert (k, v) == (b"bob@example.com", b'{"t":%d}' % (T0 * 1000))
    assert with_source(v, 0, 7) == b'{"p":0,"o":7,"t":%d}' % (T0 * 1000)


def test_now_stands_in_for_a_missing_event_time() -> None:
    tr = SuppressionEvents()
    [(_, v)] = tr.update(
        {"type": "Bounce", "recipient": "a@b"}, "X", "hard", "rule-text", LINE, "g", now=12.5
    )
    doc = orjson.loads(v)
    assert doc["t"] == 12_500 and doc["h"]["rule"] == "rule-text"
    assert doc["h"]["tenant"] is None and doc["h"]["sender_domain"] is None


def test_a_multi_recipient_record_emits_for_each_recipient() -> None:
    # KumoMTA logs a multi-recipient transaction's recipient as a list (since 2025.12.02).
    tr = SuppressionEvents()
    events = hard(tr, bounce(["<A@x.example>", "b@x.example", 7, ""]))
    assert [k for k, _v in events] == [b"a@x.example", b"b@x.example"]  # junk entries skipped
    delivered = {"type": "Delivery", "recipient": ["B@x.example", "c@x.example"], "timestamp": 1}
    keys = [k for k, _ in tr.update(delivered, None, None, None, None, "g", 0)]
    assert keys == [b"b@x.example", b"c@x.example"]
