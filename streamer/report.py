"""``streamer report``: one self-contained HTML page about deliverability, from logs or stats.

Inputs, all reduced to the rows the worker publishes on its stats topic (window start, provider,
``counts`` per record type, ``labels``, ``categories``, ``complaints``, ``gaps``):

- KumoMTA log files (JSONL; gzip or zstd compressed): classified here with the shipped rules
  (or the given ones); provider and category from the shipped analytics tables;
- classified JSONL (records that carry ``classification``, as the worker writes them): their
  label and rule are taken as they are;
- the stats topic itself (``--topic``): the latest row per key (a re-emitted row holds the
  window's full counts), and the suppressions topic for the number of suppressed addresses.

The report covers a period (the input's whole span, or its last ``period_s``) and compares it
with the previous period of the same length when the input holds it. The deliverability
sections (breakdowns, reasons, complaints, suppressions) are in ``streamer.report_sections``.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson

from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import BLOCK, HARD, SOFT, CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppressions import rule_object
from streamer.analytics.windows import WindowedStats, event_time_ms, row_key
from streamer.classifier import Classifier
from streamer.evidence import DEFAULT_SUPPRESS_EVIDENCE, may_suppress
from streamer.feedback import feedback_label, feedback_type
from streamer.inputs import Input, InputError, read_lines
from streamer.records import (
    CLASSIFIABLE_TYPES,
    LOG_HOOK_TYPE,
    effective_type,
    response_is_valid,
    response_line,
)
from streamer.report_sections import (
    BREAKDOWNS,
    DIMENSION_OFF,
    EXAMPLE_MAX,
    OUTCOMES,
    Group,
    Reason,
    SuppressionCount,
    breakdown_rows,
    breakdown_table,
    comparison,
    comparison_table,
    complaints_table,
    group_by,
    in_period,
    label_hits,
    period_bounds,
    reasons_table,
    row_outcomes,
    suppressed_on_topic,
    top_reasons,
    total_of,
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


#: (window start ms, label, rule) of a rule hit; (window start ms, provider, category, label,
#: rule) of a block or deferral reason: records tell them, stats rows do not.
RuleHitKey = tuple[int, str, str]
ReasonKey = tuple[int, str, str, str, str]


@dataclass
class ReportData:
    """Stats rows plus what only records tell (rules that fired, reasons, suppressions)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)
    rule_hits: Counter[RuleHitKey] = field(default_factory=Counter)
    reasons: Counter[ReasonKey] = field(default_factory=Counter)
    #: The first response of each (provider, category, label, rule): one per reason, not per
    #: window (a week of logs has 10,080 windows).
    reason_examples: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    #: Recipients suppressed at the end of the input (None: unknown), and where that comes from.
    suppressed: int | None = None
    suppressed_source: str = ""
    #: The reported period: the last this many seconds of the input (None: all of it).
    period_s: float | None = None
    #: The label -> category of the categories table (reasons from stats rows).
    category_of: Callable[[str], str] | None = None
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
    """Classifies and aggregates KumoMTA records into stats rows (one-minute windows, every
    dimension), the rules and reasons behind them, and the suppressions they decide."""

    def __init__(
        self,
        classifier: Classifier,
        categories: CategoryTable | None = None,
        providers: ProviderMatcher | None = None,
        suppress_evidence: Iterable[str] = DEFAULT_SUPPRESS_EVIDENCE,
    ) -> None:
        self.classifier = classifier
        self.categories = categories or CategoryTable.shipped()
        self.providers = providers or ProviderMatcher.shipped()
        self.suppress_evidence = frozenset(suppress_evidence)
        self.aggregator = BatchAggregator(window_s=60)
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
        self.suppressions = SuppressionCount()
        self.data = ReportData(category_of=self.categories.category)
        self._pending = 0

    def add(self, record: Mapping[str, Any]) -> None:
        rtype = effective_type(record)  # a log hook's bookkeeping record: no outcome, no label
        if not isinstance(rtype, str):
            self.data.skipped += 1
            return
        label = category = line = rule = evidence = None
        rule_name = ""
        response: Any = record.get("response")
        valid = response_is_valid(response)
        code = response.get("code") if valid else None
        given = record.get("classification")
        complaint = feedback_label(record) if rtype == "Feedback" else None
        if complaint is not None and not (isinstance(given, Mapping) and given.get("label")):
            # a Feedback record means what its report's Feedback-Type says (streamer.feedback)
            label = complaint
            rule_name = f"feedback type: {feedback_type(record)}"
        elif rtype in CLASSIFIABLE_TYPES and valid:
            line = response_line(response)
            if isinstance(given, Mapping) and isinstance(given.get("label"), str):
                label = given["label"]
                rule = given.get("rule")
                evidence = given.get("evidence")
                rule_name = _rule_name(rule if isinstance(rule, Mapping) else None)
            else:
                result = self.classifier.classify(line)
                label, evidence = result.label, result.evidence
                rule = None if result.rule is None else rule_object(result.rule)
                rule_name = _rule_name(rule)
        provider = self.providers.match_record(record)
        if label is not None:
            category = self.categories.category(label, code)
            self._count_reason(record, provider, category, label, rule_name, line)
        self.aggregator.add(record, rtype, label, category, provider, line)
        if category != HARD or may_suppress(evidence, self.suppress_evidence):
            events = self.suppressions.events.update(
                record, label, category, rule, line, provider, 0
            )
            self.suppressions.add(events)
        self.data.records += 1
        if rtype == LOG_HOOK_TYPE:
            self.data.log_hook += 1
        self._pending += 1
        if self._pending >= 5000:
            self._merge()

    def _count_reason(
        self,
        record: Mapping[str, Any],
        provider: str,
        category: str,
        label: str,
        rule: str,
        line: str | None,
    ) -> None:
        t = event_time_ms(record)
        window = 0 if t is None else t - t % 60_000
        self.data.rule_hits[window, label, rule] += 1
        if category in (BLOCK, SOFT):
            key = (window, provider, category, label, rule)
            self.data.reasons[key] += 1
            if line is not None and key[1:] not in self.data.reason_examples:
                self.data.reason_examples[key[1:]] = line[:EXAMPLE_MAX]

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
        for (_, label, rule), n in self.data.rule_hits.items():
            self.data.rules[label, rule] += n
        self.data.suppressed = self.suppressions.suppressed
        self.data.suppressed_source = "after every record of the input"
        return self.data


