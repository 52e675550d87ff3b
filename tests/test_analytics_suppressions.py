"""Suppression events: what a worker emits for the stage (hard bounces and deliveries, one event
per recipient, keyed by the normalised address)."""

from __future__ import annotations

from typing import Any

import kumomta_records as kumo
import orjson
import pytest

from streamer.analytics.suppression_fold import decode_event
from streamer.analytics.suppressions import SuppressionEvents, with_source
from streamer.config import ConfigError, load_settings
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


def test_a_complaint_emits_for_the_complainer_with_the_report_details() -> None:
    tr = SuppressionEvents()
    record = kumo.feedback(5, "Carol@Yahoo.example", "abuse", tenant="acme")
    [(k, v)] = tr.update(record, "FeedbackAbuse", "complaint", None, "250 ok", "yahoo", 0)
    assert k == b"carol@yahoo.example"  # not the feedback mailbox the record names
    doc = orjson.loads(v)
    assert doc == {
        "t": (kumo.T0 + 5) * 1000 + 123,
        "k": "complaint",
        "h": {
            "label": "FeedbackAbuse",
            "rule": None,
            "response": "250 ok",
            "provider": "yahoo",
            "tenant": "acme",
            "sender_domain": "mail.acme.example",  # the complained-of message's sender
            "feedback_type": "abuse",
        },
    }
    assert decode_event(with_source(v, 0, 1)).kind == "complaint"


def test_only_the_configured_feedback_types_suppress() -> None:
    default = SuppressionEvents()
    for kind, label in (("not-spam", "FeedbackNotSpam"), ("virus", "FeedbackVirus")):
        record = kumo.feedback(1, "c@x.example", kind)
        assert default.update(record, label, "complaint", None, "250 ok", "g", 0) == []
    virus = SuppressionEvents(suppress_feedback=["virus"])
    record = kumo.feedback(1, "c@x.example", "virus")
    assert len(virus.update(record, "FeedbackVirus", "complaint", None, "250 ok", "g", 0)) == 1


def test_an_oob_event_asks_for_trust_and_takes_its_tenant_from_meta() -> None:
    tr = SuppressionEvents(oob_tenant_meta="x_tenant")
    record = kumo.oob(7, "Dan@Example.net", meta={"x_tenant": "acme", "tenant": "not-this"})
    [(k, v)] = hard(tr, record)
    doc = orjson.loads(v)
    assert (k, doc["k"], doc["h"]["tenant"]) == (b"dan@example.net", "oob", "acme")
    # without the meta key: no tenant (the queue is the DSN's own, not the bounced message's)
    [(_, v)] = hard(tr, kumo.oob(7, "dan@example.net"))
    assert orjson.loads(v)["h"]["tenant"] is None
    # a Bounce is unchanged: no kind, the queue's tenant
    [(_, v)] = hard(tr, bounce())
    assert "k" not in orjson.loads(v) and orjson.loads(v)["h"]["tenant"] == "acme"


def test_an_unknown_feedback_type_is_a_one_line_configuration_error(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("STREAMER_SUPPRESS_FEEDBACK_TYPES", '["abuse", "spam"]')
    with pytest.raises(
        ConfigError, match=r"suppress_feedback_types.*unknown feedback types \['spam'\]"
    ):
        load_settings()
    clean_env.setenv("STREAMER_SUPPRESS_FEEDBACK_TYPES", '["abuse", "virus"]')
    clean_env.setenv("STREAMER_OOB_TRUST_PERIOD", "0")
    settings = load_settings()
    assert (settings.suppress_feedback_types, settings.oob_trust_period) == (["abuse", "virus"], 0)
