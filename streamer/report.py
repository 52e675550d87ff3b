"""``streamer report``: one self-contained HTML page about deliverability, from logs or stats.

Inputs, all reduced to the rows the worker publishes on its stats topic (window start, provider,
``counts`` per record type, ``labels``, ``categories``, ``complaints``, ``gaps``):

- KumoMTA log files (JSONL; gzip or zstd compressed): classified here with the shipped rules
  (or the given ones); provider and category from the shipped analytics tables;
- classified JSONL (records that carry ``classification``, as the worker writes them): their
  label and rule are taken as they are;
- the stats topic itself (``--topic``): the latest row per key (a re-emitted row holds the
  window's full counts).

Charts are Vega-Lite specifications built with Altair and rendered in the page by vega-embed,
whose JavaScript (with Vega and Vega-Lite) is embedded inline from the ``vl-convert-python``
package: the file opens offline, without any network access. This is a user tool (operators run
it on production logs), not part of the worker: nothing in the runtime imports it.
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.windows import WindowedStats, row_key
from streamer.classifier import Classifier
from streamer.feedback import feedback_label, feedback_type
from streamer.inputs import Input, InputError, read_lines
from streamer.records import (
    CLASSIFIABLE_TYPES,
    LOG_HOOK_TYPE,
    effective_type,
    response_is_valid,
    response_line,
)
from streamer.rules import UNCATEGORIZED

#: Outcome columns of the rates, in display order (delivered = Delivery records).
RATE_KINDS: tuple[tuple[str, str], ...] = (
    ("delivery rate", "delivered"),
    ("hard-bounce rate", "hard"),
    ("block rate", "block"),
    ("deferral rate", "soft"),
    ("complaint rate", "complaint"),
)
TOP_LABELS = 10
TOP_RULES = 15
TOP_GAPS = 15
MAX_BUCKETS = 60
_NICE_BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)


class ReportError(Exception):
    """An input cannot be read or holds nothing to report; the message names it."""


@dataclass
class RuleHit:
    label: str
    rule: str  # "file#index: pattern", or "(no rule)" for Uncategorized
    count: int


@dataclass
class ReportData:
    """Stats rows plus what only records tell (rules that fired, inputs read)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)
    records: int = 0
    log_hook: int = 0  # of the records: a log hook's bookkeeping (records.is_log_hook_record)
    skipped: int = 0
    sources: list[str] = field(default_factory=list)
    from_stats: bool = False


# --- reading -----------------------------------------------------------------------------------


def _rule_name(rule: Mapping[str, Any] | None) -> str:
    if not rule:
        return "(no rule)"
    file = Path(str(rule.get("file", "?"))).name
    return f"{file}#{rule.get('index', '?')}: {rule.get('pattern', '')}"


