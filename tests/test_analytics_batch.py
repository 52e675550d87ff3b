"""Batch pre-aggregation: tenants, dimensions, complaints, gaps, and the sample end to end."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics.batch import ALL, BatchAggregator, tenant_of
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.windows import WindowedStats, event_time_ms, row_key
from streamer.classifier import Classifier
from streamer.config import shipped_rule_files
from streamer.devkit.sample import bundled_sample_path
from streamer.feedback import feedback_label
from streamer.records import CLASSIFIABLE_TYPES, effective_type, response_line

SAMPLE = bundled_sample_path()
T0 = 1_767_268_800


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"queue": "spring-sale:acme@outlook.com"}, "acme"),
        ({"queue": "acme@outlook.com"}, "acme"),
        ({"queue": "spring-sale:acme@outlook.com!relay.example"}, "acme"),
        ({"queue": "outlook.com"}, ""),
        ({"queue": "campaign:@outlook.com"}, ""),
        ({"queue": "x:acme@d", "meta": {"tenant": "explicit"}}, "explicit"),
        ({"queue": "x:acme@d", "meta": {"tenant": ""}}, "acme"),
        ({"queue": "custom-queue", "meta": {"tenant": "t1"}}, "t1"),
        ({"queue": None, "meta": None}, ""),
        ({}, ""),
    ],
)
def test_tenant_of(record: dict[str, Any], expected: str) -> None:
    assert tenant_of(record) == expected


def rec(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "Bounce",
        "timestamp": T0 + 5,
        "queue": "c:tenant1@gmail.com",
        "egress_pool": "pool1",
        "egress_source": "ip1",
    }
    base.update(kw)
    return base


def test_counts_labels_categories_and_window_key() -> None:
    agg = BatchAggregator(window_s=60, clock=lambda: 0.0)
    agg.add(rec(), "Bounce", "InvalidRecipient", "hard", "google", "550 5.1.1 unknown")
    agg.add(rec(timestamp=T0 + 59), "Bounce", "InvalidRecipient", "hard", "google", "550 5.1.1 x")
    agg.add(rec(timestamp=T0 + 60), "Delivery", None, None, "google", None)
    out = agg.finish()
    assert set(out) == {
        (T0 * 1000, "google", "pool1", "ip1", "tenant1"),
        ((T0 + 60) * 1000, "google", "pool1", "ip1", "tenant1"),
    }
    c = out[(T0 * 1000, "google", "pool1", "ip1", "tenant1")]
    assert c.counts == {"Bounce": 2}
    assert c.labels == {"InvalidRecipient": 2} and c.categories == {"hard": 2}
    assert c.gaps is None
    assert agg.finish() == {}  # a new batch
    assert agg.watermark == (T0 + 60) * 1000


def test_event_time_falls_back_to_the_clock() -> None:
    agg = BatchAggregator(window_s=60, clock=lambda: T0 + 61.5)
    agg.add({"type": "Delivery"}, "Delivery", None, None, "other", None)
    [k] = agg.finish()
    assert k == ((T0 + 60) * 1000, "other", "", "", "")
    assert agg.watermark is None  # the clock is not event time


def test_complaints_and_gaps() -> None:
    agg = BatchAggregator()
    # a feedback report counts for the tenant that sent the message complained of
    trace = {"tenant": "tenant1", "recipient": "someone@mail.ru"}
    fb = rec(
        type="Feedback", feedback_report={"feedback_type": "abuse", "supplemental_trace": trace}
    )
    agg.add(fb, "Feedback", "FeedbackAbuse", "complaint", "mailru", "250 ")
    agg.add(
        rec(
            type="Feedback",
            feedback_report={"feedback_type": "x" * 50, "supplemental_trace": trace},
        ),
        "Feedback",
        "FeedbackOther",
        "complaint",
        "mailru",
        None,
    )
    not_spam = {"feedback_type": "not-spam", "supplemental_trace": trace}
    agg.add(
        rec(type="Feedback", feedback_report=not_spam),
        "Feedback",
        "FeedbackNotSpam",
        "undetermined",
        "mailru",
        None,
    )
    agg.add(rec(), "Bounce", "Uncategorized", "undetermined", "mailru", "451 4.9.9 zork 12")
    agg.add(rec(), "Bounce", "Uncategorized", "undetermined", "mailru", "451 4.9.9 zork 345")
    [c] = agg.finish().values()
    # every report by type under feedback; only the complaint-category ones are complaints
    assert c.feedback == {"abuse": 1, "other": 1, "not-spam": 1}
    assert c.complaints == {"abuse": 1, "other": 1}
    assert c.gap_rows(10) == [
        {"template": "451 4.9.9 zork {n}", "count": 2, "example": "451 4.9.9 zork 12"}
    ]


def test_disabled_dimensions_and_bounded_values() -> None:
    agg = BatchAggregator(dimensions=["provider", "tenant"], tenant_capacity=3)
    for i in range(50):
        agg.add(rec(queue=f"c:t{i}@x"), "Bounce", None, None, "google", None)
    out = agg.finish()
    tenants = sorted(k[4] for k in out)
    assert tenants == ["other", "t0", "t1", "t2"]
    assert {(k[2], k[3]) for k in out} == {(ALL, ALL)}
    assert sum(c.counts["Bounce"] for c in out.values()) == 50
    with pytest.raises(ValueError, match="unknown dimensions"):
        BatchAggregator(dimensions=["colour"])


def test_unknown_record_types_are_bounded() -> None:
    agg = BatchAggregator(type_capacity=2)
    for i in range(10):
        agg.add(rec(), f"Weird{i}", None, None, "other", None)
    [c] = agg.finish().values()
    assert c.counts == {"Weird0": 1, "Weird1": 1, "other": 8}


def test_bounded_values_are_stable_inside_a_window_and_rebalanced_at_the_next() -> None:
    agg = BatchAggregator(tenant_capacity=1)
    agg.add(rec(queue="c:small@x"), "Bounce", None, None, "g", None)
    for _ in range(20):
        agg.add(rec(queue="c:big@x"), "Bounce", None, None, "g", None)
    assert {k[4] for k in agg.finish()} == {"small", "other"}
    agg.add(rec(queue="c:big@x", timestamp=T0 + 60), "Bounce", None, None, "g", None)
    assert {k[4] for k in agg.finish()} == {"big"}


def test_sample_end_to_end_totals_match_the_sample() -> None:
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    classifier = Classifier.from_files(shipped_rule_files())
    table = CategoryTable.shipped()
    providers = ProviderMatcher.shipped()
    agg = BatchAggregator(window_s=60, clock=lambda: 0.0)
    stats = WindowedStats(window_s=60, grace_s=10, clock=lambda: 0.0)
    latest: dict[bytes, dict[str, Any]] = {}
    want_labels: Counter[str] = Counter()
    wall = 1000.0
    for i, r in enumerate(records):
        rtype = effective_type(r)  # the sample's log-hook records count as log_hook
        label = category = line = None
        if rtype in CLASSIFIABLE_TYPES:
            line = response_line(r["response"])
            label = classifier.classify(line).label
            if rtype == "Feedback":
                label = feedback_label(r) or label
            category = table.category(label, r["response"]["code"])
            want_labels[label] += 1
        agg.add(r, rtype, label, category, providers.match_record(r), line)
        if i % 97 == 96:
            stats.add(agg.finish(), now_wall=wall)
            wall += 3
            for row in stats.updates(agg.watermark, wall):
                row["session"] = "w/1"  # as the worker publishes it
                latest[row_key(row)] = row
    stats.add(agg.finish(), now_wall=wall)
    for row in stats.updates(agg.watermark, wall):
        row["session"] = "w/1"
        latest[row_key(row)] = row
    counts: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    complaints: Counter[str] = Counter()
    feedback: Counter[str] = Counter()
    for row in latest.values():
        feedback.update(row["feedback"])
        counts.update(row["counts"])
        labels.update(row["labels"])
        complaints.update(row["complaints"])
    assert counts == Counter(effective_type(r) for r in records)
    assert counts["log_hook"] > 50 and counts["Delivery"] < 250
    assert labels == want_labels
    assert feedback == {"abuse": 11, "fraud": 1, "not-spam": 1, "other": 1, "virus": 1}
    assert complaints == {"abuse": 11, "fraud": 1, "other": 1, "virus": 1}  # not not-spam
    assert {r["tenant"] for r in latest.values()} >= {"acme", "pinepay", "greenleaf"}
    assert {r["provider"] for r in latest.values()} >= {"google", "microsoft", "yahoo"}
    assert all(row["serial"] >= 1 for row in latest.values())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1_500_000_000_000, 2_100_000_000_000),
    st.sampled_from(["Z", "+00:00", "+02:00", "-05:30", ""]),
    st.sampled_from(["", ".1", ".123", ".123456789"]),
)
def test_cached_event_time_equals_the_full_parse(ms: int, tz: str, frac: str) -> None:
    """The per-minute cache reads the same second as ``event_time_ms`` for any RFC 3339 form."""
    from datetime import UTC, datetime, timedelta, timezone

    dt = datetime.fromtimestamp(ms / 1000, UTC)
    if tz not in ("", "Z"):
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        dt = dt.astimezone(timezone(sign * offset))
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + tz
    agg = BatchAggregator()
    record = {"event_time": text, "timestamp": ms // 1000}
    want = event_time_ms(record)
    assert want is not None
    for _ in range(2):  # the first call fills the cache, the second reads it
        assert agg._event_ms(record) == want - want % 1000
