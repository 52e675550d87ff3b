"""``streamer report``'s sections, pinned on a known input (``report_input``): the comparison
with the previous period, complaint rates against the providers' thresholds, suppressed
addresses, block and deferral reasons per provider, breakdowns by tenant / pool / source, and
the charts' colours and counts. The page rendered in Chromium: ``test_report_browser.py``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import report_input
from typer.testing import CliRunner

from streamer.classifier import Classifier
from streamer.cli import _register, app
from streamer.config import shipped_rule_files
from streamer.inputs import expand_inputs
from streamer.report import (
    MIN_OUTCOMES,
    OUTCOME_COLOURS,
    ReportData,
    Tables,
    charts,
    read_inputs,
    render_html,
    stats_data,
    summary,
    tables,
)
from streamer.report_sections import (
    Group,
    comparison,
    complaint_count,
    complaint_status,
    suppressed_on_topic,
)

SHIPPED = Classifier.from_files(shipped_rule_files())


@pytest.fixture(scope="module")
def input_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "log.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in report_input.records()))
    return path


def _data(path: Path, period_s: float | None = 120) -> ReportData:
    data = read_inputs(expand_inputs([str(path)]), SHIPPED)
    data.period_s = period_s
    return data


@pytest.fixture(scope="module")
def data(input_file: Path) -> ReportData:
    return _data(input_file)


@pytest.fixture(scope="module")
def t(data: ReportData) -> Tables:
    return tables(data)


def test_the_period_and_the_one_before(t: Tables) -> None:
    minute = 60_000
    start = (report_input.kr.T0 + report_input.M) * 1000 + 2 * minute
    assert t.span == (start, start + 2 * minute)
    assert t.previous_span == (start - 2 * minute, start)
    assert t.previous is not None
    assert comparison(t.overall, t.previous) == [
        ("outcomes", "14", "5", "+180.0%"),
        ("delivered", "6", "4", "+50.0%"),
        ("delivery rate", "42.86%", "80.00%", "-37.14 points"),
        ("hard-bounce rate", "14.29%", "20.00%", "-5.71 points"),
        ("block rate", "21.43%", "0.00%", "+21.43 points"),
        ("deferral rate", "7.14%", "0.00%", "+7.14 points"),
        ("complaint rate (abuse, fraud per delivered)", "16.67%", "0.00%", "+16.67 points"),
    ]


def test_without_a_period_the_previous_one_is_not_in_the_input(input_file: Path) -> None:
    whole = tables(_data(input_file, None))
    assert whole.previous is None and whole.overall.total == 19
    page = render_html(_data(input_file, None))
    assert '<p id="no-previous">The input holds nothing of the previous period' in page


def test_outcomes_and_complaints_per_provider(t: Tables) -> None:
    google, yahoo = t.by_provider["google"], t.by_provider["yahoo"]
    assert dict(google.outcomes) == {
        "delivered": 4,
        "hard": 1,
        "block": 2,
        "soft": 1,
        "complaint": 1,
    }
    assert dict(yahoo.outcomes) == {"delivered": 2, "hard": 1, "block": 1, "undetermined": 1}
    # the not-spam report is an outcome (undetermined) but no complaint
    assert (google.complaints, yahoo.complaints) == (1, 0)
    assert google.rate("complaint") == 1 / 4 and yahoo.rate("complaint") == 0


def test_breakdowns_by_tenant_pool_and_source(t: Tables) -> None:
    def summed(dim: str) -> dict[str, tuple[int, int, int]]:
        return {
            v: (g.total, g.outcomes.get("delivered", 0), g.complaints)
            for v, g in t.breakdowns[dim].items()
        }

    assert summed("tenant") == {"acme": (9, 4, 1), "beta": (5, 2, 0)}
    # feedback reports name the tenant of the message complained of, not its pool or source
    assert summed("egress_pool") == {"p1": (8, 4, 0), "p2": (4, 2, 0), "(none)": (2, 0, 1)}
    assert summed("egress_source") == {"ip1": (8, 4, 0), "ip2": (4, 2, 0), "(none)": (2, 0, 1)}


def test_block_and_deferral_reasons_name_the_rule(t: Tables) -> None:
    got = [(r.provider, r.category, r.label, r.records, r.example) for r in t.reasons]
    assert got == [
        ("google", "block", "SpamBlock", 2, f"550 5.7.1 {report_input.SPAMHAUS}"),
        ("google", "soft", "TransientFailure", 1, "421 4.7.0 Try again later"),
        ("yahoo", "block", "PolicyRelated", 1, f"554 5.7.9 {report_input.POLICY}"),
    ]
    # the rule names the blocklist / the policy (the index moves as rules are added)
    assert re.fullmatch(r"blocklists\.toml#\d+: \(\?i\)spamhaus", t.reasons[0].rule)
    assert re.fullmatch(
        r"providers-yahoo-aol\.toml#\d+: .*not accepted for policy reasons", t.reasons[2].rule
    )


def test_suppressed_addresses_as_the_suppression_stage_decides(data: ReportData) -> None:
    # x@gmail.com and y@yahoo.com hard-bounced; gone@gmail.com did too, then was delivered;
    # d0@gmail.com complained (abuse), which no delivery lifts; the not-spam report suppresses none
    assert data.suppressed == 3


def test_the_summary_says_the_hard_bounce_threshold(data: ReportData, t: Tables) -> None:
    lines = summary(data, t)
    assert lines[3] == (
        f"No provider has {MIN_OUTCOMES} outcomes or more for a hard-bounce rate; 2 providers "
        "with fewer outcomes left out (pale in the chart)."
    )
    assert lines[4] == "3 addresses suppressed (after every record of the input)."


def test_the_summary_names_the_worst_provider_above_the_threshold() -> None:
    t = Tables(60, [], [], [], [], [], Counter(), Counter(), {}, None)
    t.by_provider = {
        "big": Group(_counter(delivered=18, hard=2)),  # 10% of 20
        "bigger": Group(_counter(delivered=27, hard=3)),  # 10% of 30: a tie, by name
        "tiny": Group(_counter(hard=1)),  # 100% of 1: too few
    }
    data = ReportData(rows=[{}])
    (line,) = [x for x in summary(data, t) if "hard-bounce rate" in x]
    assert line == (
        "Highest hard-bounce rate among providers with at least 20 outcomes: bigger at 10.00% "
        "(3 of 30 outcomes); 1 provider with fewer outcomes left out (pale in the chart)."
    )


def _counter(**counts: int) -> Counter[str]:
    return Counter(counts)


def test_complaints_are_abuse_and_fraud_reports_only() -> None:
    row = {"complaints": {"abuse": 2, "fraud": 1, "not-spam": 5, "opt-out": 3, "virus": 1}}
    assert complaint_count(row) == 3
    assert complaint_count({}) == 0


def test_complaint_rate_against_gmail_and_yahoo_thresholds() -> None:
    assert complaint_status(None) == "no deliveries"
    assert complaint_status(0.000999) == "under 0.1%"
    assert complaint_status(0.001) == "over the 0.1% target"
    assert complaint_status(0.002999) == "over the 0.1% target"
    assert complaint_status(0.003) == "over the 0.3% limit"


def test_the_page_holds_the_sections(data: ReportData) -> None:
    page = render_html(data)
    assert "<tr><td>google</td><td class='n'>4</td><td class='n'>1</td>" in page
    assert "<td class='n'>25.00%</td><td>over the 0.3% limit</td>" in page
    assert '<p id="suppressed"><strong>3</strong> addresses suppressed' in page
    assert "<tr><td>acme</td><td class='n'>9</td><td class='n'>4</td>" in page
    assert "zen.spamhaus.org" in page and "(?i)spamhaus" in page


def test_the_stats_rows_give_the_same_sections(data: ReportData, t: Tables) -> None:
    rows = stats_data(data.rows, "topic stats")
    rows.period_s = 120
    ts = tables(rows)
    assert comparison(ts.overall, ts.previous or Group()) == comparison(
        t.overall, t.previous or Group()
    )
    assert {k: g.total for k, g in ts.breakdowns["tenant"].items()} == {"acme": 9, "beta": 5}
    # labels only (no rule, no example): their category from the categories table
    got = [(r.provider, r.category, r.label, r.rule, r.records) for r in ts.reasons]
    assert got == [
        ("google", "block", "SpamBlock", "", 2),
        ("google", "soft", "TransientFailure", "", 1),
        ("yahoo", "block", "PolicyRelated", "", 1),
    ]
    assert rows.suppressed is None


def test_suppressed_on_the_topic_is_the_latest_value_per_key() -> None:
    values = [(b"a", b"{}"), (b"b", b"{}"), (b"a", None), (b"c", b"{}"), (b"c", None), (b"c", b"x")]
    assert suppressed_on_topic(values) == 2  # b, and c again; a lifted


def _scales(spec: Any) -> Iterator[dict[str, Any]]:
    """Every colour scale with an explicit domain in a Vega-Lite spec."""
    if isinstance(spec, dict):
        color = spec.get("color")
        scale = color.get("scale") if isinstance(color, dict) else None
        if isinstance(scale, dict) and "domain" in scale:
            yield scale
        for value in spec.values():
            yield from _scales(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _scales(value)


def _marks(spec: Any) -> Iterator[str]:
    if isinstance(spec, dict):
        mark = spec.get("mark")
        if mark is not None:
            yield mark if isinstance(mark, str) else mark["type"]
        for value in spec.values():
            yield from _marks(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _marks(value)


RATE_OUTCOMES = {
    "delivery rate": "delivered",
    "hard-bounce rate": "hard",
    "block rate": "block",
    "deferral rate": "soft",
    "complaint rate": "complaint",
}


def test_one_colour_per_outcome_in_every_chart(t: Tables) -> None:
    specs = {cid: spec for cid, _, spec in charts(t)}
    seen = set()
    label_colours: dict[str, str] = {}
    for cid, spec in specs.items():
        for scale in _scales(spec):
            for name, colour in zip(scale["domain"], scale["range"], strict=True):
                outcome = RATE_OUTCOMES.get(name, name)
                if outcome in OUTCOME_COLOURS:
                    assert colour == OUTCOME_COLOURS[outcome], (cid, name)
                    seen.add(cid)
                else:  # a label: the same colour wherever it is shown, never an outcome's
                    assert label_colours.setdefault(name, colour) == colour, (cid, name)
                    assert colour not in OUTCOME_COLOURS.values(), (cid, name)
    assert seen == {
        "rates",
        "categories",
        "breakdown-tenant",
        "breakdown-egress_pool",
        "breakdown-egress_source",
    }
    assert len(set(OUTCOME_COLOURS.values())) == len(OUTCOME_COLOURS)


def test_every_bar_chart_writes_its_counts(t: Tables) -> None:
    for cid, _, spec in charts(t):
        marks = list(_marks(spec))
        if "bar" in marks:
            assert "text" in marks, cid


def test_a_period_that_is_no_duration_is_a_usage_error(input_file: Path, tmp_path: Path) -> None:
    _register()
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(input_file), "-o", str(out), "--period", "soon"])
    assert res.exit_code == 2
    assert res.stderr == "--period: 'soon' is not a duration (30m, 2h, 1d, 1w)\n"
    assert not out.exists()


def test_a_dimension_the_worker_does_not_keep_has_no_breakdown(data: ReportData) -> None:
    rows = [{**r, "tenant": "*"} for r in data.rows]  # stats_dimensions without tenant
    t = tables(stats_data(rows, "topic stats"))
    assert sorted(t.breakdowns) == ["egress_pool", "egress_source"]
    assert "breakdown-tenant" not in {cid for cid, _, _ in charts(t)}


def test_a_label_mix_of_one_bucket_is_a_bar(data: ReportData, t: Tables) -> None:
    one = tables(ReportData(rows=[r for r in data.rows if r["window_start"] == t.span[0]]))
    assert len({v["time"] for v in one.label_mix}) == 1
    (spec,) = [spec for cid, _, spec in charts(one) if cid == "label-mix"]
    assert list(_marks(spec)) == ["bar"]
    (spec,) = [spec for cid, _, spec in charts(t) if cid == "label-mix"]
    assert list(_marks(spec)) == ["area"]


def test_a_previous_period_the_input_holds_only_part_of(data: ReportData) -> None:
    partly = ReportData(rows=data.rows, period_s=150)  # the previous 150 s start before the input
    page = render_html(partly)
    assert '<table id="comparison-table">' in page
    first = _iso_ms(min(int(r["window_start"]) for r in data.rows))
    assert (
        f'<p class="meta" id="previous-partly">The input starts at {first}: it holds only part '
        "of the previous period.</p>"
    ) in page
    assert 'id="previous-partly"' not in render_html(data)  # 2 + 2 minutes: all of it


def _iso_ms(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
