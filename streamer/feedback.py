"""Labels for KumoMTA ``Feedback`` log records (ARF reports, RFC 5965).

A ``Feedback`` record carries no SMTP response worth classifying; what it means is in its
``feedback_report`` object, whose ``feedback_type`` field holds the RFC 5965 Feedback-Type
(``abuse``, ``fraud``, ``virus``, ``other``, ``not-spam``; ``auth-failure`` from RFC 6591).
:func:`feedback_label` turns that into a label; ``rules/categories.toml`` gives each label its
category. KumoMTA's predefined bounce labels have no complaint label, so these are
user-defined labels; ``rules/README.md`` ("Feedback (ARF) records") documents them.

Pure Python: no Kafka, no rule loading. Any input shape is tolerated; nothing here raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FEEDBACK_ABUSE = "FeedbackAbuse"
FEEDBACK_FRAUD = "FeedbackFraud"
FEEDBACK_VIRUS = "FeedbackVirus"
FEEDBACK_NOT_SPAM = "FeedbackNotSpam"
FEEDBACK_AUTH_FAILURE = "FeedbackAuthFailure"
FEEDBACK_OPT_OUT = "FeedbackOptOut"
FEEDBACK_OTHER = "FeedbackOther"

#: Feedback-Type value (normalised: lower case, ``_`` and spaces as ``-``) -> label.
FEEDBACK_TYPES: dict[str, str] = {
    "abuse": FEEDBACK_ABUSE,  # RFC 5965: unsolicited mail or other abuse (a spam complaint)
    "fraud": FEEDBACK_FRAUD,  # RFC 5965: fraud or phishing
    "virus": FEEDBACK_VIRUS,  # RFC 5965: the message carried a virus
    "not-spam": FEEDBACK_NOT_SPAM,  # RFC 5965: the recipient says it is NOT spam
    "auth-failure": FEEDBACK_AUTH_FAILURE,  # RFC 6591: SPF / DKIM / DMARC failure report
    # Pre-RFC ARF drafts, still sent by a few feedback loops: an unsubscribe request
    "opt-out": FEEDBACK_OPT_OUT,
    "opt-out-list": FEEDBACK_OPT_OUT,
    "other": FEEDBACK_OTHER,  # RFC 5965: any other kind of report
}

#: Every label this module gives; their categories are in ``rules/categories.toml``
#: (complaints are neither hard nor soft bounces: the message was delivered; ``not-spam`` and
#: ``auth-failure`` reports are no recipient's complaint, so they are ``undetermined``).
FEEDBACK_LABELS: tuple[str, ...] = tuple(dict.fromkeys(FEEDBACK_TYPES.values()))


def _normalise(value: str) -> str:
    return "-".join(value.strip().lower().replace("_", " ").replace("-", " ").split())


def complained_about(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(recipient, tenant) of the message a feedback report complains about, as far as known.

    The record's own ``recipient`` is the feedback mailbox; the complainer is in the report:
    KumoMTA's ``supplemental_trace`` (decoded from the X-KumoRef header it adds to every
    message) names the recipient and tenant, ``original_rcpto_to`` the recipient.
    """
    # exact-type tests first: decoded JSON is plain dicts, and an ABC isinstance costs ~10x
    report = record.get("feedback_report")
    if type(report) is not dict and not isinstance(report, Mapping):
        return None, None
    trace = report.get("supplemental_trace")
    if type(trace) is not dict and not isinstance(trace, Mapping):
        trace = {}
    recipient = trace.get("recipient")
    if not isinstance(recipient, str):
        listed = report.get("original_rcpto_to")
        recipient = listed[0] if isinstance(listed, list) and listed else None
    tenant = trace.get("tenant")
    return (
        recipient if isinstance(recipient, str) and recipient else None,
        tenant if isinstance(tenant, str) and tenant else None,
    )


def feedback_type(record: Any) -> str | None:
    """The normalised Feedback-Type of a record's report: a known type, ``"other"`` for any
    other non-empty one (a bounded set: types are input values), None without a usable one."""
    label = feedback_label(record)
    if label is None:
        return None
    return _TYPE_OF_LABEL[label]


def feedback_label(record: Any) -> str | None:
    """The label of a log record's ARF feedback report, or None if it carries no usable one.

    ``record["feedback_report"]["feedback_type"]`` decides: a known Feedback-Type gives its
    label (case, ``_`` and surrounding spaces do not matter), any other non-empty type gives
    ``FeedbackOther`` (RFC 5965 lets reporters register new types). None when the record is
    not a mapping, has no ``feedback_report`` mapping, or the report has no non-empty string
    ``feedback_type``: the record is then classified from its response line as usual.
    """
    try:
        if type(record) is not dict and not isinstance(record, Mapping):
            return None
        report = record.get("feedback_report")
        if type(report) is not dict and not isinstance(report, Mapping):
            return None
        kind = report.get("feedback_type")
        if not isinstance(kind, str):
            return None
        key = _normalise(kind)
        if not key:
            return None
        return FEEDBACK_TYPES.get(key, FEEDBACK_OTHER)
    except Exception:  # a hostile Mapping implementation; never let it break the pipeline
        return None


_TYPE_OF_LABEL: dict[str, str] = {}
for _type, _label in FEEDBACK_TYPES.items():
    _TYPE_OF_LABEL.setdefault(_label, _type)


def feedback_type_of_label(label: str) -> str:
    """The canonical Feedback-Type of one of this module's labels (``feedback_type``'s)."""
    return _TYPE_OF_LABEL[label]


#: Every canonical Feedback-Type (what ``feedback_type`` returns).
CANONICAL_TYPES: tuple[str, ...] = tuple(_TYPE_OF_LABEL.values())
#: The Feedback-Types whose reports suppress the complainer by default
#: (``suppress_feedback_types``): spam and phishing complaints, which mailbox providers'
#: bulk-sender rules and KumoMTA's FBL guide expect a sender to stop mailing. An unsubscribe
#: request through a feedback loop (``opt-out``) is the sender's list to honour; ``not-spam``
#: and ``auth-failure`` are no complaint; ``virus`` and ``other`` say nothing of the
#: recipient's wish.
DEFAULT_SUPPRESS_FEEDBACK: tuple[str, ...] = ("abuse", "fraud")
