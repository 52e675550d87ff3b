"""The framework-free data path: classify/enrich, pass/drop/re-route, dead letters with headers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from streamer.classifier import Classifier, ReloadableClassifier
from streamer.deadletter import (
    DLQ_DETAIL,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_TIME,
)
from streamer.devkit.sample import generate
from streamer.pipeline import MALFORMED_TYPE, Pipeline, parse_non_classifiable
from streamer.records import CLASSIFIABLE_TYPES, EMPTY, PROCESSING_ERROR, enrich

RULES = """
[rules]
InvalidRecipient = ["user unknown", "no such user"]
QuotaIssues = ["mailbox full"]
"""
NOW = 1_767_268_800.25  # 2026-01-01T12:00:00.250Z


def _msg(value: bytes | None, *, offset: int = 0, key: bytes | None = b"k", headers=None) -> Any:
    return Message(topic="in", partition=3, offset=offset, key=key, value=value, headers=headers)


def _record(rtype: str, content: str, code: int = 550) -> dict[str, Any]:
    return {
        "type": rtype,
        "id": "abc",
        "recipient": "a@example.com",
        "response": {
            "code": code,
            "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
            "content": content,
            "command": None,
        },
    }


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    p = tmp_path / "rules.toml"
    p.write_text(RULES)
    return p


@pytest.fixture
def classifiers(rules: Path) -> ReloadableClassifier:
    return ReloadableClassifier([rules])


def _pipeline(classifiers: Any, **kw: Any) -> Pipeline:
    return Pipeline(
        classifiers,
        output_topic="out",
        dlq_topic="in.dlq",
        max_message_bytes=kw.pop("max_message_bytes", 4096),
        clock=lambda: NOW,
        **kw,
    )


def test_classifiable_record_is_enriched_with_key_and_headers_kept(classifiers) -> None:
    hdrs = [("trace", b"t-1"), ("trace", b"t-2")]
    raw = orjson.dumps(_record("Bounce", "5.1.1 user unknown here"))
    outputs, stats = _pipeline(classifiers).process([_msg(raw, key=b"msg-1", headers=hdrs)])
    assert len(outputs) == 1
    out = outputs[0]
    assert (out.topic, out.key, out.headers) == ("out", b"msg-1", hdrs)
    doc = orjson.loads(out.value)
    assert doc["bounce_classification"] == "InvalidRecipient"
    assert doc["classification"]["label"] == "InvalidRecipient"
    assert doc["classification"]["rule"]["pattern"] == "user unknown"
    assert doc["classification"]["rules_version"] == classifiers.current.version
    # every original field is still there, unchanged
    assert {k: v for k, v in doc.items() if "classification" not in k} == orjson.loads(raw)
    assert stats.events_in == Counter({"Bounce": 1})
    assert stats.events_out == Counter({("Bounce", "InvalidRecipient"): 1})
    assert len(stats.classify_seconds) == 1


def test_sites_counted_per_label_for_classified_records_only(classifiers) -> None:
    def rec(rtype: str, content: str, site: object) -> bytes:
        return orjson.dumps({**_record(rtype, content), "site": site})

    batch = [
        _msg(rec("Bounce", "user unknown", "mx.example")),
        _msg(rec("TransientFailure", "mailbox full", "mx.example")),
        _msg(rec("Bounce", "no such user", "mx.example")),
        _msg(rec("Bounce", "user unknown", "")),  # no site: not counted
        _msg(rec("Bounce", "user unknown", 7)),  # not a string: not counted
        _msg(rec("Delivery", "250 ok", "mx.example")),  # not classified: not counted
    ]
    _, stats = _pipeline(classifiers).process(batch)
    assert stats.sites == Counter(
        {("mx.example", "InvalidRecipient"): 2, ("mx.example", "QuotaIssues"): 1}
    )


def test_unmatched_classifiable_record_is_uncategorized(classifiers) -> None:
    raw = orjson.dumps(_record("TransientFailure", "try again later", 451))
    outputs, _ = _pipeline(classifiers).process([_msg(raw)])
    assert orjson.loads(outputs[0].value)["bounce_classification"] == "Uncategorized"


@pytest.mark.parametrize(
    ("policy", "expected_topic"), [("pass", "out"), ("drop", None), ("topic:other", "other")]
)
def test_non_classifiable_policy(classifiers, policy: str, expected_topic: str | None) -> None:
    raw = orjson.dumps(_record("Delivery", "250 OK", 250))
    outputs, stats = _pipeline(classifiers, non_classifiable=policy).process(
        [_msg(raw, headers=[("h", b"1")])]
    )
    assert stats.events_in == Counter({"Delivery": 1})
    if expected_topic is None:
        assert outputs == [] and stats.dropped == 1
        return
    assert len(outputs) == 1
    assert outputs[0].topic == expected_topic
    assert outputs[0].value == raw, "passed through byte for byte"
    assert outputs[0].headers == [("h", b"1")]
    assert stats.events_out == Counter({("Delivery", "none"): 1})


def test_parse_non_classifiable_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_non_classifiable("topic:", "out")
    with pytest.raises(ValueError):
        parse_non_classifiable("keep", "out")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe{}", "not-utf8"),
        (b'{"type": "Bounce", ', "not-json"),
        (b"[1, 2]", "not-object"),
        (b'{"response": {"code": 550, "content": "x"}}', "missing-type"),
        (b'{"type": 5, "response": {"code": 550, "content": "x"}}', "bad-type"),
        (b'{"type": "Bounce"}', "missing-response"),
        (b'{"type": "Bounce", "response": "550 no"}', "bad-response"),
        (b'{"type": "Bounce", "pad": "' + b"x" * 5000 + b'"}', "too-large"),
    ],
)
def test_malformed_goes_to_dlq_unchanged_with_headers(
    classifiers, value: bytes, reason: str
) -> None:
    outputs, stats = _pipeline(classifiers).process(
        [_msg(value, offset=42, key=b"kk", headers=[("orig", b"v")])]
    )
    assert len(outputs) == 1
    out = outputs[0]
    assert (out.topic, out.key, out.value) == ("in.dlq", b"kk", value)
    headers = dict(out.headers)
    assert out.headers[0] == ("orig", b"v"), "original headers come first, kept"
    assert headers[DLQ_REASON] == reason.encode()
    assert headers[DLQ_SOURCE_TOPIC] == b"in"
    assert headers[DLQ_SOURCE_PARTITION] == b"3"
    assert headers[DLQ_SOURCE_OFFSET] == b"42"
    assert headers[DLQ_TIME] == b"2026-01-01T12:00:00.250Z"
    assert stats.dlq == Counter({reason: 1})
    assert stats.events_in == Counter({MALFORMED_TYPE: 1})


def test_tombstone_goes_to_dlq_as_empty(classifiers) -> None:
    outputs, _ = _pipeline(classifiers).process([_msg(None)])
    assert outputs[0].value is None
    assert dict(outputs[0].headers)[DLQ_REASON] == EMPTY.encode()


class _Exploding:
    """A classifier source whose classifier fails on one record (a bug, not the record's fault)."""

    def __init__(self, inner: Classifier) -> None:
        self.inner = inner

    @property
    def current(self) -> Any:
        return self

    @property
    def version(self) -> str:
        return self.inner.version

    def classify(self, line: str) -> Any:
        if "boom" in line:
            raise RuntimeError("kaboom")
        return self.inner.classify(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_processing_error_is_dead_lettered_and_the_batch_goes_on(classifiers) -> None:
    p = _pipeline(_Exploding(classifiers.current))
    batch = [
        _msg(orjson.dumps(_record("Bounce", "boom")), offset=1),
        _msg(orjson.dumps(_record("Bounce", "user unknown")), offset=2),
    ]
    outputs, stats = p.process(batch)
    assert [o.topic for o in outputs] == ["in.dlq", "out"]
    headers = dict(outputs[0].headers)
    assert headers[DLQ_REASON] == PROCESSING_ERROR.encode()
    assert b"kaboom" in headers[DLQ_DETAIL]
    assert stats.dlq == Counter({PROCESSING_ERROR: 1})


def test_reload_applies_from_the_next_batch(classifiers, rules: Path) -> None:
    p = _pipeline(classifiers)
    raw = orjson.dumps(_record("Bounce", "mailbox full"))
    before, _ = p.process([_msg(raw)])
    rules.write_text('[rules]\nBadDestinationSystem = ["mailbox full"]\n')
    classifiers.reload()
    after, _ = p.process([_msg(raw)])
    assert orjson.loads(before[0].value)["bounce_classification"] == "QuotaIssues"
    assert orjson.loads(after[0].value)["bounce_classification"] == "BadDestinationSystem"


def test_sample_traffic_routes_every_kind(classifiers, rules: Path) -> None:
    """Cross-check against the sample generator's own idea of each message's kind."""
    expect = Classifier.from_files([rules])
    msgs = list(generate(600, seed=3, malformed_fraction=0.1, max_message_bytes=8192))
    batch = [_msg(m.value, offset=i, key=m.key, headers=m.headers) for i, m in enumerate(msgs)]
    outputs, stats = _pipeline(classifiers, max_message_bytes=8192).process(batch)
    assert len(outputs) == len(msgs)
    kinds = Counter()
    for m, out in zip(msgs, outputs, strict=True):
        kinds[m.kind.split(":")[0]] += 1
        assert (out.key, list(out.headers or ())[: len(m.headers)]) == (m.key, m.headers)
        if m.kind == "classify":
            rec = orjson.loads(m.value)
            assert rec["type"] in CLASSIFIABLE_TYPES
            want = enrich(dict(rec), expect)["bounce_classification"]  # Feedback: its report
            assert out.topic == "out"
            assert orjson.loads(out.value)["bounce_classification"] == want
        elif m.kind == "pass":
            assert (out.topic, out.value) == ("out", m.value)
        else:
            reason = m.kind.split(":", 1)[1]
            assert out.topic == "in.dlq"
            assert out.value == m.value
            assert dict(out.headers)[DLQ_REASON] == reason.encode()
    assert kinds["classify"] and kinds["pass"] and kinds["malformed"]
    assert sum(stats.dlq.values()) == kinds["malformed"]


def test_suppression_events_carry_their_source_and_follow_the_record(
    classifiers: ReloadableClassifier,
) -> None:
    """With analytics, a hard bounce and a delivery each emit an event keyed by the recipient
    to the events topic, after the record's own output, with the input partition and offset."""
    from streamer.analytics.analyzer import Analyzer
    from streamer.analytics.suppression_fold import decode_event
    from streamer.config import Settings

    analyzer = Analyzer.from_settings(Settings(files=[Path("/dev/null")]))
    pipe = _pipeline(classifiers, analyzer=analyzer, suppression_events_topic="ev")
    t = {"timestamp": 1_767_268_800}
    bounce = {**_record("Bounce", "user unknown"), "recipient": "Bob@Example.com", **t}
    delivery = {
        **_record("Delivery", "ok", 250),
        "recipient": ["<a@x.example>", "B@x.example"],
        **t,
    }
    soft = _record("Bounce", "mailbox full", 452)
    msgs = [_msg(orjson.dumps(r), offset=o) for o, r in ((7, bounce), (8, delivery), (9, soft))]
    outputs, _ = pipe.process(msgs)
    assert [(o.topic, o.key) for o in outputs] == [
        ("out", b"k"),
        ("ev", b"bob@example.com"),
        ("out", b"k"),
        ("ev", b"a@x.example"),
        ("ev", b"b@x.example"),
        ("out", b"k"),
    ]
    hard, d1, d2 = (decode_event(o.value) for o in outputs if o.topic == "ev")
    assert (hard.partition, hard.offset, hard.time) == (3, 7, 1_767_268_800_000)
    assert hard.details is not None and hard.details["label"] == "InvalidRecipient"
    assert (d1.offset, d2.offset, d1.details, d1.time) == (8, 8, None, 1_767_268_800_000)
