"""The native record path (``streamer._native``) decides, enriches and counts exactly like Python.

Two pipelines over the same classifier, one forced onto the Python path (the reference) and one
onto the native path, must give the same outputs in the same order (topic, key, headers, and a
value that decodes to the same record with its keys in the same order; byte for byte when the
input is compact JSON, as orjson writes it), the same dead-letter reasons and the same counts:
on generated records, on a corpus of hostile messages, and on the bundled sample. With
analytics on (each pipeline with its own analyzer), also the same suppression events and the
same folded tally: the same windowed rows in the same order, gaps, complaints and watermark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from system_tools import lacking

from streamer import native
from streamer.analytics.analyzer import Analyzer
from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppressions import SuppressionEvents
from streamer.classifier import Classifier, ReloadableClassifier
from streamer.config import shipped_rule_files
from streamer.devkit.sample import generate
from streamer.pipeline import BatchStats, Output, Pipeline
from streamer.records import CLASSIFIABLE_TYPES, RECORD_TYPES

RULES = Path(__file__).with_name("fast_path_rules.toml")
NOW = 1_767_268_800.25
MAX_BYTES = 4096


@pytest.fixture(autouse=True)
def _built() -> None:
    """Every test here needs the extension: skip without it, fail on CI (``CI=true``)."""
    if not native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")


CATEGORIES = CategoryTable.shipped()
PROVIDERS = ProviderMatcher.shipped()


def analyzer(cache_size: int = 16) -> Analyzer:
    """An analyzer of its own for one pipeline (small caches: emptied while a test runs)."""
    return Analyzer(
        CATEGORIES,
        PROVIDERS,
        BatchAggregator(window_s=60, pool_capacity=3, tenant_capacity=3, gap_capacity=4),
        SuppressionEvents(),
        clock=lambda: NOW,
        cache_size=cache_size,
    )


def pipelines(
    *rules: Path,
    analytics: bool = False,
    classifiers: ReloadableClassifier | None = None,
    events_partitions: int = 0,
    **opts: Any,
) -> tuple[Pipeline, Pipeline]:
    """(reference, native) over one classifier, so that both see the same rule set; with
    ``events_partitions``, a batch's deliveries go in one record per partition."""
    classifiers = classifiers or ReloadableClassifier(rules or [RULES], **opts)
    made = [
        Pipeline(
            classifiers,
            output_topic="out",
            dlq_topic="dlq",
            non_classifiable=route,
            max_message_bytes=MAX_BYTES,
            clock=lambda: NOW,
            native=use_native,
            analyzer=analyzer() if analytics else None,
            suppression_events_topic="supp",
            events_partitions=events_partitions,
        )
        for use_native, route in ((False, "pass"), (True, "pass"))
    ]
    return made[0], made[1]


REFERENCE, NATIVE = pipelines()
COUNTED = pipelines(analytics=True)
BATCHED = pipelines(analytics=True, events_partitions=3)  # a batch's deliveries per partition


def _messages(raws: list[bytes | None]) -> list[Message]:
    return [
        Message(topic="in", partition=1, offset=i, key=b"k%d" % i, value=raw, headers=None)
        for i, raw in enumerate(raws)
    ]


def _compact(raw: bytes | None) -> bool:
    try:
        return raw == orjson.dumps(orjson.loads(raw or b""))
    except orjson.JSONDecodeError:
        return False


def _same_value(expected: bytes | None, got: bytes | None, raw: bytes | None) -> None:
    if expected == got:
        return
    assert expected is not None and got is not None, (expected, got)
    assert not _compact(raw), f"compact input, other bytes:\n{expected!r}\n{got!r}"
    want, have = orjson.loads(expected), orjson.loads(got)
    assert have == want
    assert list(have) == list(want)  # the same keys in the same order


def _same_stats(expected: BatchStats, got: BatchStats) -> None:
    assert got.events_in == expected.events_in
    assert got.events_out == expected.events_out
    assert got.dlq == expected.dlq
    assert got.dropped == expected.dropped
    assert got.sites == expected.sites
    assert len(got.classify_seconds) == len(expected.classify_seconds)


