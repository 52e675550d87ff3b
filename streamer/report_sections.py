"""The report's deliverability sections: breakdowns by tenant / egress pool / egress source,
block and deferral reasons per provider, complaint rates against the mailbox providers'
thresholds, suppressed addresses, and the comparison with the previous period.

Everything here reads the stats rows (``streamer.analytics.windows``) the report is built
from, plus what only records tell (the rule behind a reason, the suppressions they decide).
Pure computation and HTML tables; the charts are in ``streamer.report``.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamer.analytics.categories import ADMIN, BLOCK, COMPLAINT, HARD, SOFT, UNDETERMINED
from streamer.analytics.suppression_fold import DELIVERY, RecipientState, decode_event, fold
from streamer.analytics.suppressions import SuppressionEvent, SuppressionEvents, with_source
from streamer.config import DEFAULT_OOB_TRUST_PERIOD_S

#: RFC 5965 Feedback-Types that are a recipient's complaint (spam or fraud). ``not-spam``,
#: ``opt-out``, ``virus``, ``auth-failure`` and ``other`` reports are not.
COMPLAINT_FEEDBACK_TYPES = ("abuse", "fraud")
#: Gmail's and Yahoo's bulk-sender requirements (2024): keep the spam complaint rate under
#: 0.3%, aim under 0.1%. A rate is complaints per delivered message.
COMPLAINT_LIMIT = 0.003
COMPLAINT_TARGET = 0.001
#: The stats rows' dimensions the report breaks down, with their titles.
BREAKDOWNS: tuple[tuple[str, str], ...] = (
    ("tenant", "tenant"),
    ("egress_pool", "egress pool"),
    ("egress_source", "egress source (sending IP)"),
)
TOP_VALUES = 15
TOP_REASONS = 3
#: The outcomes of a breakdown, in display order: delivered, then every category.
OUTCOMES = ("delivered", HARD, BLOCK, SOFT, COMPLAINT, ADMIN, UNDETERMINED)
#: A dimension switched off in the worker (``stats_dimensions``) carries this value.
DIMENSION_OFF = "*"
EXAMPLE_MAX = 300


def complaint_count(row: Mapping[str, Any]) -> int:
    """The spam/fraud complaints a stats row counts (its ``complaints`` map holds the
    complaint-category Feedback-Types, rows written before ``feedback`` existed every type:
    both read alike): the one place the report reads complaints from."""
    complaints = row.get("complaints") or {}
    return sum(int(complaints.get(kind, 0)) for kind in COMPLAINT_FEEDBACK_TYPES)


def row_outcomes(row: Mapping[str, Any]) -> Counter[str]:
    """A row's outcomes: ``delivered`` (Delivery records) and each category's records."""
    out: Counter[str] = Counter(row.get("categories", {}))
    out["delivered"] += int(row.get("counts", {}).get("Delivery", 0))
    return out


def complaint_status(rate: float | None) -> str:
    if rate is None:
        return "no deliveries"
    if rate >= COMPLAINT_LIMIT:
        return "over the 0.3% limit"
    if rate >= COMPLAINT_TARGET:
        return "over the 0.1% target"
    return "under 0.1%"


@dataclass
class Group:
    """Outcomes and complaints of one value of a dimension (a provider, a tenant...)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    complaints: int = 0

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def rate(self, kind: str) -> float | None:
        """``kind``'s share of the outcomes; complaints per delivered message."""
        if kind == "complaint":
            delivered = self.outcomes.get("delivered", 0)
            return self.complaints / delivered if delivered else None
        total = self.total
        return self.outcomes.get(kind, 0) / total if total else None


def group_by(rows: Iterable[Mapping[str, Any]], dimension: str) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    for row in rows:
        value = str(row.get(dimension, ""))
        group = groups.setdefault(value or "(none)", Group())
        group.outcomes.update(row_outcomes(row))
        group.complaints += complaint_count(row)
    return groups


def breakdown_rows(groups: Mapping[str, Group]) -> list[dict[str, Any]]:
    """The chart's rows: the top values by outcomes, one row per (value, outcome)."""
    top = sorted(groups.items(), key=lambda kv: (-kv[1].total, kv[0]))[:TOP_VALUES]
    return [
        {"value": value, "outcome": kind, "rank": rank, "records": g.outcomes.get(kind, 0)}
        for value, g in top
        for rank, kind in enumerate(OUTCOMES)
        if g.outcomes.get(kind, 0)
    ]


# --- reasons -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    provider: str
    category: str
    label: str
    rule: str  # "file#index: pattern"; "" when only the label is known (stats rows)
    records: int
    example: str


