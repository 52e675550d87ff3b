"""The analytics' C counter (``streamer.analytics._fastcount``) counts exactly like Python.

``Analyzer.observer`` is the C counter's ``observe`` where the extension is built (always in
this repository: ``pip install -e .`` compiles it). For any sequence of records, two analyzers
fed alike, one through the C counter and one through the Python reference ``Analyzer.observe``,
must return the same (category, provider, suppression events) for every record and fold the
same windowed counts, gaps, complaints and watermark.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from system_tools import lacking

from streamer.analytics.analyzer import SPEEDUPS, Analyzer
from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppressions import SuppressionEvents
from streamer.devkit.sample import generate_records
from streamer.feedback import feedback_label
from streamer.records import CLASSIFIABLE_TYPES, RECORD_TYPES, is_log_hook_record, response_line
from streamer.rules import UNCATEGORIZED, Rule


@pytest.fixture(autouse=True)
def _built() -> None:
    """Every test here needs the extension: skip without it, fail on CI (``CI=true``)."""
    if not SPEEDUPS:
        lacking(
            "the C extension streamer.analytics._fastcount is not built (no C compiler at "
            "install time): install gcc and re-run `pip install -e .`"
        )


CATEGORIES = CategoryTable.shipped()
PROVIDERS = ProviderMatcher.shipped()
NOW = 1_767_268_800.0
LABELS = [None, "InvalidRecipient", "BadDestinationMailbox", "QuotaIssues", UNCATEGORIZED]
RULE = Rule(index=3, label="InvalidRecipient", pattern="user unknown", file="rules/x.toml")


def analyzer(fast: bool, **agg: Any) -> Analyzer:
    return Analyzer(
        CATEGORIES,
        PROVIDERS,
        BatchAggregator(window_s=60, **agg),
        SuppressionEvents(),
        clock=lambda: NOW,
        cache_size=16,  # small: the caches are emptied while the test runs
        fast=fast,
    )


def test_the_extension_is_built_here() -> None:
    """The speed-up must not silently go missing where it can be built (CI, dev.sh)."""
    assert SPEEDUPS


#: Rules as the pipeline passes them: the rule set's objects, and odd ones (a mapping, none).
RULES: list[Any] = [
    RULE,
    Rule(index=9, label="BadDestinationMailbox", pattern="no such", file="b"),
    {"label": "x"},
    None,
]


def _observe(
    an: Analyzer, record: dict[str, Any], label: str | None, line: str | None, rule: Any = RULE
) -> Any:
    category, provider, writes = an.observer(record, record["type"], label, rule, line)
    return category, provider, list(writes)


def _folded(an: Analyzer) -> tuple[Any, ...]:
    agg = an.aggregator
    watermark = agg.watermark
    return (dict(agg.finish()), watermark)


def _assert_same(records: list[tuple[dict[str, Any], str | None, str | None]]) -> None:
    fast, slow = analyzer(True), analyzer(False)
    assert fast.observer != fast.observe and slow.observer == slow.observe
    for i, (record, label, line) in enumerate(records):
        # each path gets its own copy: nothing may depend on the other's objects
        rule = RULES[i % len(RULES)]
        got = _observe(fast, copy.deepcopy(record), label, line, rule)
        want = _observe(slow, copy.deepcopy(record), label, line, rule)
        assert got == want, (i, record)
        if i % 37 == 36:
            assert _folded(fast) == _folded(slow)
    assert _folded(fast) == _folded(slow)


def _labelled(record: dict[str, Any]) -> tuple[dict[str, Any], str | None, str | None]:
    """The label and line the pipeline would pass (a fixed rule instead of the classifier)."""
    rtype = record.get("type")
    if rtype not in CLASSIFIABLE_TYPES:
        return record, None, None
    label = feedback_label(record) if rtype == "Feedback" else None
    if label is not None:
        return record, label, None
    line = response_line(record["response"])
    if "unknown" in line or "does not exist" in line:
        return record, "InvalidRecipient", line
    if "quota" in line.lower() or "full" in line.lower():
        return record, "QuotaIssues", line
    return record, UNCATEGORIZED, line


def test_the_sample_counts_alike() -> None:
    records = [_labelled(r) for r in generate_records(3000, seed=5, records_per_second=400.0)]
    _assert_same(records)


def test_log_hook_records_and_refused_rcpts_count_alike() -> None:
    """A log hook's bookkeeping records (labelled here as if a caller had classified its
    Bounces: the analyzer must not care) and Rejections of RCPT TO, whose recipient is another
    address than the refused one: the C counter hands both to Python."""
    import kumomta_records as kr

    stream = generate_records(3000, seed=6, records_per_second=400.0, log_hook="kafka")
    records = [_labelled(r) for r in [*kr.local_log_with_a_hook(), *stream]]
    assert sum(1 for r, label, _ in records if is_log_hook_record(r) and label) > 10
    _assert_same(records)
    an = analyzer(True)
    hard: set[bytes] = set()  # recipients of a hard suppression event
    for record, label, line in records:
        events = _observe(an, record, label, line)[2]
        hard.update(key for key, value in events if b'"h":' in value)
    assert hard and not hard & {b"ok@gmail.com", b"kept@gmail.com"}


texts = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "<A@B.C>", "X@Gmail.COM"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 700), texts, st.lists(texts))
event_times = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T12:00:00.055102736Z",
            "2026-01-01T12:00:00.955Z",
            "2026-01-01T12:00:01Z",
            "2026-01-01T12:01:59.5Z",
            "2026-01-01T12:00:00+02:00",
            "2026-02-30T12:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2026-01-01T12:00:60Z",
            "Z",
        ]
    ),
    scalars,
)
sites = st.one_of(
    st.sampled_from(
        [
            "",
            "(alt1|alt2)?.gmail-smtp-in.l.google.com",
            "mx.example.net",
            "src->yahoo.com.mx",
            "mx1.hotmail.com|mx2.hotmail.com",
        ]
    ),
    scalars,
)
recipients = st.one_of(
    st.sampled_from(
        ["a@gmail.com", "B@Example.NET", " c@yahoo.com ", "<d@outlook.com>", "e@ünï.de", "f"]
    ),
    st.lists(st.sampled_from(["a@gmail.com", "g@aol.com", "B@Example.NET"]), max_size=3),
    scalars,
)
records = st.fixed_dictionaries(
    {
        "type": st.one_of(
            st.sampled_from([*RECORD_TYPES, "Delivery", "Delivery", "Bounce", "Custom"])
        ),
    },
    optional={
        "event_time": event_times,
        "timestamp": st.one_of(st.integers(1_700_000_000, 1_800_000_000), scalars),
        "site": sites,
        "recipient": recipients,
        "queue": st.one_of(
            st.sampled_from(["camp:tenant1@gmail.com", "tenant2@yahoo.com", "plain"]), scalars
        ),
        "meta": st.one_of(
            st.fixed_dictionaries({}, optional={"tenant": st.one_of(texts, scalars)}), scalars
        ),
        "egress_pool": st.one_of(st.sampled_from(["pool-a", "pool-b"]), scalars),
        "egress_source": st.one_of(st.sampled_from(["ip-1", "ip-2"]), scalars),
        "peer_address": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.one_of(
                        st.sampled_from(["mta7.am0.yahoodns.net", "mx.unknown.example"]), scalars
                    )
                },
            ),
            scalars,
        ),
        "response": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"code": st.one_of(st.integers(-700, 700), scalars)}
            ),
            scalars,
        ),
        "feedback_report": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "feedback_type": st.sampled_from(["abuse", "fraud", "x-new", ""]),
                    "supplemental_trace": st.fixed_dictionaries(
                        {}, optional={"recipient": recipients, "tenant": texts}
                    ),
                },
            ),
            scalars,
        ),
    },
)
observations = st.tuples(
    records.map(lambda r: orjson.loads(orjson.dumps(r))),  # what the decoder hands over
    st.sampled_from(LABELS),
    st.one_of(st.none(), st.sampled_from(["", "550 5.1.1 user unknown", "451 try later 10.0.0.1"])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(observations, min_size=1, max_size=60))
def test_any_records_count_alike(items: list[tuple[dict[str, Any], str | None, Any]]) -> None:
    _assert_same(items)


@pytest.mark.parametrize(
    "event_time", ["1969-12-31T23:59:59.999Z", "2026-01-01T00:00:59.001Z", "2026-06-30T23:59:60Z"]
)
def test_window_starts_match_at_the_edges(event_time: str) -> None:
    """Before 1970 the window start needs Python's floor modulo; a leap second takes Python."""
    record = {"type": "Delivery", "event_time": event_time, "site": "mx.example.net"}
    _assert_same([(dict(record, recipient=f"u{i}@example.net"), None, None) for i in range(6)])