def assert_same(
    raws: list[bytes | None], pair: tuple[Pipeline, Pipeline] = (REFERENCE, NATIVE)
) -> list[Output]:
    reference, native_pipeline = pair
    messages = _messages(raws)
    expected, expected_stats = reference.process(messages)
    got, got_stats = native_pipeline.process(messages)
    assert [(o.topic, o.key, o.headers) for o in got] == [
        (o.topic, o.key, o.headers) for o in expected
    ]
    by_key = {b"k%d" % i: raw for i, raw in enumerate(raws)}
    for want, have in zip(expected, got, strict=True):
        _same_value(want.value, have.value, by_key.get(want.key or b""))
    _same_stats(expected_stats, got_stats)
    if reference.analyzer is not None:
        assert _folded(native_pipeline) == _folded(reference)
    return got


def _folded(pipeline: Pipeline) -> tuple[Any, ...]:
    """What the analytics of the batches so far fold into: the rows in order (their counts,
    labels, categories, feedback, complaints and gaps), and the watermark."""
    assert pipeline.analyzer is not None
    aggregator = pipeline.analyzer.aggregator
    return list(aggregator.finish().items()), aggregator.watermark


# --- generated records -----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
small = st.one_of(st.integers(0, 9), st.booleans(), st.text(max_size=2), st.none(), st.floats())
enhanced = st.one_of(
    scalars,
    st.fixed_dictionaries({"class": small, "subject": small, "detail": small}),
    st.fixed_dictionaries({"class": st.integers(2, 5), "subject": st.integers(0, 7)}),
)
contents = st.one_of(
    st.sampled_from(
        ["user unknown", "Mailbox FULL", "no such user", "", "weird\r\nline\rx\ny", "é ü \u2028"]
    ),
    st.text(max_size=20),
    scalars,
)
response = st.one_of(
    scalars,
    st.fixed_dictionaries(
        {"code": st.one_of(st.integers(200, 599), scalars), "content": contents},
        optional={"enhanced_code": enhanced, "command": st.text(max_size=4)},
    ),
)
types = st.one_of(
    st.sampled_from(sorted(CLASSIFIABLE_TYPES | {"Delivery", "Reception", "Other"})), scalars
)
records = st.fixed_dictionaries(
    {"type": types},
    optional={
        "response": response,
        "site": st.one_of(st.sampled_from(["", "mx.example"]), scalars),
        "reception_protocol": st.one_of(st.sampled_from(["LogRecord", "ESMTP"]), scalars),
        "bounce_classification": scalars,
        "classification": st.one_of(scalars, st.dictionaries(st.text(max_size=3), scalars)),
        "nested": st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=8),
        "feedback_report": st.fixed_dictionaries({"feedback_type": st.text(max_size=6)}),
    },
)


def _spellings(record: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """One record as orjson writes it and as other writers may (spaces, ASCII escapes; json
    also writes integers beyond 64 bits and NaN, which orjson would not)."""
    return st.sampled_from(
        [
            json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode(),
            json.dumps(record).encode(),  # ", " and ": ", non-ASCII escaped
            json.dumps(record, indent=2, ensure_ascii=False).encode() + b"\n",
        ]
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records.flatmap(_spellings), min_size=1, max_size=6))
def test_generated_records(raws: list[bytes]) -> None:
    assert_same(list(raws))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), st.none()), min_size=1, max_size=4))
def test_arbitrary_bytes(raws: list[bytes | None]) -> None:
    assert_same(raws)


# --- generated records, analytics on ---------------------------------------------------------

