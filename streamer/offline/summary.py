"""``streamer classify --summary``: counts per label, category and provider, and the top gaps.

Counting is split so that worker processes can do it: a :class:`Tally` holds the counts of part
of a run (plain counters and the run's Uncategorized templates in input order) and is merged
into the run's :class:`Summary` in input order, which replays the templates into its bounded
space-saving table exactly as counting the whole run in one process would.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from streamer.analytics.categories import CategoryTable
from streamer.analytics.heavy import SpaceSaving
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.templates import template
from streamer.analytics.windows import EXAMPLE_MAX
from streamer.evidence import REPLY_CODE
from streamer.rules import UNCATEGORIZED
from streamer.text import counted

#: Distinct gap templates tracked (space-saving: memory stays bounded on any input).
GAP_CAPACITY = 10_000


class Tally:
    """The counts of part of a run (picklable: a worker process sends it back)."""

    __slots__ = ("categories", "evidence", "gaps", "labels", "providers", "types")

    def __init__(self) -> None:
        self.labels: Counter[str] = Counter()
        self.evidence: Counter[str] = Counter()  # what the labels rest on (streamer.evidence)
        self.categories: Counter[str] = Counter()
        self.providers: Counter[str] = Counter()
        self.types: Counter[str] = Counter()
        #: (template, example line) per rule gap (an Uncategorized response, or one only a
        #: reply-code fallback classified), in input order.
        self.gaps: list[tuple[str, str]] = []


class Summary:
    """Accumulates one classify run: :meth:`count` into a :class:`Tally`, :meth:`merge` it."""

    def __init__(
        self, categories: CategoryTable | None = None, providers: ProviderMatcher | None = None
    ) -> None:
        self.categories = categories or CategoryTable.shipped()
        self.providers = providers or ProviderMatcher.shipped()
        self.counts = Tally()
        self.gaps: SpaceSaving[str] = SpaceSaving(GAP_CAPACITY)
        self.examples: dict[str, str] = {}
        self.skipped = 0

    def count(
        self,
        into: Tally,
        label: str,
        line: str,
        record: dict[str, Any] | None = None,
        n: int = 1,
        evidence: str | None = None,
    ) -> tuple[str, str] | None:
        """Count ``n`` classified responses ``line`` (from ``record`` when the input was
        records) into ``into``. Returns the (template, example) gap of a rule gap (an
        Uncategorized line, or one classified by the reply code alone): the caller appends it
        to ``into.gaps`` once per occurrence, in input order."""
        code = None
        if record is not None:
            response = record.get("response")
            raw_code = response.get("code") if isinstance(response, dict) else None
            code = raw_code if isinstance(raw_code, int) else None
            into.providers[self.providers.match_record(record)] += n
        elif line[:3].isdigit():
            code = int(line[:3])
        into.labels[label] += n
        into.categories[self.categories.category(label, code)] += n
        if evidence is not None:
            into.evidence[evidence] += n
        if label == UNCATEGORIZED or evidence == REPLY_CODE:
            return template(line), line[:EXAMPLE_MAX]
        return None

    def merge(self, part: Tally) -> None:
        """Add the counts of the next part of the run (parts must come in input order)."""
        counts = self.counts
        counts.labels.update(part.labels)
        counts.categories.update(part.categories)
        counts.evidence.update(part.evidence)
        counts.providers.update(part.providers)
        counts.types.update(part.types)
        gaps, examples = self.gaps, self.examples
        for tpl, example in part.gaps:
            evicted = gaps.add(tpl)
            if evicted is not None:
                examples.pop(evicted, None)
            examples.setdefault(tpl, example)

    def to_json(self, top: int) -> dict[str, Any]:
        counts = self.counts
        return {
            "classified": sum(counts.labels.values()),
            "skipped": self.skipped,
            "other_types": dict(counts.types.most_common()),
            "labels": dict(counts.labels.most_common()),
            "categories": dict(counts.categories.most_common()),
            "evidence": dict(counts.evidence.most_common()),
            "providers": dict(counts.providers.most_common()),
            "gaps": [
                {"template": t, "count": n, "example": self.examples.get(t, "")}
                for t, n in self.gaps.top(top)
            ],
        }

    def render(self, top: int, as_json: bool) -> str:
        doc = self.to_json(top)
        if as_json:
            return json.dumps(doc, ensure_ascii=False)
        classified = counted(doc["classified"], "response")
        out = [f"{classified} classified, {counted(doc['skipped'], 'line')} skipped"]
        for title, key in (
            ("labels", "labels"),
            ("categories", "categories"),
            ("evidence (what the labels rest on)", "evidence"),
            ("providers", "providers"),
            ("other record types (passed through)", "other_types"),
        ):
            if doc[key]:
                out.append(f"\n{title}:")
                out += [f"{n:10d}  {name}" for name, n in doc[key].items()]
        if doc["gaps"]:
            n = len(doc["gaps"])
            out.append(f"\ntop {n} rule gaps (Uncategorized, or matched by the reply code alone):")
            for gap in doc["gaps"]:
                out.append(f"{gap['count']:10d}  {gap['template']}")
                out.append(f"{'':10}  e.g. {gap['example']}")
        return "\n".join(out)
