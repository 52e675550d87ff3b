"""Suppression events: what a worker says about a recipient, for the suppression stage.

A worker does not decide suppressions (it sees only its partitions of the input, keyed by
message id): it emits one *event* per recipient of a hard bounce (a hard-category Bounce or
OOB) and of a Delivery, keyed by the lower-cased recipient, to the internal events topic. The
stage owning that recipient's partition folds them (``streamer.analytics.suppression_fold``) and
writes the public, compacted suppressions topic (``streamer.worker.suppressor``).

An event value is a small JSON object: ``t`` the event time (epoch ms; the worker's clock when
the record has none), ``p``/``o`` the input partition and offset it came from (added by the
pipeline: what makes a replay recognisable), and for a hard event ``h``: the label, rule,
response line, provider, tenant and sender domain. A Delivery's event is ~40 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from streamer.analytics.batch import tenant_of
from streamer.analytics.categories import HARD
from streamer.analytics.windows import event_time_ms
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
    """The envelope sender's domain, lower-cased (None without one)."""
    sender = record.get("sender")
    if type(sender) is not str or "@" not in sender:
        return None
    return sender.strip().strip("<>").rpartition("@")[2].lower() or None


def with_source(value: bytes, partition: int, offset: int) -> bytes:
    """An event value with the input partition and offset it came from."""
    return b'{"p":%d,"o":%d,%s' % (partition, offset, value[1:])


class SuppressionEvents:
    """Turns classified records into suppression events (see the module doc).

    Stateless: whatever worker sees a record emits the same events, and the stage decides.
    """

    def __init__(self) -> None:
        self._rules: dict[int, tuple[Rule, Any]] = {}  # id(rule) -> (rule, rule_object(rule))

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
        bounce. ``now`` (epoch seconds) stands in for the record's event time when it has none."""
        rtype = record.get("type")
        if rtype != "Delivery" and (category != HARD or rtype not in SUPPRESSING_TYPES):
            return []
        keys = recipient_keys(record)
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
                "tenant": tenant_of(record) or None,
                "sender_domain": sender_domain(record),
            }
            value = orjson.dumps({"t": t, "h": details})
        return [(k.encode(), value) for k in keys]