event_times = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T10:00:05Z",
            "2026-01-01T10:00:05.123456Z",
            "2026-01-01T10:00:59.9Z",
            "2026-01-01T10:01:00.5Z",
            "2026-01-01T09:59:59.999Z",
            "2026-01-01T10:00:60Z",  # a leap second: no datetime (the timestamp's, else now)
            "2026-02-30T10:00:00Z",  # no such day
            "2026-01-01T10:00:05.Z",
            "2026-01-01T10:00:05+00:00",
            "2026-01-01 10:00:05Z",
            "2026-01-01t10:00:05z",
            "2026-01-01T10:00:05.12xZ",
            "1969-12-31T23:59:59.9Z",
            "",
        ]
    ),
    st.datetimes(timezones=st.none()).map(lambda d: d.isoformat() + "Z"),
    scalars,
)
addresses = st.one_of(
    st.sampled_from(
        [
            "a@gmail.com",
            " <B@Example.COM> ",
            "c@outlook.com",
            "d@yahoo.com",
            "nobody",
            "",
            "<>",
            "x@y@hotmail.com",
            "é@gmail.com",
            "\x1cz@gmail.com\x1f",
            "\u00a0n@gmail.com",
        ]
    ),
    st.text(max_size=6),
)
recipients = st.one_of(addresses, st.lists(st.one_of(addresses, scalars), max_size=3), scalars)
sites = st.one_of(
    st.sampled_from(["", "gmail-smtp-in.l.google.com", "mx.example", "mta5.am0.yahoodns.net"]),
    scalars,
)
peers = st.one_of(
    st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["", "x.mail.protection.outlook.com", "mx.x"]), scalars)}
    ),
    scalars,
)
queues = st.one_of(
    st.sampled_from(["camp:acme@x.com", "beta@y.com", "plain", ":@", "a:b:c@d"]), scalars
)
counted_types = st.sampled_from(
    [
        *("Delivery", "Bounce", "TransientFailure", "Expiration", "AdminBounce", "OOB"),
        *("Rejection", "Reception", "Feedback", "Delayed", "Odd"),
    ]
)
contents = st.sampled_from(
    [
        "user unknown",
        "Mailbox FULL",
        "weird thing 42",
        'no such user "x\\y" \x01\x7f é',
        "The email account that you tried to reach does not exist.",
        "",
    ]
)
#: A Rejection's refused address is in its command (``records.rejected_recipient``).
commands = st.one_of(
    st.sampled_from(
        [
            "RCPT TO:<a@gmail.com>",
            "rcpt to: <B@Yahoo.COM> NOTIFY=NEVER",
            "  RCPT\tTO :\x1c c@outlook.com x",
            "RCPT TO:<@relay.example:d@gmail.com>",
            "RCPT TO:<@relay.example>",
            "RCPT TO:< e@gmail.com ",
            "RCPT TO:<>",
            "RCPT TO:",
            "RCPTTO:<a@gmail.com>",
            "RCPT TO <a@gmail.com>",
            "MAIL FROM:<s@x.com>",
            "RCPT TO:<é@gmail.com>",
            "RCPT\u00a0TO:<a@gmail.com>",
        ]
    ),
    st.text(max_size=12),
    scalars,
)
senders = st.one_of(
    st.sampled_from(
        [
            "s@sender.example",
            " <S@Sender.EXAMPLE> ",
            "nobody",
            "a@b@C.example",
            "x@",
            "<>",
            "é@sender.example",
            "s@sénder.example",
            "\x1fs@sender.example\x1c",
        ]
    ),
    scalars,
)
#: Feedback-Types as reports spell them (and do not): the native path reads the ASCII ones.
feedback_types = st.one_of(
    st.sampled_from(
        ["abuse", "not-spam", "fraud", " Abuse_", "OPT-OUT list", "opt_out", "x", "", " - ", "é"]
    ),
    st.text(max_size=6),
    scalars,
)
counted_records = st.fixed_dictionaries(
    {
        "type": counted_types,
        "event_time": event_times,
        "response": st.fixed_dictionaries(
            {
                "code": st.one_of(st.sampled_from([250, 421, 550, 554, -550]), scalars),
                "content": contents,
            },
            optional={
                "enhanced_code": st.just({"class": 5, "subject": 1, "detail": 1}),
                "command": commands,
            },
        ),
    },
    optional={
        "timestamp": st.one_of(st.none(), st.integers(0, 2**40), st.floats(allow_nan=False)),
        "recipient": recipients,
        "site": sites,
        "peer_address": peers,
        "queue": queues,
        "meta": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"tenant": st.one_of(st.sampled_from(["acme", "", "ü"]), scalars)}
            ),
            scalars,
        ),
        "egress_pool": st.one_of(st.sampled_from(["p1", "p2", "p3", "p4"]), scalars),
        "egress_source": st.one_of(st.sampled_from(["s1", "s2"]), scalars),
        "reception_protocol": st.sampled_from(["ESMTP", "LogRecord"]),
        "sender": senders,
        "feedback_report": st.one_of(
            st.fixed_dictionaries(
                {"feedback_type": feedback_types},
                optional={
                    "supplemental_trace": st.one_of(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "recipient": addresses,
                                "tenant": st.one_of(st.sampled_from(["acme", "", "ü"]), scalars),
                            },
                        ),
                        scalars,
                    ),
                    "original_rcpto_to": st.one_of(
                        st.lists(st.one_of(addresses, scalars), max_size=2), scalars
                    ),
                    "original_mail_from": senders,
                },
            ),
            scalars,
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(counted_records.flatmap(_spellings), min_size=1, max_size=12),
    st.sampled_from([0, 1, 3]),
)
def test_generated_records_with_analytics(raws: list[bytes], events_partitions: int) -> None:
    fresh = pipelines(
        analytics=True, classifiers=COUNTED[0].classifiers, events_partitions=events_partitions
    )  # failures shrink
    assert_same(list(raws), fresh)