@pytest.mark.parametrize("fast", [True, False])
def test_a_pool_or_source_that_is_no_string_counts_as_empty(fast: bool) -> None:
    """A list or object there once raised in the tally (unhashable) and stopped the batch."""
    an = analyzer(fast)
    odd = {"type": "Reception", "event_time": "2026-01-01T12:00:00.1Z", "recipient": "a@b.c"}
    for pool, source in (([1, 2], {"x": 1}), ({"y": 2}, ["z"]), (None, 7)):
        an.observer(
            dict(odd, egress_pool=pool, egress_source=source), "Reception", None, None, None
        )
    [(key, counts)] = an.aggregator.finish().items()
    assert key[2:4] == ("", "") and counts.counts == {"Reception": 3}


def test_long_and_non_ascii_key_values_count_alike() -> None:
    """Pool and source values of every string width (1, 2 and 4 bytes a character), and long
    ones, count under the same keys on both paths."""
    base = {"type": "Delivery", "event_time": "2026-01-01T12:00:00.1Z", "site": "mx.example.net"}
    pools = ["", "é", "€uro", "😀", "pool-" + "x" * 5000, "é", "😀", "pool-" + "x" * 5000, "€uro"]
    records = [
        (
            dict(base, recipient=f"u{i}@example.net", egress_pool=pool, egress_source=pool[:9]),
            None,
            None,
        )
        for i, pool in enumerate(pools * 3)
    ]
    _assert_same(records)
    an = analyzer(True)
    for record, _, _ in records:
        an.observer(record, "Delivery", None, None, None)
    counts = {key[2]: c.counts["Delivery"] for key, c in an.aggregator.finish().items()}
    assert counts == {pool: 3 * pools.count(pool) for pool in pools}