def read_inputs(
    items: Iterable[Input],
    classifier: Classifier,
    categories: CategoryTable | None = None,
    providers: ProviderMatcher | None = None,
    suppress_evidence: Iterable[str] = DEFAULT_SUPPRESS_EVIDENCE,
) -> ReportData:
    """The report data of these inputs (``streamer.inputs.expand_inputs``: files, stdin)."""
    reader = RecordReader(classifier, categories, providers, suppress_evidence)
    for item in items:
        reader.feed_input(item)
    return reader.finish()


def latest_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last row per key: a row holds its key's full counts so far (see ``row_key``)."""
    latest: dict[bytes, dict[str, Any]] = {}
    for row in rows:
        latest[row_key(row)] = dict(row)
    return list(latest.values())


def stats_data(
    rows: Iterable[Mapping[str, Any]], source: str, categories: CategoryTable | None = None
) -> ReportData:
    table = categories or CategoryTable.shipped()
    data = ReportData(
        rows=latest_rows(rows), sources=[source], from_stats=True, category_of=table.category
    )
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


def read_suppressed(settings: Any, bootstrap: str, topic: str, timeout: float = 60.0) -> int:
    """Recipients suppressed now on the compacted suppressions ``topic``."""
    from streamer.kafka.topics import ReadError, read_topic

    try:
        records = read_topic(settings, bootstrap, topic, timeout)
    except ReadError as exc:
        raise ReportError(str(exc)) from None
    return suppressed_on_topic((r.key, r.value) for r in records)


# --- tables the charts show --------------------------------------------------------------------

#: Providers with fewer outcomes have too few for a meaningful rate: the summary leaves them
#: out of "highest hard-bounce rate" and the rates chart draws them pale.
MIN_OUTCOMES = 20

