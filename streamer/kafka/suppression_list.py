"""The suppression list as it stands, read from the compacted ``suppressions_topic``
(``streamer suppressions check`` and ``export``).

A bounded read of every partition to the end it had when the read started, the latest value
per key kept (a tombstone removes the key), as the README says a sink must read the topic. It
joins no group and commits nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.analytics.suppressions import recipient_keys
from streamer.config import Settings
from streamer.deadletter import utc_timestamp
from streamer.kafka.deadletters import BoundedRead, DeadLetterError, _consumer, _partitions

#: The ``reason`` of an entry written before entries carried one: a hard bounce.
DEFAULT_REASON = "hard-bounce"
#: Columns of ``export --format csv``, in order.
CSV_COLUMNS = (
    "recipient",
    "reason",
    "label",
    "since",
    "last_seen",
    "count",
    "provider",
    "tenant",
    "sender_domain",
    "rule",
    "response",
)


class SuppressionListError(Exception):
    """The topic cannot be read (missing, not allowed, stalled): one line."""


def suppression_key(address: str) -> str | None:
    """An address as the suppressions topic keys it (lower-cased, no angle brackets)."""
    keys = recipient_keys({"recipient": address})
    return keys[0] if keys else None


@dataclass(frozen=True, slots=True)
class Entry:
    """One live entry of the list (the value's JSON object, decoded)."""

    recipient: str
    doc: dict[str, Any]

    @property
    def reason(self) -> str:
        return str(self.doc.get("reason") or DEFAULT_REASON)

    @property
    def rule_text(self) -> str:
        """The rule as ``file#index`` (a manual entry has none: "")."""
        rule = self.doc.get("rule")
        if isinstance(rule, dict):
            return f"{rule.get('file')}#{rule.get('index')}"
        return "" if rule is None else str(rule)

    def time_text(self, name: str) -> str:
        value = self.doc.get(name)
        return utc_timestamp(value / 1000) if isinstance(value, int | float) else ""

    def row(self) -> list[str]:
        """The entry as ``CSV_COLUMNS``."""
        d = self.doc
        return [
            self.recipient,
            self.reason,
            str(d.get("label") or ""),
            self.time_text("first_seen"),
            self.time_text("last_seen"),
            str(d.get("count") or ""),
            str(d.get("provider") or ""),
            str(d.get("tenant") or ""),
            str(d.get("sender_domain") or ""),
            self.rule_text,
            str(d.get("response") or ""),
        ]

    def describe(self) -> str:
        """One line: since when and why."""
        d = self.doc
        parts = [f"{self.recipient}: suppressed since {self.time_text('first_seen') or '?'}"]
        why = [self.reason]
        if d.get("label"):
            why.append(str(d["label"]))
        count = d.get("count")
        if isinstance(count, int) and count > 1:
            why.append(f"{count} times, last {self.time_text('last_seen')}")
        parts.append(f"({', '.join(why)})")
        if self.rule_text:
            parts.append(f"rule {self.rule_text}")
        if d.get("response"):
            parts.append(f"response {d['response']!r}")
        return " ".join(parts)


def kumomta_refusal(entry: Entry) -> str:
    """What deploy/kumomta/streamer_suppressions.lua answers at RCPT TO for the entry (mode
    ``reject``): the entry's reason and label say why."""
    label = entry.doc.get("label")
    why = f"{entry.reason} {label}" if isinstance(label, str) and label else entry.reason
    return f"550 5.1.1 <{entry.recipient}> is on the suppression list ({why}); not accepted"


def entries_of(latest: dict[bytes | None, bytes | None]) -> dict[str, Entry]:
    """The live entries of a topic read as latest value per key."""
    live: dict[str, Entry] = {}
    for key, value in latest.items():
        if key and value is not None:
            recipient = key.decode("utf-8", "replace")
            live[recipient] = Entry(recipient, _decode(value))
    return live


def _decode(value: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"undecodable": value.decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else {}


def read_list(settings: Settings, bootstrap: str, topic: str | None = None) -> dict[str, Entry]:
    """Every live entry of the topic now, by recipient."""
    name = topic or settings.suppressions_topic
    live: dict[str, Entry] = {}
    consumer = _consumer(settings, bootstrap)
    try:
        read = BoundedRead(consumer, name, dict.fromkeys(_partitions(consumer, name)))
        for msg in read:
            key = msg.key()
            if not key:
                continue
            recipient = key.decode("utf-8", "replace")
            value = msg.value()
            if value is None:
                live.pop(recipient, None)
                continue
            live[recipient] = Entry(recipient, _decode(value))
    except DeadLetterError as exc:
        raise SuppressionListError(str(exc)) from None
    finally:
        consumer.close()
    return live


def check_lines(addresses: Iterable[str], live: dict[str, Entry]) -> Iterator[tuple[bool, str]]:
    """(suppressed?, the line saying so) per address, in the order given."""
    for address in addresses:
        key = suppression_key(address)
        entry = live.get(key) if key is not None else None
        if entry is None:
            yield False, f"{key if key else repr(address)}: not suppressed"
        else:
            yield True, entry.describe()


def export_lines(live: dict[str, Entry], fmt: str) -> Iterator[str]:
    """The list, sorted by recipient: CSV (a header row first) or the entries' JSON lines."""
    entries = [live[k] for k in sorted(live)]
    if fmt == "jsonl":
        for entry in entries:
            yield orjson.dumps(entry.doc).decode()
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(entry.row())
        yield buffer.getvalue()[:-1]
        buffer.seek(0)
        buffer.truncate()
    if not entries:
        yield buffer.getvalue()[:-1]
