"""streamer.feedback: labels and categories for KumoMTA Feedback (ARF) records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamer.analytics.categories import CategoryTable
from streamer.feedback import FEEDBACK_LABELS, FEEDBACK_TYPES, feedback_label, feedback_type
from streamer.rules import PREDEFINED_LABELS

README = Path(__file__).resolve().parent.parent / "rules" / "README.md"


def _record(feedback_type: Any = "abuse", **report: Any) -> dict[str, Any]:
    """A Feedback log record shaped like KumoMTA's (docs: reference/log_record)."""
    return {
        "type": "Feedback",
        "id": "1d98076abbbc11ed940250ebf67f93bd",
        "sender": "bounces@example.net",
        "recipient": "fbl@example.net",
        "response": {"code": 250, "enhanced_code": None, "content": "", "command": None},
        "bounce_classification": "Uncategorized",
        "feedback_report": {
            "feedback_type": feedback_type,
            "user_agent": "SomeGenerator/1.0",
            "version": 1,
            "arrival_date": "2026-01-01T12:00:00Z",
            "incidents": None,
            "original_envelope_id": None,
            "original_mail_from": "<bounces@example.net>",
            "reporting_mta": {"mta_type": "dns", "name": "fbl.example.com"},
            "source_ip": "192.0.2.1",
            "authentication_results": ["fbl.example.com; spf=pass smtp.mail=bounces@example.net"],
            "original_rcpto_to": ["<user@example.com>"],
            "reported_domain": ["example.net"],
            "reported_uri": [],
            "extensions": {},
            "original_message": None,
            "supplemental_trace": None,
            **report,
        },
    }


@pytest.mark.parametrize(
    ("feedback_type", "label"),
    [
        ("abuse", "FeedbackAbuse"),
        ("fraud", "FeedbackFraud"),
        ("virus", "FeedbackVirus"),
        ("not-spam", "FeedbackNotSpam"),
        ("auth-failure", "FeedbackAuthFailure"),
        ("opt-out", "FeedbackOptOut"),
        ("opt-out-list", "FeedbackOptOut"),
        ("other", "FeedbackOther"),
        # case, underscores and spaces do not matter
        ("Abuse", "FeedbackAbuse"),
        (" ABUSE\n", "FeedbackAbuse"),
        ("not_spam", "FeedbackNotSpam"),
        ("Auth-Failure", "FeedbackAuthFailure"),
        # an unregistered type is still a feedback report
        ("dmarc", "FeedbackOther"),
        ("x-complaint", "FeedbackOther"),
    ],
)
def test_label_from_feedback_type(feedback_type: str, label: str) -> None:
    assert feedback_label(_record(feedback_type)) == label


@pytest.mark.parametrize(
    "record",
    [
        None,
        "Feedback",
        42,
        [],
        {},
        {"type": "Feedback"},
        {"type": "Feedback", "feedback_report": None},
        {"type": "Feedback", "feedback_report": "abuse"},
        {"type": "Feedback", "feedback_report": ["abuse"]},
        {"type": "Feedback", "feedback_report": {}},
        {"type": "Feedback", "feedback_report": {"feedback_type": None}},
        {"type": "Feedback", "feedback_report": {"feedback_type": ""}},
        {"type": "Feedback", "feedback_report": {"feedback_type": "   "}},
        {"type": "Feedback", "feedback_report": {"feedback_type": 1}},
        {"type": "Feedback", "feedback_report": {"feedback_type": ["abuse"]}},
        # an ordinary bounce record: KumoMTA logs feedback_report as null
        {"type": "Bounce", "feedback_report": None, "response": {"code": 550}},
    ],
)
def test_no_usable_report_gives_none(record: Any) -> None:
    assert feedback_label(record) is None


def test_hostile_mapping_never_raises() -> None:
    class Exploding(dict):  # type: ignore[type-arg]
        def get(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    assert feedback_label(Exploding(type="Feedback")) is None
    assert feedback_label({"feedback_report": Exploding()}) is None


def test_only_the_feedback_type_matters() -> None:
    rec = _record("abuse", user_agent=None, reporting_mta=None, source_ip=12)
    assert feedback_label(rec) == "FeedbackAbuse"
    assert feedback_label({"feedback_report": {"feedback_type": "fraud"}}) == "FeedbackFraud"


def test_every_label_has_a_category_in_the_shipped_table() -> None:
    table = CategoryTable.shipped()
    assert set(FEEDBACK_TYPES.values()) == set(FEEDBACK_LABELS)
    for label in FEEDBACK_LABELS:
        assert label in table, label
        assert table.category(label, None) in {"complaint", "undetermined"}


def test_complaints_and_non_complaints() -> None:
    table = CategoryTable.shipped()
    for kind in ("abuse", "fraud", "virus", "other", "opt-out"):
        label = feedback_label(_record(kind))
        assert label is not None and table.category(label, None) == "complaint", kind
    for kind in ("not-spam", "auth-failure"):
        label = feedback_label(_record(kind))
        assert label is not None and table.category(label, None) == "undetermined", kind


def test_feedback_type_is_bounded() -> None:
    assert feedback_type(_record("Not_Spam")) == "not-spam"
    assert feedback_type(_record("opt-out-list")) == "opt-out"
    assert feedback_type(_record("x-anything")) == "other"
    assert feedback_type({"type": "Feedback"}) is None


def test_labels_are_user_defined_and_documented() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "## Feedback (ARF) records" in readme
    for label in FEEDBACK_LABELS:
        assert label not in PREDEFINED_LABELS
        assert f"`{label}`" in readme, f"rules/README.md does not document {label}"