#: One colour per outcome (category) in every chart; a rate has its outcome's colour.
OUTCOME_COLOURS: dict[str, str] = {
    "delivered": "#2ca02c",  # green
    HARD: "#d62728",  # red
    BLOCK: "#9467bd",  # purple
    SOFT: "#ff7f0e",  # orange
    "complaint": "#e377c2",  # pink
    "admin": "#7f7f7f",  # grey
    "undetermined": "#8c564b",  # brown: Uncategorized and rule gaps too
}
#: Labels get their own palette (shared by every chart that colours by label), never the
#: outcome colours' meaning: Vega's tableau20 without its greens, reds, purples and oranges.
_LABEL_PALETTE = (
    "#1f77b4", "#aec7e8", "#17becf", "#9edae5", "#bcbd22", "#dbdb8d", "#c49c94", "#f7b6d2",
    "#c7c7c7", "#393b79", "#637939", "#8c6d31", "#843c39", "#5254a3",
)  # fmt: skip


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
    by_provider: dict[str, Group] = field(default_factory=dict)
    overall: Group = field(default_factory=Group)
    #: dimension -> value -> its group; a dimension the worker did not break down is absent
    breakdowns: dict[str, dict[str, Group]] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    previous_span: tuple[int, int] | None = None
    previous: Group | None = None  # None: the input holds nothing of the previous period
    first_window: int | None = None  # the input's earliest window start (epoch ms)


def _rules_in(data: ReportData, start: int, end: int) -> Counter[tuple[str, str]]:
    if not data.rule_hits:
        return data.rules
    out: Counter[tuple[str, str]] = Counter()
    for (window, label, rule), n in data.rule_hits.items():
        if window == 0 or start <= window < end:  # 0: a record without event time
            out[label, rule] += n
    return out


def _reasons(data: ReportData, rows: list[dict[str, Any]], start: int, end: int) -> list[Reason]:
    if data.from_stats:
        category_of = data.category_of or CategoryTable.shipped().category
        return top_reasons(label_hits(rows, category_of), {})
    hits: Counter[tuple[str, str, str, str]] = Counter()
    examples: dict[tuple[str, str, str, str], str] = {}
    for key, n in data.reasons.items():
        if key[0] == 0 or start <= key[0] < end:
            hits[key[1:]] += n
            examples.setdefault(key[1:], data.reason_examples.get(key[1:], ""))
    return top_reasons(hits, examples)


def tables(data: ReportData) -> Tables:
    if not data.rows:
        return Tables(60, [], [], [], [], [], Counter(), Counter(), {}, None)
    start, end = period_bounds(data.rows, data.period_s)
    rows = in_period(data.rows, start, end)
    before = in_period(data.rows, start - (end - start), start)
    t = _chart_tables(data, rows, start, end)
    t.by_provider = group_by(rows, "provider")
    t.overall = total_of(rows)
    for dim, _ in BREAKDOWNS:
        groups = {v: g for v, g in group_by(rows, dim).items() if g.total}
        if groups and set(groups) != {DIMENSION_OFF}:
            t.breakdowns[dim] = groups
    t.reasons = _reasons(data, rows, start, end)
    t.previous_span = (start - (end - start), start)
    t.previous = total_of(before) if before else None
    t.first_window = min(int(r["window_start"]) for r in data.rows)
    return t


def _chart_tables(data: ReportData, rows: list[dict[str, Any]], start: int, end: int) -> Tables:
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
        bucket = int(r["window_start"]) - int(r["window_start"]) % (bucket_s * 1000)
        for label, n in r.get("labels", {}).items():
            mix[bucket, label if label in top else "other labels"] += n
        outcomes = row_outcomes(r)
        providers.setdefault(str(r.get("provider", "other")), Counter()).update(outcomes)
        totals.update(outcomes)
        for g in r.get("gaps", []):
            gaps[g["template"]] += int(g["count"])
            examples.setdefault(g["template"], g.get("example", ""))
    # every label in every bucket (0 where absent): a stacked area needs each series' points
    shown = sorted({label for _, label in mix})
    label_mix = [
        {"time": _iso(b), "label": label, "records": mix.get((b, label), 0)}
        for b in sorted({b for b, _ in mix})
        for label in shown
    ]
    categories = [{"category": k, "records": n} for k, n in totals.most_common() if n]
    rules = [
        {"rule": rule, "label": label, "records": n}
        for (label, rule), n in _rules_in(data, start, end).most_common()
        if label != UNCATEGORIZED
    ][:TOP_RULES]
    gap_rows = [
        {"template": t, "records": n, "example": examples.get(t, "")}
        for t, n in gaps.most_common(TOP_GAPS)
    ]
    span = (start, end)
    t = Tables(
        bucket_s, label_mix, [], categories, rules, gap_rows, totals, labels, providers, span
    )
    t.rates = _rate_rows(group_by(rows, "provider"))
    return t