class RecordReader:
    """Classifies and aggregates KumoMTA records into stats rows (one-minute windows)."""

    def __init__(
        self,
        classifier: Classifier,
        categories: CategoryTable | None = None,
        providers: ProviderMatcher | None = None,
    ) -> None:
        self.classifier = classifier
        self.categories = categories or CategoryTable.shipped()
        self.providers = providers or ProviderMatcher.shipped()
        self.aggregator = BatchAggregator(window_s=60, dimensions=("provider",))
        # Offline: nothing is late, nothing is forgotten, everything is flushed at the end.
        self.windows = WindowedStats(
            window_s=60,
            grace_s=0,
            retention_s=10**10,
            max_windows=10**7,
            max_keys=10**7,
            gaps_top=50,
            future_skew_s=10**10,
        )
        self.data = ReportData()
        self._pending = 0

    def add(self, record: Mapping[str, Any]) -> None:
        rtype = effective_type(record)  # a log hook's bookkeeping record: no outcome, no label
        if not isinstance(rtype, str):
            self.data.skipped += 1
            return
        label = category = line = None
        response: Any = record.get("response")
        valid = response_is_valid(response)
        code = response.get("code") if valid else None
        given = record.get("classification")
        complaint = feedback_label(record) if rtype == "Feedback" else None
        if complaint is not None and not (isinstance(given, Mapping) and given.get("label")):
            # a Feedback record means what its report's Feedback-Type says (streamer.feedback)
            label = complaint
            category = self.categories.category(label, code)
            self.data.rules[label, f"feedback type: {feedback_type(record)}"] += 1
        elif rtype in CLASSIFIABLE_TYPES and valid:
            line = response_line(response)
            if isinstance(given, Mapping) and isinstance(given.get("label"), str):
                label = given["label"]
                rule = given.get("rule")
                rule_name = _rule_name(rule if isinstance(rule, Mapping) else None)
            else:
                result = self.classifier.classify(line)
                label = result.label
                rule_name = _rule_name(
                    None
                    if result.rule is None
                    else {
                        "file": result.rule.file,
                        "index": result.rule.index,
                        "pattern": result.rule.pattern,
                    }
                )
            category = self.categories.category(label, code)
            self.data.rules[label, rule_name] += 1
        provider = self.providers.match_record(record)
        self.aggregator.add(record, rtype, label, category, provider, line)
        self.data.records += 1
        if rtype == LOG_HOOK_TYPE:
            self.data.log_hook += 1
        self._pending += 1
        if self._pending >= 5000:
            self._merge()

    def _merge(self) -> None:
        self.aggregator.fold_into(self.windows, 0.0)
        self._pending = 0

    def feed_lines(self, name: str, lines: Iterable[bytes]) -> None:
        for raw in lines:
            text = raw.strip()
            if not text:
                continue
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                self.data.skipped += 1
                continue
            if isinstance(obj, dict):
                self.add(obj)
            else:
                self.data.skipped += 1
        self.data.sources.append(name)

    def feed_input(self, item: Input) -> None:
        """One input of ``streamer.inputs.expand_inputs``: a file, or ``-`` (stdin)."""
        try:
            self.feed_lines(item.name, read_lines(item))
        except InputError as exc:
            raise ReportError(str(exc)) from None

    def finish(self) -> ReportData:
        self._merge()
        self.data.rows = self.windows.flush_all()
        return self.data


def read_inputs(
    items: Iterable[Input],
    classifier: Classifier,
    categories: CategoryTable | None = None,
    providers: ProviderMatcher | None = None,
) -> ReportData:
    """The report data of these inputs (``streamer.inputs.expand_inputs``: files, stdin)."""
    reader = RecordReader(classifier, categories, providers)
    for item in items:
        reader.feed_input(item)
    return reader.finish()


def latest_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last row per key: a row holds its key's full counts so far (see ``row_key``)."""
    latest: dict[bytes, dict[str, Any]] = {}
    for row in rows:
        latest[row_key(row)] = dict(row)
    return list(latest.values())


def stats_data(rows: Iterable[Mapping[str, Any]], source: str) -> ReportData:
    data = ReportData(rows=latest_rows(rows), sources=[source], from_stats=True)
    data.records = sum(sum(r.get("counts", {}).values()) for r in data.rows)
    data.log_hook = sum(int(r.get("counts", {}).get(LOG_HOOK_TYPE, 0)) for r in data.rows)
    return data


def read_stats_topic(
    settings: Any, bootstrap: str, topic: str, timeout: float = 60.0
) -> Iterator[dict[str, Any]]:
    """Every row on ``topic`` now (from the start up to the current end of each partition)."""
    from streamer.kafka.topics import ReadError, read_topic

    try:
        records = read_topic(settings, bootstrap, topic, timeout)
    except ReadError as exc:
        raise ReportError(str(exc)) from None
    for record in records:
        try:
            row = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict) and "window_start" in row:
            yield row


# --- tables the charts show --------------------------------------------------------------------


