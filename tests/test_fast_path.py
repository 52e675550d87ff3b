"""The pipeline's fast path and the reference functions of ``streamer.records`` agree.

For any message, ``Pipeline.process`` must route exactly as ``decode_record`` accepts or
rejects it (same reason), and an enriched output must equal ``records.enrich`` of the decoded
input, field for field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.classifier import ReloadableClassifier
from streamer.deadletter import DLQ_REASON
from streamer.pipeline import Pipeline
from streamer.records import CLASSIFIABLE_TYPES, MalformedRecord, decode_record, enrich

RULES = Path(__file__).with_name("fast_path_rules.toml")
CLASSIFIERS = ReloadableClassifier([RULES])
PIPELINE = Pipeline(CLASSIFIERS, output_topic="out", dlq_topic="dlq", max_message_bytes=2048)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 600), st.floats(allow_nan=False), st.text(max_size=8)
)
ints = st.one_of(st.integers(0, 9), st.booleans(), st.text(max_size=2), st.none())
enhanced = st.one_of(
    st.none(),
    scalars,
    st.fixed_dictionaries({"class": ints, "subject": ints, "detail": ints}),
    st.fixed_dictionaries({"class": st.integers(2, 5), "subject": st.integers(0, 7)}),
)
contents = st.sampled_from(
    ["user unknown", "Mailbox FULL", "no such user here", "", "weird\r\nline", "ok 250"]
)
response = st.one_of(
    scalars,
    st.fixed_dictionaries(
        {
            "code": st.one_of(st.integers(200, 599), scalars),
            "content": st.one_of(contents, scalars),
        },
        optional={"enhanced_code": enhanced, "command": st.text(max_size=4)},
    ),
)
types = st.one_of(st.sampled_from(sorted(CLASSIFIABLE_TYPES | {"Delivery", "Reception"})), scalars)
records = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.fixed_dictionaries(
        {},
        optional={
            "type": types,
            "response": response,
            "site": st.one_of(st.text(max_size=6), scalars),
            "id": st.text(max_size=6),
            "padding": st.text(max_size=3000),
            "feedback_report": st.one_of(
                scalars,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "feedback_type": st.one_of(
                            scalars, st.sampled_from(["abuse", "Not-Spam", "x-new", "fraud", ""])
                        )
                    },
                ),
            ),
        },
    ),
)


def _raw(value: Any) -> bytes:
    return orjson.dumps(value)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        records.map(_raw),
        st.binary(max_size=40),
        st.sampled_from([b"\xff\xfe", b"{", b"", b'{"type": 1}']),
    )
)
def test_fast_path_routes_and_enriches_like_the_reference(raw: bytes) -> None:
    msg = Message(topic="in", partition=0, offset=7, key=b"k", value=raw, headers=None)
    outputs, _stats = PIPELINE.process([msg])
    try:
        record = decode_record(raw, 2048)
    except MalformedRecord as exc:
        ((topic, _key, value, headers),) = outputs
        assert topic == "dlq" and value == raw
        assert dict(headers or ())[DLQ_REASON] == exc.reason.encode()
        return
    ((topic, key, value, _headers),) = outputs
    assert topic == "out" and key == b"k"
    if record["type"] not in CLASSIFIABLE_TYPES:
        assert value == raw  # passed through byte for byte
        return
    assert value is not None
    assert orjson.loads(value) == enrich(record, CLASSIFIERS)