def test_suppression_events_alike_and_deliveries_stay_in_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hard bounces and deliveries: the same events on both paths; a delivery to a plain
    address with a usual time never reaches the Python path (a hard bounce always does)."""
    site = {"site": "mx.example.net", "response": {"code": 550}}
    times = ["2026-01-01T12:00:00.5Z", "2026-01-01T12:00:01Z", "2026-01-01T11:59:59.123456789Z"]
    records: list[tuple[dict[str, Any], str | None, str | None]] = []
    for i in range(60):
        address = f"User{i % 55}@Example.net"
        t = times[i % 3]
        records.append(
            (
                {"type": "Bounce", "recipient": address, "event_time": t, **site},
                "InvalidRecipient",
                "550 no",
            )
        )
        records.append(
            (
                {"type": "OOB", "recipient": address.lower(), "event_time": t, **site},
                "InvalidRecipient",
                None,
            )
        )
        if i % 4 == 0:
            records.append(
                ({"type": "Delivery", "recipient": address, "event_time": t, **site}, None, None)
            )
    _assert_same(records)

    calls: list[str] = []
    original = Analyzer._suppress

    def spy(self: Analyzer, record: Any, *args: Any) -> Any:
        calls.append(record["type"])
        return original(self, record, *args)

    monkeypatch.setattr(Analyzer, "_suppress", spy)
    fast = Analyzer(
        CATEGORIES, PROVIDERS, BatchAggregator(60), SuppressionEvents(), lambda: NOW, fast=True
    )
    for record, label, line in records:  # the caches learn the records' site and times
        _observe(fast, dict(record), label, line)
    calls.clear()
    writes = [
        w for record, label, line in records for w in _observe(fast, dict(record), label, line)[2]
    ]
    assert set(calls) == {"Bounce", "OOB"}
    delivered = [v for _, v in writes if b'"h"' not in v]
    assert len(delivered) == 15 and delivered[0] == b'{"t":1767268800500}'


def test_complaints_and_oobs_count_alike_and_suppress_through_python() -> None:
    """A report of a suppressing type and every OOB go to the Python path (their events and an
    OOB's tenant are made there); a not-spam report stays in C and suppresses nobody."""
    import kumomta_records as kr

    records = [
        _labelled(r)
        for r in (
            kr.feedback(1, "c@yahoo.com", "abuse"),
            kr.feedback(2, "d@yahoo.com", "not-spam"),
            kr.feedback(3, "e@yahoo.com", "fraud", tenant="beta"),
            kr.oob(4, "f@gmail.com", meta={"tenant": "acme"}),
            kr.oob(5, "g@gmail.com"),
        )
    ]
    _assert_same(records)
    an = analyzer(True)
    keys = [[k for k, _ in _observe(an, r, label, line)[2]] for r, label, line in records]
    assert keys == [[b"c@yahoo.com"], [], [b"e@yahoo.com"], [b"f@gmail.com"], [b"g@gmail.com"]]
    tenants = {(key[4], c.counts.get("OOB", 0)) for key, c in an.aggregator.finish().items()}
    assert ("acme", 1) in tenants and ("", 1) in tenants  # the meta's, else none (not the queue's)