def _rate_rows(by_provider: Mapping[str, Group]) -> list[dict[str, Any]]:
    out = []
    for provider, group in sorted(by_provider.items()):
        for title, kind in RATE_KINDS:
            value = group.rate(kind)
            if value is None:
                continue
            count = group.complaints if kind == "complaint" else group.outcomes.get(kind, 0)
            base = group.outcomes.get("delivered", 0) if kind == "complaint" else group.total
            out.append(
                {
                    "provider": provider,
                    "rate": title,
                    "value": value,
                    "count": count,
                    "records": group.total,
                    "text": f"{value:.1%} ({count:,}/{base:,})",
                    "few": group.total < MIN_OUTCOMES,
                }
            )
    return out


# --- charts ------------------------------------------------------------------------------------


def _outcome_scale(domain: Iterable[str]) -> Any:
    import altair as alt

    names = list(domain)
    return alt.Scale(domain=names, range=[OUTCOME_COLOURS.get(n, "#bbbbbb") for n in names])


def _label_scale(labels: Iterable[str]) -> Any:
    """The same colour for a label in every chart of the page."""
    import altair as alt

    names = sorted(set(labels))
    return alt.Scale(
        domain=names, range=[_LABEL_PALETTE[i % len(_LABEL_PALETTE)] for i in range(len(names))]
    )


def _counted_bars(
    values: list[dict[str, Any]], y: Any, colour: Any, tooltip: list[Any], width: int
) -> Any:
    """Horizontal bars with each bar's count written at its end."""
    import altair as alt

    base = alt.Chart(_inline(values)).encode(
        y=y, x=alt.X("records:Q", title="records"), tooltip=tooltip
    )
    bars = (
        base.mark_bar().encode(color=colour)
        if not isinstance(colour, str)
        else (base.mark_bar(color=colour))
    )
    text = base.mark_text(align="left", dx=3).encode(text=alt.Text("records:Q", format=","))
    return alt.layer(bars, text).properties(width=width, height=alt.Step(18))


