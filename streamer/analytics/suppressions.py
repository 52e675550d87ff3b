"""Suppression events: what a worker says about a recipient, for the suppression stage.

A worker does not decide suppressions (it sees only its partitions of the input, keyed by
message id): it emits one *event* per recipient of a hard bounce (a hard-category Bounce or
OOB), of a complaint (a Feedback report of a type in ``suppress_feedback_types``, for the
complainer the report names) and of a Delivery, keyed by the lower-cased recipient, to the
internal events topic. The stage owning that recipient's partition folds them
(``streamer.analytics.suppression_fold``) and writes the public, compacted suppressions topic
(``streamer.worker.suppressor``).

The pipeline sends a batch's Delivery events as one record per events partition instead, when
the worker knows the partition count (``streamer.analytics.delivery_batches``).

An event value is a small JSON object: ``t`` the event time (epoch ms; the worker's clock when
the record has none), ``p``/``o`` the input partition and offset it came from (added by the
pipeline: what makes a replay recognisable), ``k`` the kind when it is not a Bounce or a
Delivery (``oob``, ``complaint``; ``manual``/``remove`` from the CLI), and ``h`` the details:
the label, rule, response line, provider, tenant and sender domain (a complaint adds its
``feedback_type``). A Delivery's event is ~40 bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from streamer.analytics.batch import oob_tenant, tenant_of
from streamer.analytics.categories import HARD
from streamer.analytics.suppression_fold import COMPLAINT, OOB
from streamer.analytics.windows import event_time_ms
from streamer.feedback import DEFAULT_SUPPRESS_FEEDBACK, complained_about, feedback_type
from streamer.records import recipients
from streamer.rules import Rule

#: Record types whose hard category suppresses the recipient. OOB is an asynchronous bounce
#: (a DSN received after the receiver accepted the message): just as final as a Bounce.
SUPPRESSING_TYPES = frozenset({"Bounce", "OOB"})
#: Rules whose JSON object is remembered (emptied when full).
RULES_REMEMBERED = 4096
#: (key, value) of one suppression event (the value without its source yet).
SuppressionEvent = tuple[bytes, bytes]


def rule_object(rule: Rule | Mapping[str, Any] | str | None) -> Any:
    """A JSON-able rule: the same object as ``classification.rule`` for a :class:`Rule`."""
    if isinstance(rule, Rule):
        return {
            "file": rule.file,
            "label": rule.label,
            "index": rule.index,
            "pattern": rule.pattern,
        }
    if isinstance(rule, Mapping):
        return dict(rule)
    return rule


def _key(address: Any) -> str | None:
    if type(address) is not str:
        return None
    key = address.strip().strip("<>").lower()
    return key or None


def recipient_keys(record: Mapping[str, Any]) -> list[str]:
    """Every recipient the record concerns as a suppression key (lower-cased, no angle
    brackets): ``records.recipients``, so a ``Rejection`` of ``RCPT TO`` names the refused
    address (not the last accepted one KumoMTA puts in ``recipient``) and a log hook's
    bookkeeping record (a ``Delivery`` of the hook's queue) names nobody: it lifts nothing."""
    return [k for k in map(_key, recipients(record)) if k is not None]


def sender_domain(record: Mapping[str, Any]) -> str | None:
    """The envelope sender's domain, lower-cased (None without one); of a Feedback record, the
    complained-of message's (the report's ``original_mail_from``), not the report's sender."""
    sender = record.get("sender")
    if record.get("type") == "Feedback":
        report = record.get("feedback_report")
        sender = report.get("original_mail_from") if type(report) is dict else None
    if type(sender) is not str or "@" not in sender:
        return None
    return sender.strip().strip("<>").rpartition("@")[2].lower() or None


def with_source(value: bytes, partition: int, offset: int) -> bytes:
    """An event value with the input partition and offset it came from."""
    return b'{"p":%d,"o":%d,%s' % (partition, offset, value[1:])


class SuppressionEvents:
    """Turns classified records into suppression events (see the module doc).

    Stateless: whatever worker sees a record emits the same events, and the stage decides.
    ``suppress_feedback``: the Feedback-Types whose reports suppress the complainer;
    ``oob_tenant_meta``: the ``meta`` key an OOB's tenant is read from (``batch.oob_tenant``).
    """

    def __init__(
        self,
        suppress_feedback: Iterable[str] = DEFAULT_SUPPRESS_FEEDBACK,
        oob_tenant_meta: str = "tenant",
    ) -> None:
        self._rules: dict[int, tuple[Rule, Any]] = {}  # id(rule) -> (rule, rule_object(rule))
        self.suppress_feedback = frozenset(suppress_feedback)
        self.oob_tenant_meta = oob_tenant_meta

    def rule_json(self, rule: Rule | Mapping[str, Any] | str | None) -> Any:
        """:func:`rule_object`, built once per :class:`Rule` (immutable): remembered by the
        rule's identity (the entry holds the rule, so its id cannot be reused meanwhile)."""
        cached = self._rules.get(id(rule))
        if cached is not None and cached[0] is rule:
            return cached[1]
        rule_json = rule_object(rule)
        if type(rule) is Rule:
            if len(self._rules) >= RULES_REMEMBERED:
                self._rules.clear()
            self._rules[id(rule)] = (rule, rule_json)
        return rule_json

    def complaint_type(self, record: Mapping[str, Any]) -> str | None:
        """The Feedback-Type of a Feedback record whose report suppresses, else None."""
        if record.get("type") != "Feedback":
            return None
        kind = feedback_type(record)
        return kind if kind in self.suppress_feedback else None

    def update(
        self,
        record: Mapping[str, Any],
        label: str | None,
        category: str | None,
        rule: Rule | Mapping[str, Any] | str | None,
        line: str | None,
        provider: str,
        now: float,
    ) -> list[SuppressionEvent]:
        """The events of one record (usually none): one per recipient of a Delivery or a hard
        bounce, one for the complainer of a suppressing report. ``now`` (epoch seconds) stands
        in for the record's event time when it has none."""
        rtype = record.get("type")
        complaint = self.complaint_type(record)
        if complaint is not None:
            complainer, tenant = complained_about(record)
            key = _key(complainer)
            keys = [] if key is None else [key]
        elif rtype == "Delivery" or (category == HARD and rtype in SUPPRESSING_TYPES):
            keys = recipient_keys(record)
            if rtype == "OOB":  # KumoMTA logs the DSN's own meta and queue (see oob_tenant)
                tenant = oob_tenant(record, self.oob_tenant_meta) or None
            else:
                tenant = tenant_of(record) or None
        else:
            return []
        if not keys:
            return []
        t = event_time_ms(record)
        if t is None:
            t = int(now * 1000)
        if rtype == "Delivery":
            value = b'{"t":%d}' % t
        else:
            details = {
                "label": label,
                "rule": self.rule_json(rule),
                "response": line,
                "provider": provider,
                "tenant": tenant,
                "sender_domain": sender_domain(record),
            }
            doc: dict[str, Any] = {"t": t, "h": details}
            if complaint is not None:
                details["feedback_type"] = complaint
                doc["k"] = COMPLAINT
            elif rtype == "OOB":
                doc["k"] = OOB
            value = orjson.dumps(doc)
        return [(k.encode(), value) for k in keys]