def _outcomes(row: Mapping[str, Any]) -> Counter[str]:
    out: Counter[str] = Counter(row.get("categories", {}))
    out["delivered"] += int(row.get("counts", {}).get("Delivery", 0))
    return out


def outcome_rate(outcomes: Mapping[str, int], kind: str) -> float | None:
    # complaints per delivered message (as mailbox providers count them); the rest per outcome
    base = outcomes.get("delivered", 0) if kind == "complaint" else sum(outcomes.values())
    return outcomes.get(kind, 0) / base if base else None


def _bucket_seconds(rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 60
    starts = [int(r["window_start"]) for r in rows]
    span = (max(starts) - min(starts)) / 1000 + 60
    for size in _NICE_BUCKETS_S:
        if span / size <= MAX_BUCKETS:
            return size
    return _NICE_BUCKETS_S[-1]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Tables:
    bucket_s: int
    label_mix: list[dict[str, Any]]
    rates: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    gaps: list[dict[str, Any]]
    totals: Counter[str]
    labels: Counter[str]
    providers: dict[str, Counter[str]]
    span: tuple[int, int] | None


def tables(data: ReportData) -> Tables:
    rows = data.rows
    bucket_s = _bucket_seconds(rows)
    labels: Counter[str] = Counter()
    for r in rows:
        labels.update(r.get("labels", {}))
    top = {label for label, _ in labels.most_common(TOP_LABELS)}
    mix: Counter[tuple[int, str]] = Counter()
    providers: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    gaps: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for r in rows:
        start = int(r["window_start"])
        bucket = start - start % (bucket_s * 1000)
        for label, n in r.get("labels", {}).items():
            mix[bucket, label if label in top else "other labels"] += n
        outcomes = _outcomes(r)
        providers.setdefault(str(r.get("provider", "other")), Counter()).update(outcomes)
        totals.update(outcomes)
        for g in r.get("gaps", []):
            gaps[g["template"]] += int(g["count"])
            examples.setdefault(g["template"], g.get("example", ""))
    label_mix = [
        {"time": _iso(b), "label": label, "records": n} for (b, label), n in sorted(mix.items())
    ]
    rates = []
    for provider, outcomes in sorted(providers.items()):
        for title, kind in RATE_KINDS:
            value = outcome_rate(outcomes, kind)
            if value is not None:
                rates.append(
                    {
                        "provider": provider,
                        "rate": title,
                        "value": value,
                        "records": sum(outcomes.values()),
                    }
                )
    categories = [{"category": k, "records": n} for k, n in totals.most_common() if n]
    rules = [
        {"rule": rule, "label": label, "records": n}
        for (label, rule), n in data.rules.most_common()
        if label != UNCATEGORIZED
    ][:TOP_RULES]
    gap_rows = [
        {"template": t, "records": n, "example": examples.get(t, "")}
        for t, n in gaps.most_common(TOP_GAPS)
    ]
    starts = [int(r["window_start"]) for r in rows]
    span = (min(starts), max(int(r["window_end"]) for r in rows)) if rows else None
    return Tables(
        bucket_s, label_mix, rates, categories, rules, gap_rows, totals, labels, providers, span
    )


# --- charts ------------------------------------------------------------------------------------


def charts(t: Tables) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, title, Vega-Lite spec) of every chart, built with Altair."""
    import altair as alt

    out: list[tuple[str, str, Any]] = []
    width = 900
    if t.label_mix:
        out.append(
            (
                "label-mix",
                f"Label mix over time ({_duration(t.bucket_s)} buckets)",
                alt.Chart(_inline(t.label_mix))
                .mark_area(opacity=0.85)
                .encode(
                    x=alt.X("time:T", title=None),
                    y=alt.Y("records:Q", stack="zero", title="classified records"),
                    color=alt.Color("label:N", title="label", sort="-y"),
                    tooltip=["time:T", "label:N", "records:Q"],
                )
                .properties(width=width, height=280),
            )
        )
    if t.rates:
        out.append(
            (
                "rates",
                "Rates per mailbox provider",
                alt.Chart(_inline(t.rates))
                .mark_bar()
                .encode(
                    y=alt.Y("provider:N", title=None, sort="-x"),
                    x=alt.X("value:Q", axis=alt.Axis(format="%"), title=None),
                    color=alt.Color("rate:N", legend=None),
                    column=alt.Column(
                        "rate:N", title=None, sort=[title for title, _ in RATE_KINDS]
                    ),
                    tooltip=["provider:N", "rate:N", alt.Tooltip("value:Q", format=".2%")],
                )
                .properties(width=150, height=alt.Step(16))
                .resolve_scale(x="independent"),
            )
        )
    if t.categories:
        out.append(
            (
                "categories",
                "Category split (delivered, and the category of each classified record)",
                alt.Chart(_inline(t.categories))
                .mark_bar()
                .encode(
                    y=alt.Y("category:N", sort="-x", title=None),
                    x=alt.X("records:Q", title="records"),
                    color=alt.Color("category:N", legend=None),
                    tooltip=["category:N", "records:Q"],
                )
                .properties(width=width - 150, height=alt.Step(24)),
            )
        )
    if t.rules:
        out.append(
            (
                "rules",
                "Top rules that fired",
                alt.Chart(_inline(t.rules))
                .mark_bar()
                .encode(
                    y=alt.Y("rule:N", sort="-x", title=None, axis=alt.Axis(labelLimit=480)),
                    x=alt.X("records:Q", title="records"),
                    color=alt.Color("label:N", title="label"),
                    tooltip=["rule:N", "label:N", "records:Q"],
                )
                .properties(width=380, height=alt.Step(18)),
            )
        )
    if t.gaps:
        out.append(
            (
                "gaps",
                "Top rule gaps (templates no wording or status-code rule matched)",
                alt.Chart(_inline(t.gaps))
                .mark_bar(color="#d62728")
                .encode(
                    y=alt.Y("template:N", sort="-x", title=None, axis=alt.Axis(labelLimit=560)),
                    x=alt.X("records:Q", title="responses"),
                    tooltip=["template:N", "records:Q", "example:N"],
                )
                .properties(width=300, height=alt.Step(18)),
            )
        )
    return [(cid, title, chart.to_dict()) for cid, title, chart in out]


def _inline(values: list[dict[str, Any]]) -> Any:
    """Altair's inline data (its constructor has no type annotations)."""
    import altair as alt

    return cast(Any, alt).Data(values=values)


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n}-{unit}" if n != 1 else f"1-{unit}"
    return f"{seconds}-second"