def top_reasons(
    hits: Mapping[tuple[str, str, str, str], int],
    examples: Mapping[tuple[str, str, str, str], str],
) -> list[Reason]:
    """The top block and deferral reasons per provider, providers by their blocks+deferrals.

    ``hits`` counts (provider, category, label, rule)."""
    by_provider: Counter[str] = Counter()
    for (provider, category, _, _), n in hits.items():
        if category in (BLOCK, SOFT):
            by_provider[provider] += n
    out: list[Reason] = []
    for provider, _ in sorted(by_provider.items(), key=lambda kv: (-kv[1], kv[0])):
        for category in (BLOCK, SOFT):
            mine = [(k, n) for k, n in hits.items() if k[0] == provider and k[1] == category]
            mine.sort(key=lambda kn: (-kn[1], kn[0]))
            for key, n in mine[:TOP_REASONS]:
                out.append(Reason(provider, category, key[2], key[3], n, examples.get(key, "")))
    return out


def label_hits(
    rows: Iterable[Mapping[str, Any]], category_of: Callable[[str], str]
) -> Counter[tuple[str, str, str, str]]:
    """(provider, category, label, "") from stats rows, which count labels but not rules:
    a label's category is the categories table's for it (``category_of(label)``)."""
    hits: Counter[tuple[str, str, str, str]] = Counter()
    for row in rows:
        provider = str(row.get("provider", "other"))
        for label, n in row.get("labels", {}).items():
            hits[provider, category_of(label), label, ""] += int(n)
    return hits


# --- suppressions ------------------------------------------------------------------------------


class SuppressionCount:
    """The recipients the suppression stage would hold suppressed after these records: the
    worker's events (``SuppressionEvents``) folded per recipient (``suppression_fold.fold``),
    the records' order standing in for input offsets. Only recipients that hard-bounced keep a
    state; every other one keeps its latest delivery time (a hard bounce older than it is
    stale, and an OOB newer than it by at most ``oob_trust_ms`` is trusted, as in the worker)."""

    def __init__(self, oob_trust_ms: int | None = DEFAULT_OOB_TRUST_PERIOD_S * 1000) -> None:
        self.oob_trust_ms = oob_trust_ms
        #: The worker's events of a record (``SuppressionEvents.update``): feed them to :meth:`add`.
        self.events = SuppressionEvents()
        self.states: dict[str, RecipientState] = {}
        self.delivered: dict[str, int] = {}
        self.offset = 0

    def add(self, events: Iterable[SuppressionEvent]) -> None:
        """Fold one record's events."""
        self.offset += 1
        for key, value in events:
            event = decode_event(with_source(value, 0, self.offset))
            recipient = key.decode()
            state = self.states.get(recipient)
            if state is None and event.kind == DELIVERY:
                if event.time > self.delivered.get(recipient, -1):
                    self.delivered[recipient] = event.time
                continue
            if state is None:
                state = self.states[recipient] = RecipientState(self.delivered.pop(recipient, None))
            fold(state, event, self.oob_trust_ms)

    @property
    def suppressed(self) -> int:
        return sum(1 for s in self.states.values() if s.suppressed)