def test_a_delivery_without_a_timestamp_suppresses_at_its_event_time() -> None:
    """``event_time`` is the event's time (``windows.event_time_ms``): ``timestamp`` only
    stands in when it does not parse, and the worker's clock when neither does. Both paths
    make the same event (the C counter this path replaced once made none where Python made
    one)."""
    delivery = {"type": "Delivery", "recipient": "A@x.com", "timestamp": None}
    raws = [
        orjson.dumps({**delivery, "event_time": "2026-01-01T10:00:05.25Z"}),
        orjson.dumps({**delivery, "event_time": "2026-01-01T10:00:60Z"}),
        orjson.dumps({**delivery, "event_time": "2026-01-01T10:00:60Z", "timestamp": 7.5}),
    ]
    pair = pipelines(analytics=True)
    got = assert_same(raws, pair)
    events = [(o.key, orjson.loads(o.value or b"")) for o in got if o.topic == "supp"]
    assert events == [
        (b"a@x.com", {"p": 1, "o": 0, "t": 1_767_261_605_250}),
        (b"a@x.com", {"p": 1, "o": 1, "t": int(NOW * 1000)}),
        (b"a@x.com", {"p": 1, "o": 2, "t": 7500}),
    ]
    assert pair[1].native is not None
    answers = pair[1].native.decide(raws)  # the native path counts what has an event time
    assert [a if a is None else a[0] for a in answers] == ["Delivery", None, None]


def _answered(pair: tuple[Pipeline, Pipeline], raws: list[bytes]) -> list[bool]:
    """Whether the native path of ``pair`` decides each record itself (after a fresh run)."""
    native_records = pair[1].native
    assert native_records is not None
    return [a is not None for a in native_records.decide(raws)]