def charts(t: Tables) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, title, Vega-Lite spec) of every chart, built with Altair."""
    import altair as alt

    out: list[tuple[str, str, Any]] = []
    width = 900
    labels = _label_scale([*(r["label"] for r in t.label_mix), *(r["label"] for r in t.rules)])
    if t.label_mix:
        out.append(
            (
                "label-mix",
                f"Label mix over time ({_duration(t.bucket_s)} buckets)",
                _label_mix_chart(t.label_mix)
                .encode(
                    x=alt.X("time:T", title=None),
                    y=alt.Y("records:Q", stack="zero", title="classified records"),
                    color=alt.Color("label:N", title="label", scale=labels, sort="-y"),
                    tooltip=["time:T", "label:N", "records:Q"],
                )
                .properties(width=width, height=280),
            )
        )
    if t.rates:
        out.append(("rates", _RATES_TITLE, _rates_chart(t.rates)))
    if t.categories:
        out.append(
            (
                "categories",
                "Category split (delivered, and the category of each classified record)",
                _counted_bars(
                    t.categories,
                    alt.Y("category:N", sort="-x", title=None),
                    alt.Color(
                        "category:N",
                        legend=None,
                        scale=_outcome_scale(r["category"] for r in t.categories),
                    ),
                    ["category:N", "records:Q"],
                    width - 200,
                ),
            )
        )
    for dim, title in BREAKDOWNS:
        groups = t.breakdowns.get(dim)
        if groups:
            out.append((f"breakdown-{dim}", f"Outcomes per {title}", _breakdown_chart(groups)))
    if t.rules:
        out.append(
            (
                "rules",
                "Top rules that fired",
                _counted_bars(
                    t.rules,
                    alt.Y("rule:N", sort="-x", title=None, axis=alt.Axis(labelLimit=480)),
                    alt.Color("label:N", title="label", scale=labels),
                    ["rule:N", "label:N", "records:Q"],
                    380,
                ),
            )
        )
    if t.gaps:
        out.append(
            (
                "gaps",
                "Top rule gaps (templates no wording or status-code rule matched)",
                _counted_bars(
                    t.gaps,
                    alt.Y("template:N", sort="-x", title=None, axis=alt.Axis(labelLimit=560)),
                    OUTCOME_COLOURS["undetermined"],
                    ["template:N", "records:Q", "example:N"],
                    300,
                ),
            )
        )
    return [(cid, title, chart.to_dict()) for cid, title, chart in out]


def _label_mix_chart(values: list[dict[str, Any]]) -> Any:
    """Stacked areas over time; a single bucket draws no area: a stacked bar then."""
    import altair as alt

    chart = alt.Chart(_inline(values))
    if len({v["time"] for v in values}) < 2:
        return chart.mark_bar(opacity=0.85, size=40)
    return chart.mark_area(opacity=0.85)


_RATES_TITLE = (
    f"Rates per mailbox provider (pale: fewer than {MIN_OUTCOMES} outcomes; "
    "complaints per delivered message)"
)


def _rates_chart(rates: list[dict[str, Any]]) -> Any:
    import altair as alt

    kinds = dict(RATE_KINDS)
    base = alt.Chart().encode(
        y=alt.Y("provider:N", title=None, sort="-x"),
        x=alt.X("value:Q", axis=alt.Axis(format="%"), title=None),
        tooltip=[
            "provider:N",
            "rate:N",
            alt.Tooltip("value:Q", format=".2%"),
            alt.Tooltip("count:Q", title="of them"),
            alt.Tooltip("records:Q", title="outcomes"),
        ],
    )
    bars = base.mark_bar().encode(
        color=alt.Color(
            "rate:N",
            legend=None,
            scale=alt.Scale(domain=list(kinds), range=[OUTCOME_COLOURS[k] for k in kinds.values()]),
        ),
        opacity=alt.condition("datum.few", alt.value(0.35), alt.value(1.0)),
    )
    text = base.mark_text(align="left", dx=3, fontSize=9).encode(text="text:N")
    return (
        alt.layer(bars, text, data=_inline(rates))
        .properties(width=150, height=alt.Step(16))
        .facet(column=alt.Column("rate:N", title=None, sort=list(kinds)))
        .resolve_scale(x="independent")
    )


def _breakdown_chart(groups: Mapping[str, Group]) -> Any:
    import altair as alt

    values = breakdown_rows(groups)  # the top values first
    base = alt.Chart(_inline(values)).encode(
        y=alt.Y("value:N", title=None, sort=list(dict.fromkeys(v["value"] for v in values)))
    )
    bars = base.mark_bar().encode(
        x=alt.X("sum(records):Q", title="outcomes"),
        color=alt.Color(
            "outcome:N", title="outcome", scale=_outcome_scale(OUTCOMES), sort=list(OUTCOMES)
        ),
        order=alt.Order("rank:Q"),
        tooltip=["value:N", "outcome:N", "records:Q"],
    )
    totals = base.mark_text(align="left", dx=3).encode(
        x=alt.X("sum(records):Q"), text=alt.Text("sum(records):Q", format=",")
    )
    return alt.layer(bars, totals).properties(width=600, height=alt.Step(18))


def _inline(values: list[dict[str, Any]]) -> Any:
    """Altair's inline data (its constructor has no type annotations)."""
    import altair as alt

    return cast(Any, alt).Data(values=values)