def suppressed_on_topic(values: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Recipients suppressed on the compacted suppressions topic: the latest value per key
    that is not a tombstone (compaction may not have run yet)."""
    latest: dict[bytes | None, bool] = {}
    for key, value in values:
        latest[key] = bool(value)
    return sum(latest.values())


# --- the previous period -----------------------------------------------------------------------


def period_bounds(rows: Iterable[Mapping[str, Any]], seconds: float | None) -> tuple[int, int]:
    """(start, end) in epoch ms of the reported period: the last ``seconds`` of the rows
    (None: all of them)."""
    rows = list(rows)
    end = max(int(r["window_end"]) for r in rows)
    start = min(int(r["window_start"]) for r in rows)
    if seconds is not None:
        start = end - int(seconds * 1000)
    return start, end


def in_period(rows: Iterable[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    return [r for r in rows if start <= int(r["window_start"]) < end]


#: The comparison's lines: (title, what), what = "records", "delivered" or a rate kind.
COMPARED: tuple[tuple[str, str], ...] = (
    ("outcomes", "outcomes"),
    ("delivered", "delivered"),
    ("delivery rate", "delivered"),
    ("hard-bounce rate", HARD),
    ("block rate", BLOCK),
    ("deferral rate", SOFT),
    ("complaint rate (abuse, fraud per delivered)", "complaint"),
)


def comparison(now: Group, before: Group) -> list[tuple[str, str, str, str]]:
    """(what, this period, previous period, change) for the comparison table."""
    out = []
    for title, kind in COMPARED:
        if title in ("outcomes", "delivered"):
            a = now.total if kind == "outcomes" else now.outcomes.get("delivered", 0)
            b = before.total if kind == "outcomes" else before.outcomes.get("delivered", 0)
            change = f"{(a - b) / b:+.1%}" if b else "-"
            out.append((title, f"{a:,}", f"{b:,}", change))
            continue
        ra, rb = now.rate(kind), before.rate(kind)
        shown = [f"{r:.2%}" if r is not None else "-" for r in (ra, rb)]
        change = f"{(ra - rb) * 100:+.2f} points" if ra is not None and rb is not None else "-"
        out.append((title, shown[0], shown[1], change))
    return out


def total_of(rows: Iterable[Mapping[str, Any]]) -> Group:
    return group_by(rows, "__all__").get("(none)", Group())


# --- HTML --------------------------------------------------------------------------------------

_esc = html.escape


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def breakdown_table(dimension: str, groups: Mapping[str, Group]) -> str:
    top = sorted(groups.items(), key=lambda kv: (-kv[1].total, kv[0]))[:TOP_VALUES]
    body = "".join(
        f"<tr><td>{_esc(value)}</td><td class='n'>{g.total:,}</td>"
        f"<td class='n'>{g.outcomes.get('delivered', 0):,}</td>"
        + "".join(f"<td class='n'>{_pct(g.rate(k))}</td>" for k in (HARD, BLOCK, SOFT))
        + f"<td class='n'>{g.complaints:,}</td><td class='n'>{_pct(g.rate('complaint'))}</td></tr>"
        for value, g in top
    )
    more = len(groups) - len(top)
    tail = f'<p class="meta">{more:,} more values not shown.</p>' if more > 0 else ""
    return (
        f'<table id="breakdown-{dimension}-table"><tr><th>{dimension}</th><th>outcomes</th>'
        "<th>delivered</th><th>hard-bounce rate</th><th>block rate</th><th>deferral rate</th>"
        f"<th>complaints</th><th>complaint rate</th></tr>{body}</table>{tail}"
    )


def reasons_table(reasons: list[Reason], from_stats: bool) -> str:
    if not reasons:
        return '<p id="no-reasons">No block or deferral in the period.</p>'
    body = "".join(
        f"<tr><td>{_esc(r.provider)}</td><td>{'block' if r.category == BLOCK else 'deferral'}"
        f"</td><td>{_esc(r.label)}</td><td><code>{_esc(r.rule)}</code></td>"
        f"<td class='n'>{r.records:,}</td>"
        f"<td><code>{_esc(r.example[:EXAMPLE_MAX])}</code></td></tr>"
        for r in reasons
    )
    note = (
        '<p class="meta">From stats rows: the label of each reason, with the category the '
        "categories table gives it; the rule that fired and an example are known only from "
        "records.</p>"
        if from_stats
        else '<p class="meta">The rule that fired names the blocklist or policy; the example is '
        "the first response seen for that reason.</p>"
    )
    return (
        f'<table id="reasons-table"><tr><th>provider</th><th>outcome</th><th>label</th>'
        f"<th>rule</th><th>records</th><th>example</th></tr>{body}</table>{note}"
    )


def complaints_table(providers: Mapping[str, Group], overall: Group) -> str:
    rows = sorted(providers.items(), key=lambda kv: (-kv[1].complaints, kv[0]))
    rows = [(p, g) for p, g in rows if g.complaints or g.outcomes.get("delivered", 0)]
    body = "".join(
        f"<tr><td>{_esc(p)}</td><td class='n'>{g.outcomes.get('delivered', 0):,}</td>"
        f"<td class='n'>{g.complaints:,}</td><td class='n'>{_pct(g.rate('complaint'))}</td>"
        f"<td>{complaint_status(g.rate('complaint'))}</td></tr>"
        for p, g in [("all providers", overall), *rows]
    )
    return (
        '<table id="complaints-table"><tr><th>provider</th><th>delivered</th>'
        f"<th>complaints</th><th>complaint rate</th><th>against 0.1% / 0.3%</th></tr>{body}"
        '</table><p class="meta">Complaints are feedback reports of type abuse or fraud '
        "(not-spam, opt-out, virus and other reports are not counted), per delivered message. "
        "Gmail and Yahoo require bulk senders to keep the spam complaint rate under 0.3% and "
        "recommend staying under 0.1%.</p>"
    )


def comparison_table(lines: list[tuple[str, str, str, str]]) -> str:
    body = "".join(
        f"<tr><td>{_esc(what)}</td><td class='n'>{a}</td><td class='n'>{b}</td>"
        f"<td class='n'>{change}</td></tr>"
        for what, a, b, change in lines
    )
    return (
        '<table id="comparison-table"><tr><th></th><th>this period</th><th>previous period</th>'
        f"<th>change</th></tr>{body}</table>"
    )
