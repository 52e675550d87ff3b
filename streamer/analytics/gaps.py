"""Rule gaps: which responses nobody classifies, as templates with counts and a real example.

Reads KumoMTA log files (JSONL, optionally gzip or zstd compressed: KumoMTA writes zstd log
segments by default) or plain response lines, classifies each response with the given
classifier and keeps the rule gaps (Uncategorized, or labelled by a reply-code fallback alone:
``streamer.evidence``) as templates in a bounded space-saving summary.
:func:`render_toml` writes a rules-file skeleton with one commented entry per template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.analytics.heavy import SpaceSaving
from streamer.analytics.templates import template
from streamer.analytics.windows import EXAMPLE_MAX
from streamer.classifier import Classifier
from streamer.evidence import REPLY_CODE
from streamer.feedback import feedback_label
from streamer.inputs import InputError, open_input  # where the readers live (re-exported)
from streamer.records import CLASSIFIABLE_TYPES, effective_type, response_is_valid, response_line
from streamer.rules import UNCATEGORIZED
from streamer.text import counted

__all__ = ["Gap", "GapCollector", "InputError", "open_input", "render_toml", "template_pattern"]


@dataclass(frozen=True, slots=True)
class Gap:
    template: str
    count: int
    example: str


class GapCollector:
    """Feeds lines through ``classifier``; counts rule-gap templates (bounded)."""

    def __init__(self, classifier: Classifier, capacity: int = 10_000) -> None:
        self.classifier = classifier
        self.summary: SpaceSaving[str] = SpaceSaving(capacity)
        self.examples: dict[str, str] = {}
        self.responses = 0  # response lines classified
        self.gaps = 0  # rule gaps: the two kinds below, and those counted in stats rows
        self.uncategorized = 0
        self.reply_code_only = 0  # labelled by a reply-code fallback alone
        self.skipped = 0  # records without a classifiable response, malformed JSON, binary
        self.malformed = 0  # of those: lines that are neither a record nor a response line
        #: The current input holds JSON records (its first line is one): a line that is no
        #: record is then a malformed record, not a response line (as ``classify`` decides).
        self._records: bool | None = None

    def add_line(self, line: str) -> None:
        """Classify one response line."""
        self.responses += 1
        result = self.classifier.classify(line)
        if result.label != UNCATEGORIZED:
            if result.evidence != REPLY_CODE:
                return
            self.reply_code_only += 1
        else:
            self.uncategorized += 1
        self.gaps += 1
        tpl = template(line)
        evicted = self.summary.add(tpl)
        if evicted is not None:
            self.examples.pop(evicted, None)
        if tpl not in self.examples:
            self.examples[tpl] = line[:EXAMPLE_MAX]

    def add_template(self, template: str, count: int, example: str) -> None:
        """Templates already counted elsewhere (the ``gaps`` of a stats row)."""
        self.gaps += count
        evicted = self.summary.add(template, count)
        if evicted is not None:
            self.examples.pop(evicted, None)
        self.examples.setdefault(template, example[:EXAMPLE_MAX])

    def add_record(self, record: dict[str, Any]) -> None:
        """A KumoMTA record: its response, when it is a classifiable failure (not a log hook's
        bookkeeping record). A Feedback record labelled by its ARF report counts as a classified
        response and never as a gap, as the worker and ``classify --summary`` count it."""
        rtype = effective_type(record)
        response: Any = record.get("response")
        if rtype not in CLASSIFIABLE_TYPES or not response_is_valid(response):
            self.skipped += 1
        elif rtype == "Feedback" and feedback_label(record) is not None:
            self.responses += 1
        else:
            self.add_line(response_line(response))

    def feed(self, raw: bytes) -> None:
        """One input line: a JSON record when it starts with ``{``, else a response line
        (unless the input holds records); a line with NUL bytes is binary, never a response."""
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            return
        record = text.lstrip().startswith("{")
        if self._records is None:
            self._records = record
        if "\x00" in text or (self._records and not record):
            self.skipped += 1
            self.malformed += 1
            return
        if record:
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                self.skipped += 1
                self.malformed += 1
                return
            if isinstance(obj, dict):
                self.add_record(obj)
            else:
                self.skipped += 1
                self.malformed += 1
            return
        self.add_line(text)

    def feed_stream(self, stream: Iterable[bytes]) -> None:
        """One input; its first line says whether it holds records or response lines."""
        self._records = None
        for raw in stream:
            self.feed(raw)

    def top(self, n: int | None = None) -> list[Gap]:
        return [Gap(t, c, self.examples.get(t, "")) for t, c in self.summary.top(n)]


_PLACEHOLDER = re.compile(r"\{(url|email|id|time|ip|host|n)\}")
_META = re.compile(r"([\\.+*?()|\[\]{}^$])")
_FRAGMENT = {"n": "[0-9]+"}


def _escape(text: str) -> str:
    # Only the characters that are special in both Rust's regex and RE2.
    return _META.sub(r"\\\1", text)


def template_pattern(tpl: str) -> str:
    """A case-insensitive, start-anchored regex (Rust / RE2 syntax) matching ``tpl``'s lines."""
    parts: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(tpl):
        parts.append(_escape(tpl[pos : m.start()]))
        parts.append(_FRAGMENT.get(m.group(1), "[^ ]+"))
        pos = m.end()
    parts.append(_escape(tpl[pos:]))
    return "(?i)^" + "".join(parts)


def toml_string(value: str) -> str:
    """A TOML string for ``value``: literal '...' when possible (regexes read better)."""
    if "'" not in value and not any(c in value for c in "\n\r\x7f") and value.isprintable():
        return f"'{value}'"
    return orjson.dumps(value).decode()  # a JSON string is a valid TOML basic string


def _comment(text: str) -> str:
    return " ".join(text.split())


def render_toml(gaps: list[Gap]) -> str:
    """A rules-file skeleton: every template as a commented entry with a placeholder label.

    Uncomment an entry, replace ``LABEL`` with a label (group entries of one label into one
    list: a TOML table holds each label once) and load the file before the shipped rules.
    """
    out = [
        "# Rules skeleton written by `streamer gaps`: responses no rule classifies, most frequent",
        "# first. For each entry: check the pattern against the example, replace LABEL with a",
        "# label (rules/README.md lists them), uncomment it, and merge entries of the same label",
        "# into one list. Load this file BEFORE the shipped rules (the lowest index wins).",
        "",
        "[rules]",
    ]
    for i, gap in enumerate(gaps, 1):
        out += [
            "",
            f"# {i}. {counted(gap.count, 'line')}, e.g.: {_comment(gap.example)}",
            f"# LABEL = [ {toml_string(template_pattern(gap.template))} ]",
        ]
    return "\n".join(out) + "\n"