# --- page --------------------------------------------------------------------------------------


def summary(data: ReportData, t: Tables) -> list[str]:
    """A few sentences for the top of the page."""
    lines = []
    span = ""
    if t.span:
        span = f" from {_iso(t.span[0])} to {_iso(t.span[1])}"
    source = "stats rows" if data.from_stats else "records"
    lines.append(f"{data.records:,} {source.replace('stats rows', 'records counted')}{span}.")
    classified = sum(t.labels.values())
    if classified:
        unc = t.labels.get(UNCATEGORIZED, 0)
        lines.append(
            f"{classified:,} classified failure or feedback records; "
            f"{unc / classified:.1%} Uncategorized (no rule matched)."
        )
    total = sum(t.totals.values())
    if total:
        parts = []
        for title, kind in RATE_KINDS:
            value = outcome_rate(t.totals, kind)
            if value is not None:
                parts.append(f"{title} {value:.2%}")
        lines.append("Overall: " + ", ".join(parts) + ".")
    worst = [
        (rate, provider, outcomes)
        for provider, outcomes in t.providers.items()
        if sum(outcomes.values()) >= 20 and (rate := outcome_rate(outcomes, "hard")) is not None
    ]
    if worst:
        rate, provider, outcomes = max(worst)
        lines.append(
            f"Highest hard-bounce rate: {provider} at {rate:.2%} "
            f"({outcomes.get('hard', 0):,} of {sum(outcomes.values()):,} outcomes)."
        )
    if t.labels:
        label, n = t.labels.most_common(1)[0]
        lines.append(f"Most frequent label: {label} ({n:,} records).")
    if t.gaps:
        g = t.gaps[0]
        lines.append(f"Top rule gap: {g['template']!r} ({g['records']:,} responses).")
    if data.log_hook:
        lines.append(
            f"{data.log_hook:,} records were a log hook's bookkeeping (KumoMTA's deliveries of"
            " the log records it shipped): counted apart, never as outcomes."
        )
    if data.skipped:
        lines.append(f"{data.skipped:,} input lines were not KumoMTA records and were skipped.")
    return lines


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { font-size: 1.2em; margin-top: 32px; }
.meta { color: #666; font-size: 0.9em; } ul.summary li { margin: 3px 0; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; } code { font-size: 0.95em; word-break: break-all; }
.chart { margin: 8px 0 16px; }
"""


def render_html(data: ReportData, title: str = "streamer deliverability report") -> str:
    """The whole page: summary, charts (Vega-Lite, scripts inline) and the gaps table."""
    import altair as alt
    import vl_convert

    t = tables(data)
    if not data.rows:
        raise ReportError("nothing to report: no KumoMTA records or stats rows in the input")
    vl_version = "_".join(alt.SCHEMA_VERSION.split(".")[:2])
    # the default snippet: vegaEmbed, vegaLite and vega as globals (the stub wants a snippet)
    bundle = cast(Any, vl_convert).javascript_bundle(vl_version=vl_version)
    specs = charts(t)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        # vega, vega-lite and vega-embed, from vl-convert-python: no network needed
        f'<script type="text/javascript">\n{bundle}\n</script>',
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {_iso(int(time.time() * 1000))} from '
        f"{esc(', '.join(data.sources) or '-')}.</p>",
        '<ul class="summary" id="summary">',
        *(f"<li>{esc(line)}</li>" for line in summary(data, t)),
        "</ul>",
    ]
    if data.from_stats:
        parts.append(
            '<p class="meta">From stats rows: rules that fired are known only from records '
            "(give log files or classified JSONL for that chart).</p>"
        )
    if not t.gaps:
        parts.append(
            '<h2>Top rule gaps</h2><p id="no-gaps">No rule gaps: every classified response '
            "matched a wording or status-code rule.</p>"
        )
    for cid, chart_title, _ in specs:
        parts.append(f"<h2>{esc(chart_title)}</h2>")
        parts.append(f'<div class="chart" id="chart-{cid}" data-chart="{cid}"></div>')
        if cid == "gaps":
            parts.append(_gaps_table(t.gaps))
    payload = json.dumps({cid: spec for cid, _, spec in specs}).replace("</", "<\\/")
    parts += [
        '<script type="text/javascript">',
        f"const specs = {payload};",
        "for (const [id, spec] of Object.entries(specs)) {",
        "  vegaEmbed('#chart-' + id, spec, {actions: false, renderer: 'svg'})",
        "    .catch((err) => {",
        "      const el = document.getElementById('chart-' + id);",
        "      el.setAttribute('data-error', String(err));",
        "      el.textContent = 'chart failed: ' + err;",
        "    });",
        "}",
        "</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _gaps_table(gaps: list[dict[str, Any]]) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><td class="n">{g["records"]:,}</td><td><code>{esc(g["template"])}</code></td>'
        f"<td><code>{esc(g['example'])}</code></td></tr>"
        for g in gaps
    )
    return (
        '<table id="gaps-table"><tr><th>responses</th><th>template</th><th>example</th></tr>'
        f"{rows}</table>"
        '<p class="meta">Write rules for the top templates: <code>streamer gaps FILE --toml '
        "skeleton.toml</code> prints a rules-file skeleton.</p>"
    )


def write_report(data: ReportData, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    return out