def test_hard_bounces_and_oobs_suppress_natively() -> None:
    """A hard Bounce's and a hard OOB's events (rule, response line, provider, tenant, sender
    domain; an OOB's tenant from its own meta key) are the Python path's, made natively."""
    bounce = {
        "type": "Bounce",
        "event_time": "2026-01-01T10:00:05.5Z",
        "response": {"code": 550, "content": 'user unknown "x\\y"\x01'},
        "recipient": [" <A@Gmail.com> ", "b@x.com", 7],
        "sender": "<S@Sender.Example>",
        "queue": "camp:acme@gmail.com",
    }
    oob = {**bounce, "type": "OOB", "meta": {"vt": "beta"}, "recipient": "c@x.com"}
    rejection = {**bounce, "type": "Rejection"}
    rejection["response"] = {**bounce["response"], "command": "RCPT TO:<d@outlook.com>"}
    raws = [orjson.dumps(r) for r in (bounce, oob, rejection)]
    classifiers = ReloadableClassifier([RULES])
    pair = (
        _counting_pipeline(classifiers, False, oob_meta="vt"),
        _counting_pipeline(classifiers, True, oob_meta="vt"),
    )
    got = assert_same(raws, pair)
    assert _answered(pair, raws) == [True, True, True]
    events = [(o.key, orjson.loads(o.value or b"")) for o in got if o.topic == "supp"]
    rule = {"file": str(RULES), "label": "InvalidRecipient", "index": 0, "pattern": "user unknown"}
    details = {
        "label": "InvalidRecipient",
        "rule": rule,
        "response": '550 user unknown "x\\y"\x01',
        "provider": "google",
        "tenant": "acme",
        "sender_domain": "sender.example",
    }
    oob_details = {"provider": "other", "tenant": "beta"}
    t = 1_767_261_605_500
    assert events == [
        (b"a@gmail.com", {"p": 1, "o": 0, "t": t, "h": details}),
        (b"b@x.com", {"p": 1, "o": 0, "t": t, "h": details}),
        (b"c@x.com", {"p": 1, "o": 1, "t": t, "k": "oob", "h": {**details, **oob_details}}),
    ]


def test_feedback_reports_are_labelled_counted_and_suppress_natively() -> None:
    """A Feedback record is labelled by its ARF report, counted under its complainer's provider
    and tenant, and a suppressing report (abuse) makes the complaint event the Python path
    makes: the complainer's key, the report's tenant, the complained-of sender's domain."""
    report = {
        "feedback_type": " Abuse",
        "supplemental_trace": {"recipient": " <Cat@Yahoo.com> ", "tenant": "acme"},
        "original_mail_from": "<News@Mail.Example.NET>",
    }
    base = {
        "type": "Feedback",
        "event_time": "2026-01-01T10:00:05.5Z",
        "response": {"code": 250, "content": "ok"},
        "recipient": "fbl@feedback.example",
    }
    raws = [
        orjson.dumps({**base, "feedback_report": report}),
        orjson.dumps({**base, "feedback_report": {**report, "feedback_type": "not-spam"}}),
        orjson.dumps({**base, "feedback_report": {**report, "feedback_type": "abusé"}}),
    ]
    pair = pipelines(analytics=True)
    got = assert_same(raws, pair)
    assert _answered(pair, raws) == [True, True, False]  # a non-ASCII type: Python's way
    events = [(o.key, orjson.loads(o.value or b"")) for o in got if o.topic == "supp"]
    assert events == [
        (
            b"cat@yahoo.com",
            {
                "p": 1,
                "o": 0,
                "t": 1_767_261_605_500,
                "h": {
                    "label": "FeedbackAbuse",
                    "rule": None,
                    "response": None,
                    "provider": "yahoo",
                    "tenant": "acme",
                    "sender_domain": "mail.example.net",
                    "feedback_type": "abuse",
                },
                "k": "complaint",
            },
        )
    ]
    enriched = [orjson.loads(o.value or b"") for o in got if o.topic == "out"]
    assert [e["bounce_classification"] for e in enriched] == [
        "FeedbackAbuse",
        "FeedbackNotSpam",
        "FeedbackOther",
    ]
    assert {e["classification"]["provider"] for e in enriched} == {"yahoo"}


def test_oobs_take_the_python_path_when_tally_and_events_read_other_tenants() -> None:
    oob = {
        "type": "OOB",
        "event_time": "2026-01-01T10:00:05Z",
        "response": {"code": 550, "content": "user unknown"},
        "recipient": "c@x.com",
        "meta": {"tenant": "a", "vt": "b"},
    }
    classifiers = ReloadableClassifier([RULES])
    pair = (
        _counting_pipeline(classifiers, False, oob_meta="vt", events_meta="tenant"),
        _counting_pipeline(classifiers, True, oob_meta="vt", events_meta="tenant"),
    )
    raws = [orjson.dumps(oob)]
    assert_same(raws, pair)
    assert _answered(pair, raws) == [False]


