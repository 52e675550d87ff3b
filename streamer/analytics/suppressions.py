"""Suppression-list updates: hard bounces write an entry, a later Delivery removes it.

Output is (key, value) pairs for a compacted topic keyed by the lower-cased recipient; a value
of None is a tombstone. The tracker remembers recently hard-bounced recipients in a bounded LRU:

* ``first_seen`` and ``count`` come from that memory, so when an entry is evicted (or the
  worker restarts, or another worker saw the earlier bounce) the next hard bounce starts again
  at ``count`` 1 with a new ``first_seen``; consumers that need exact history should merge.
* A record of a multi-recipient transaction (KumoMTA since 2025.12.02 logs ``recipient`` as a
  list then) writes an entry, or a tombstone, for each of its recipients.
* A Delivery writes a tombstone only for a recipient the tracker remembers as hard-bounced.
  Tombstoning every Delivery would roughly double the output volume (most deliveries go to
  addresses that never bounced). The cost: a Delivery to an address bounced long ago
  (evicted) or seen by another worker leaves its suppression in place, the safe direction;
  set ``tombstone_all_deliveries`` where the topic volume allows it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.analytics.categories import HARD
from streamer.analytics.windows import event_time_ms
from streamer.records import recipients
from streamer.rules import Rule

#: Record types whose hard category suppresses the recipient. OOB is an asynchronous bounce
#: (a DSN received after the receiver accepted the message): just as final as a Bounce.
SUPPRESSING_TYPES = frozenset({"Bounce", "OOB"})
#: Rules whose JSON object the tracker remembers (emptied when full).
RULES_REMEMBERED = 4096


@dataclass(slots=True)
class Seen:
    """What the tracker remembers of a hard-bounced recipient (also made by the C counter)."""

    first_seen: int
    last_seen: int
    count: int


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


class SuppressionTracker:
    """Turns classified records into suppression-topic writes (see the module doc).

    The reference: where the C counter is built (``streamer.analytics._fastcount``) it makes
    the common writes itself, in this tracker's memory (``_seen``), and leaves the rest here.
    """

    def __init__(self, capacity: int = 100_000, tombstone_all_deliveries: bool = False) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.tombstone_all_deliveries = tombstone_all_deliveries
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        self._rules: dict[int, tuple[Rule, Any]] = {}  # id(rule) -> (rule, rule_object(rule))

    def __len__(self) -> int:
        return len(self._seen)

    def forget(self) -> None:
        """Start with an empty memory, as a restarted worker does (emptied in place: the C
        counter holds the same dict)."""
        self._seen.clear()

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

    def __contains__(self, recipient: object) -> bool:
        return recipient in self._seen

    def update(
        self,
        record: Mapping[str, Any],
        label: str | None,
        category: str | None,
        rule: Rule | Mapping[str, Any] | str | None,
        line: str | None,
        provider: str,
        now: float,
    ) -> list[tuple[bytes, bytes | None]]:
        """The writes for one record (usually none). ``now`` (epoch seconds) stands in for the
        record's event time when it has none; times in the value are epoch ms."""
        rtype = record.get("type")
        if rtype == "Delivery":
            seen, everyone = self._seen, self.tombstone_all_deliveries
            if not seen and not everyone:
                return []  # nobody to un-suppress: skip the address work
            return [
                (r.encode(), None)
                for r in recipient_keys(record)
                if seen.pop(r, None) is not None or everyone
            ]
        if category != HARD or rtype not in SUPPRESSING_TYPES:
            return []
        t = event_time_ms(record)
        if t is None:
            t = int(now * 1000)
        return [self._suppress(r, t, label, rule, line, provider) for r in recipient_keys(record)]

    def _suppress(
        self,
        recipient: str,
        t: int,
        label: str | None,
        rule: Rule | Mapping[str, Any] | str | None,
        line: str | None,
        provider: str,
    ) -> tuple[bytes, bytes]:
        """The entry for one hard-bounced recipient (remembered, its count advanced)."""
        seen = self._seen
        entry = seen.get(recipient)
        if entry is None:
            entry = seen[recipient] = Seen(t, t, 0)
            if len(seen) > self.capacity:
                seen.popitem(last=False)
        else:
            seen.move_to_end(recipient)
        entry.count += 1
        if t < entry.first_seen:  # records may arrive out of order
            entry.first_seen = t
        if t > entry.last_seen:
            entry.last_seen = t
        value = {
            "recipient": recipient,
            "label": label,
            "rule": self.rule_json(rule),
            "response": line,
            "provider": provider,
            "first_seen": entry.first_seen,
            "last_seen": entry.last_seen,
            "count": entry.count,
        }
        return recipient.encode(), orjson.dumps(value)
