"""``streamer classify --summary``: counts per label, category and provider, and the top gaps."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from streamer.analytics.categories import CategoryTable
from streamer.analytics.heavy import SpaceSaving
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.templates import template
from streamer.analytics.windows import EXAMPLE_MAX
from streamer.rules import UNCATEGORIZED

#: Distinct gap templates tracked (space-saving: memory stays bounded on any input).
GAP_CAPACITY = 10_000


class Summary:
    """Accumulates one classify run; ``add`` per classified response."""

    def __init__(self) -> None:
        self.categories = CategoryTable.shipped()
        self.providers = ProviderMatcher.shipped()
        self.labels: Counter[str] = Counter()
        self.category_counts: Counter[str] = Counter()
        self.provider_counts: Counter[str] = Counter()
        self.types: Counter[str] = Counter()
        self.gaps: SpaceSaving[str] = SpaceSaving(GAP_CAPACITY)
        self.examples: dict[str, str] = {}
        self.skipped = 0

    def add(self, label: str, line: str, record: dict[str, Any] | None = None) -> None:
        """One classified response ``line`` (from ``record`` when the input was records)."""
        code = None
        if record is not None:
            response = record.get("response")
            raw_code = response.get("code") if isinstance(response, dict) else None
            code = raw_code if isinstance(raw_code, int) else None
            self.provider_counts[self.providers.match_record(record)] += 1
        elif line[:3].isdigit():
            code = int(line[:3])
        self.labels[label] += 1
        self.category_counts[self.categories.category(label, code)] += 1
        if label == UNCATEGORIZED:
            tpl = template(line)
            evicted = self.gaps.add(tpl)
            if evicted is not None:
                self.examples.pop(evicted, None)
            self.examples.setdefault(tpl, line[:EXAMPLE_MAX])

    def add_other(self, record_type: str) -> None:
        """A record that is not a classifiable failure (Delivery, Reception, ...)."""
        self.types[record_type] += 1

    def to_json(self, top: int) -> dict[str, Any]:
        return {
            "classified": sum(self.labels.values()),
            "skipped": self.skipped,
            "other_types": dict(self.types.most_common()),
            "labels": dict(self.labels.most_common()),
            "categories": dict(self.category_counts.most_common()),
            "providers": dict(self.provider_counts.most_common()),
            "gaps": [
                {"template": t, "count": n, "example": self.examples.get(t, "")}
                for t, n in self.gaps.top(top)
            ],
        }

    def render(self, top: int, as_json: bool) -> str:
        doc = self.to_json(top)
        if as_json:
            return json.dumps(doc, ensure_ascii=False)
        out = [f"{doc['classified']} responses classified, {doc['skipped']} lines skipped"]
        for title, key in (
            ("labels", "labels"),
            ("categories", "categories"),
            ("providers", "providers"),
            ("other record types (passed through)", "other_types"),
        ):
            if doc[key]:
                out.append(f"\n{title}:")
                out += [f"{n:10d}  {name}" for name, n in doc[key].items()]
        if doc["gaps"]:
            out.append(f"\ntop {len(doc['gaps'])} rule gaps (Uncategorized templates):")
            for gap in doc["gaps"]:
                out.append(f"{gap['count']:10d}  {gap['template']}")
                out.append(f"{'':10}  e.g. {gap['example']}")
        return "\n".join(out)