def _counting_pipeline(
    classifiers: ReloadableClassifier, use_native: bool, oob_meta: str, events_meta: str = ""
) -> Pipeline:
    counting = Analyzer(
        CATEGORIES,
        PROVIDERS,
        BatchAggregator(window_s=60, oob_tenant_meta=oob_meta),
        SuppressionEvents(oob_tenant_meta=events_meta or oob_meta),
        clock=lambda: NOW,
    )
    return Pipeline(
        classifiers,
        output_topic="out",
        dlq_topic="dlq",
        clock=lambda: NOW,
        native=use_native,
        analyzer=counting,
        suppression_events_topic="supp",
    )


class _FarMessage:
    """A message at an offset beyond 64 bits: the native path cannot read it (Python can)."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


def test_a_failed_native_slice_is_counted_once_by_the_python_path() -> None:
    """When the native call fails mid-slice (here: an offset it cannot read), the whole slice
    takes the Python path, and what the native path had counted of it is forgotten: a record
    under a new key (waiting for its turn) and one under a key counted before (counted at once)."""
    delivery = orjson.dumps(
        {"type": "Delivery", "event_time": "2026-01-01T10:00:05Z", "recipient": "a@x.com"}
    )
    other = orjson.dumps(
        {"type": "Delivery", "event_time": "2026-01-01T10:00:05Z", "recipient": "b@y.org"}
    )
    messages = [_FarMessage(delivery, 1), _FarMessage(other, 2), _FarMessage(delivery, 2**70)]
    reference, native_pipeline = pipelines(analytics=True)
    before = [_FarMessage(delivery, 0)]  # its key is counted before the failing slice
    assert native_pipeline.process(before) == reference.process(before)
    expected, _ = reference.process(messages)
    got, _ = native_pipeline.process(messages)
    assert got == expected
    after = [_FarMessage(delivery, 3)]  # the next slice: nothing of the failed one is left
    assert native_pipeline.process(after) == reference.process(after)
    assert _folded(native_pipeline) == _folded(reference)
    assert [o.value for o in got if o.topic == "supp"][2] == b'{"p":1,"o":%d,"t":1767261605000}' % (
        2**70
    )


# --- hostile messages ------------------------------------------------------------------------

BOUNCE = b'{"type":"Bounce","response":{"code":550,"content":"user unknown"}'
HOSTILE: list[bytes | None] = [
    None,
    b"",
    b"\x00",
    BOUNCE + b',"x":"a\x00b"}',  # a raw NUL in a string: not JSON
    BOUNCE + b',"x":"a\\u0000b"}',  # an escaped one: fine
    BOUNCE + b',"x":' + b"[" * 127 + b"]" * 127 + b"}",
    BOUNCE + b',"x":' + b"[" * 200 + b"]" * 200 + b"}",  # deeper than serde_json's limit
    BOUNCE + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",  # deeper than orjson's
    BOUNCE + b',"x":"\\ud800"}',  # lone surrogates
    BOUNCE + b',"x":"\\udc00\\ud800"}',
    BOUNCE + b',"x":"\\ud83d\\ude00"}',  # a pair: fine
    BOUNCE + b',"x":123456789012345678901234567890}',  # huge numbers
    BOUNCE + b',"x":1e400}',
    BOUNCE + b',"x":1e-400}',
    BOUNCE + b',"x":-0.0,"y":-0,"z":1E5}',
    b'{"type":"Bounce","response":{"code":5500000000000000000000,"content":"x"}}',
    b'{"type":"Bounce","response":{"code":550.0,"content":"x"}}',
    b'{"type":"Bounce","response":{"code":-550,"content":"user unknown"}}',
    b"\xef\xbb\xbf" + BOUNCE + b"}",  # a BOM
    BOUNCE + b',"x":"\xff"}',  # not UTF-8
    BOUNCE + b',"x":"\xed\xa0\x80"}',  # a surrogate encoded in UTF-8: not UTF-8
    BOUNCE + b',"type":"Delivery"}',  # duplicate keys
    b'{"type":"Bounce","response":{"code":550,"code":421,"content":"user unknown"}}',
    BOUNCE + b',"bounce_classification":"a","bounce_classification":"b"}',
    BOUNCE + b',"x":{"k":1,"k":2}}',
    b' \t\r\n{ "type" : "Bounce" , "response" : { "code" : 550 , "content" : "user unknown" } } \n',
    b'{"t\\u0079pe":"Bounce","response":{"code":550,"content":"user\\u0020unknown\\n\\/x"}}',
    BOUNCE + b',"bounce\\u005fclassification":"Old","classification":null}',
    b'{"classification":{"a":1},"type":"Rejection","response":{"code":550,"content":"x"}}',
    b'{"type":"Bounce","reception_protocol":"Log\\u0052ecord"}',
    b'{"type":"Feedback","feedback_report":{"feedback_type":"abuse"}}',
    b'{"type":"Bounce","response":{"code":550,"enhanced_code":{},"content":"x"}}',
    b'{"type":"Bounce","response":{"code":550,"enhanced_code":{"class":5,"subject":1,'
    b'"detail":1,"class":4},"content":"x"}}',
    b'{"type":"Bounce","response":{"code":550,"enhanced_code":{"class":true,"subject":1,'
    b'"detail":1},"content":"x"}}',
    BOUNCE + b"} x",  # trailing garbage
    BOUNCE + b"}}",
    BOUNCE + b",}",  # trailing comma
    b'{"type":"Bounce","response":{"code":550,"content":"x"},"x":NaN}',
    b"[" + BOUNCE + b"}]",
    b'"just a string"',
    # an event time that does not parse, and a timestamp beyond any date (once an overflow)
    b'{"type":"Delivery","event_time":"x","recipient":"a@b.c","timestamp":1.7976931348623157e308}',
    b'{"type":"Delivery","event_time":"x","recipient":"a@b.c","timestamp":' + b"9" * 300 + b"}",
    BOUNCE + b',"pad":"' + b"x" * MAX_BYTES + b'"}',  # too large
]


@pytest.mark.parametrize(
    "pair", [(REFERENCE, NATIVE), COUNTED, BATCHED], ids=["plain", "analytics", "batched"]
)
def test_hostile_messages(pair: tuple[Pipeline, Pipeline]) -> None:
    got = assert_same(HOSTILE, pair)
    assert len([o for o in got if o.topic != "supp"]) == len(HOSTILE)  # none lost


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_message_alone(raw: bytes | None) -> None:
    assert_same([raw])
    assert_same([raw], COUNTED)
    assert_same([raw], BATCHED)


# --- the bundled sample ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analytics", "events_partitions"),
    [(False, 0), (True, 0), (True, 5)],
    ids=["plain", "analytics", "batched"],
)
def test_bundled_sample_with_malformed_messages(analytics: bool, events_partitions: int) -> None:
    pair = pipelines(
        *shipped_rule_files(),
        analytics=analytics,
        cache_size=64,
        uncategorized_cache_size=16,
        events_partitions=events_partitions,
    )  # caches overflow
    raws = [m.value for m in generate(3000, seed=7, malformed_fraction=0.05)]
    for start in range(0, len(raws), 500):
        assert_same(raws[start : start + 500], pair)
    classified = pair[1].native
    assert classified is not None
    answers = classified.decide(raws)
    # Python's way only for what the native path leaves to it: the malformed ones (with
    # analytics also log hook records and the rare odd ones); Feedback reports are its own
    python_way = [raw for raw, a in zip(raws, answers, strict=True) if a is None]
    assert 0 < len(python_way) < len(raws) * 0.08  # 5% malformed
    reports = [raw for raw in raws if _decodes(raw) and b'"type":"Feedback"' in (raw or b"")]
    left = [raw for raw in python_way if raw in reports]
    assert len(reports) > 50 and len(left) < len(reports) * 0.1  # (malformed ones)


def _decodes(raw: bytes | None) -> bool:
    try:
        return type(orjson.loads(raw or b"")) is dict
    except orjson.JSONDecodeError:
        return False


# --- caches, reloads, counters ---------------------------------------------------------------


def test_native_caches_are_bounded_like_the_classifier() -> None:
    classifier = Classifier.from_files([RULES], cache_size=8, uncategorized_cache_size=4)
    records = native.NativeRecords(classifier, MAX_BYTES)
    raws = [
        orjson.dumps({"type": "Bounce", "response": {"code": 550, "content": f"{word} {i}"}})
        for i in range(100)
        for word in ("user unknown", "something else")
    ]
    answers = records.decide(raws)
    assert {a[2] for a in answers if isinstance(a, tuple)} == {"InvalidRecipient", "Uncategorized"}
    assert records._path.cache_sizes() == (8, 4)


def test_cache_hits_are_counted_on_the_classifier() -> None:
    classifier = Classifier.from_files([RULES])
    records = native.NativeRecords(classifier, MAX_BYTES)
    raw = orjson.dumps({"type": "Bounce", "response": {"code": 550, "content": "user unknown"}})
    records.decide([raw, raw, raw])
    stats = classifier.cache_stats()["categorized"]
    assert (stats["hits"], stats["misses"]) == (2, 1)


def test_a_reload_starts_a_new_native_path(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n', encoding="utf-8")
    reference, native_pipeline = pair = pipelines(rules)
    raw = orjson.dumps({"type": "Bounce", "response": {"code": 550, "content": "user unknown"}})
    assert_same([raw], pair)
    first = native_pipeline.native
    rules.write_text('[rules]\nQuotaIssues = ["user unknown"]\n', encoding="utf-8")
    reference.classifiers.reload()
    (output,) = assert_same([raw], pair)
    assert native_pipeline.native is not first
    assert orjson.loads(output.value or b"")["bounce_classification"] == "QuotaIssues"


def test_analytics_take_the_native_path() -> None:
    from streamer.config import Settings

    pipeline = Pipeline(
        ReloadableClassifier([RULES]),
        output_topic="out",
        dlq_topic="dlq",
        analyzer=Analyzer.from_settings(Settings()),
    )
    assert native.describe(pipeline.use_native) == "native"
    assert native.describe(REFERENCE.use_native) == "python"


# --- a missing extension ---------------------------------------------------------------------

WITHOUT_NATIVE = "import sys; sys.modules['streamer._native'] = None\n"


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_NATIVE + code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_without_the_extension_the_python_path_runs() -> None:
    done = _python("from streamer import native; print(native.AVAILABLE); native.check_required()")
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr


def test_required_extension_missing_is_an_error() -> None:
    done = _python(
        "from streamer import native; native.check_required()", STREAMER_REQUIRE_NATIVE="1"
    )
    assert done.returncode == 1
    assert "NativeMissing: STREAMER_REQUIRE_NATIVE=1 but the native record path" in done.stderr


def test_worker_refuses_to_start_without_a_required_extension(tmp_path: Path) -> None:
    done = _python(
        "from streamer.cli import main; sys.argv = ['streamer', 'worker']; main()",
        STREAMER_REQUIRE_NATIVE="1",
        HOME=str(tmp_path),
    )
    assert done.returncode == 2
    assert done.stderr == f"configuration error: STREAMER_REQUIRE_NATIVE=1 but {native.MISSING}\n"


def test_the_native_path_knows_the_same_record_types() -> None:
    records = native.NativeRecords(Classifier.from_files([RULES]), MAX_BYTES)
    content = {"code": 550, "content": "user unknown"}
    raws = [orjson.dumps({"type": t, "response": content}) for t in RECORD_TYPES]
    for rtype, answer in zip(RECORD_TYPES, records.decide(raws), strict=True):
        if rtype in CLASSIFIABLE_TYPES:  # a Feedback record without a report by its line too
            assert isinstance(answer, tuple) and answer[1:3] == (rtype, "InvalidRecipient")
        else:
            assert answer == rtype
    # a Feedback record with a report: labelled by it, natively
    report = {"feedback_type": " Abuse"}
    [answer] = records.decide(
        [orjson.dumps({"type": "Feedback", "response": content, "feedback_report": report})]
    )
    assert isinstance(answer, tuple) and answer[1:3] == ("Feedback", "FeedbackAbuse")