def _words(seconds: int) -> str:
    """``5400`` -> ``"90 minutes"``, ``86400`` -> ``"1 day"``."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


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
        if data.period_s is not None:
            span += f" (the input's last {_words(int(data.period_s))})"
    source = "records counted" if data.from_stats else "records"
    lines.append(f"{data.records:,} {source}; the report covers{span or ' them'}.")
    classified = sum(t.labels.values())
    if classified:
        unc = t.labels.get(UNCATEGORIZED, 0)
        lines.append(
            f"{classified:,} classified failure or feedback records; "
            f"{unc / classified:.1%} Uncategorized (no rule matched)."
        )
    if t.overall.total:
        parts = []
        for title, kind in RATE_KINDS:
            value = t.overall.rate(kind)
            if value is not None:
                parts.append(f"{title} {value:.2%}")
        lines.append("Overall: " + ", ".join(parts) + ".")
    lines += _worst_hard_bounce(t)
    if data.suppressed is not None:
        lines.append(f"{data.suppressed:,} addresses suppressed ({data.suppressed_source}).")
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


def _worst_hard_bounce(t: Tables) -> list[str]:
    """The highest hard-bounce rate among providers with enough outcomes, saying so."""
    rated = [(p, g, g.rate(HARD)) for p, g in t.by_provider.items()]
    worst = [(rate, p, g) for p, g, rate in rated if g.total >= MIN_OUTCOMES and rate is not None]
    few = sum(1 for _, g, _ in rated if g.total < MIN_OUTCOMES)
    aside = (
        f"; {few} provider{'s' if few != 1 else ''} with fewer outcomes left out "
        "(pale in the chart)"
        if few
        else ""
    )
    if not worst:
        return [f"No provider has {MIN_OUTCOMES} outcomes or more for a hard-bounce rate{aside}."]
    rate, provider, group = max(worst, key=lambda w: (w[0], w[1]))
    return [
        f"Highest hard-bounce rate among providers with at least {MIN_OUTCOMES} outcomes: "
        f"{provider} at {rate:.2%} ({group.outcomes.get(HARD, 0):,} of {group.total:,} "
        f"outcomes){aside}."
    ]


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
    """The whole page: summary, the deliverability sections, charts (Vega-Lite, scripts
    inline) and the gaps table."""
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
        *_sections(data, t),
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
        parts.append(_table_after(cid, t, data.from_stats))
    payload = json.dumps({cid: spec for cid, _, spec in specs}).replace("</", "<\\/")
    return "\n".join([*parts, _EMBED.replace("SPECS", payload), "</body></html>"]) + "\n"


_EMBED = """<script type="text/javascript">
const specs = SPECS;
for (const [id, spec] of Object.entries(specs)) {
  vegaEmbed('#chart-' + id, spec, {actions: false, renderer: 'svg'})
    .catch((err) => {
      const el = document.getElementById('chart-' + id);
      el.setAttribute('data-error', String(err));
      el.textContent = 'chart failed: ' + err;
    });
}
</script>"""


def _sections(data: ReportData, t: Tables) -> list[str]:
    """The comparison, complaint and suppression sections (tables, no chart)."""
    parts = ['<h2 id="comparison">Compared with the previous period</h2>']
    if t.span and t.previous_span:
        now, before = (_iso(x) for x in t.span), (_iso(x) for x in t.previous_span)
        parts.append(
            f'<p class="meta">This period: {" to ".join(now)}; the previous one, of the same '
            f"length: {' to '.join(before)}.</p>"
        )
    if t.previous is None:
        parts.append(
            '<p id="no-previous">The input holds nothing of the previous period: give older '
            "logs too, or <code>--period</code> to report the input's last part and compare "
            "it with the part before.</p>"
        )
    else:
        parts.append(comparison_table(comparison(t.overall, t.previous)))
        if t.previous_span and t.first_window and t.first_window > t.previous_span[0]:
            parts.append(
                f'<p class="meta" id="previous-partly">The input starts at {_iso(t.first_window)}:'
                " it holds only part of the previous period.</p>"
            )
    parts.append('<h2 id="complaints">Complaint rate against the providers\' thresholds</h2>')
    parts.append(complaints_table(t.by_provider, t.overall))
    parts.append('<h2 id="suppressions">Suppressed addresses</h2>')
    if data.suppressed is None:
        parts.append(f'<p id="suppressed">Unknown: {html.escape(data.suppressed_source)}.</p>')
    else:
        parts.append(
            f'<p id="suppressed"><strong>{data.suppressed:,}</strong> addresses suppressed '
            f"({html.escape(data.suppressed_source)}): a hard bounce not lifted by a later "
            "delivery, as the worker's suppression stage decides.</p>"
        )
    parts.append('<h2 id="reasons">Top block and deferral reasons per provider</h2>')
    parts.append(reasons_table(t.reasons, data.from_stats))
    return parts


def _table_after(cid: str, t: Tables, from_stats: bool) -> str:
    """The table shown under a chart, if it has one."""
    if cid == "gaps":
        return _gaps_table(t.gaps)
    if cid.startswith("breakdown-"):
        dim = cid.removeprefix("breakdown-")
        return breakdown_table(dim, t.breakdowns[dim])
    return ""


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
