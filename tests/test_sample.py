"""Sample data: realistic, deterministic, every record type, malformed kinds the worker knows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from streamer.devkit.sample import (
    BUNDLED_SAMPLE_SIZE,
    MALFORMED_REASONS,
    PROVIDERS,
    RECORD_TYPES,
    bundled_sample_path,
    generate,
    generate_records,
    load_bundled_sample,
    make_malformed,
    record_identity,
    write_bundled_sample,
)
from streamer.records import CLASSIFIABLE_TYPES, MalformedRecord, decode_record, response_line


def test_deterministic_per_seed() -> None:
    a = list(generate(300, seed=7, malformed_fraction=0.1))
    b = list(generate(300, seed=7, malformed_fraction=0.1))
    c = list(generate(300, seed=8, malformed_fraction=0.1))
    assert a == b
    assert [m.value for m in a] != [m.value for m in c]


def test_records_look_like_kumomta_logs() -> None:
    records = list(generate_records(3000, seed=1))
    assert set(Counter(r["type"] for r in records)) == set(RECORD_TYPES)
    required = {
        "type", "id", "sender", "recipient", "queue", "site", "size", "response",
        "peer_address", "timestamp", "created", "num_attempts", "bounce_classification",
        "egress_pool", "egress_source", "feedback_report", "meta", "headers",
        "delivery_protocol", "reception_protocol", "nodeid",
    }  # fmt: skip
    for r in records:
        assert required <= set(r), r["type"]
        resp = r["response"]
        assert isinstance(resp["code"], int) and isinstance(resp["content"], str)
        if resp["enhanced_code"] is not None:
            assert set(resp["enhanced_code"]) == {"class", "subject", "detail"}
            assert resp["enhanced_code"]["class"] == resp["code"] // 100
        assert "@" in r["recipient"] and len(r["id"]) == 32
        assert r["timestamp"] >= r["created"]
    deliveries = [r for r in records if r["type"] == "Delivery"]
    assert all(r["response"]["code"] == 250 and r["site"] for r in deliveries)
    failures = [r for r in records if r["type"] == "Bounce"]
    assert all(r["response"]["code"] >= 500 for r in failures)
    transient = [r for r in records if r["type"] == "TransientFailure"]
    assert all(400 <= r["response"]["code"] < 500 for r in transient)
    feedback = [r for r in records if r["type"] == "Feedback"]
    assert all(r["feedback_report"]["feedback_type"] == "abuse" for r in feedback)
    # ~1 KB per record, as the benchmark promises.
    sizes = [len(orjson.dumps(r)) for r in records]
    assert 900 <= sum(sizes) / len(sizes) <= 1800


def test_traffic_mix_is_realistic() -> None:
    records = list(generate_records(5000, seed=2))
    domains = Counter(r["recipient"].split("@", 1)[1] for r in records)
    provider_domains = {p.domain for p in PROVIDERS}
    assert len(provider_domains & set(domains)) >= 15
    assert domains.most_common(1)[0][0] in {"gmail.com", "googlemail.com"}
    # Failure responses repeat (a few dominate) while addresses vary.
    failures = [r for r in records if r["type"] in CLASSIFIABLE_TYPES]
    lines = Counter(response_line(r["response"]) for r in failures)
    top10 = sum(n for _line, n in lines.most_common(10))
    assert top10 / len(failures) > 0.25
    assert len(lines) > 100
    recipients = {r["recipient"] for r in records}
    assert len(recipients) > len(records) / 5
    assert any("\r\n" in r["response"]["content"] for r in failures)
    # Every record of one message keeps the message's key (its spool id); identities are unique.
    assert len({record_identity(r) for r in records}) == len(records)
    per_message = Counter(r["id"] for r in records)
    assert per_message.most_common(1)[0][1] >= 3


def test_kinds_and_keys() -> None:
    msgs = list(generate(2000, seed=3))
    for m in msgs:
        rec = orjson.loads(m.value)
        assert m.key == rec["id"].encode()
        assert m.kind == ("classify" if rec["type"] in CLASSIFIABLE_TYPES else "pass")
        assert ("kumo.type", rec["type"].encode()) in m.headers
    kinds = Counter(m.kind for m in msgs)
    assert kinds["classify"] > 400 and kinds["pass"] > 400


def test_malformed_fraction_cycles_through_every_reason() -> None:
    msgs = list(generate(1000, seed=4, malformed_fraction=0.05))
    bad = [m for m in msgs if m.kind.startswith("malformed:")]
    assert len(msgs) == 1000 and len(bad) == 50
    assert {m.kind.removeprefix("malformed:") for m in bad} == set(MALFORMED_REASONS)
    with pytest.raises(ValueError):
        list(generate(1, malformed_fraction=1.5))


@pytest.mark.parametrize("reason", MALFORMED_REASONS)
def test_malformed_messages_decode_to_their_reason(reason: str) -> None:
    import random

    rng = random.Random(reason)
    limit = 64 * 1024
    for rec in generate_records(40, seed=5):
        msg = make_malformed(reason, rng, rec, max_message_bytes=limit)
        assert msg.kind == f"malformed:{reason}"
        with pytest.raises(MalformedRecord) as err:
            decode_record(msg.value, limit)
        assert err.value.reason == reason
    with pytest.raises(ValueError):
        make_malformed("no-such-reason", rng, rec)


def test_well_formed_messages_decode() -> None:
    for m in generate(500, seed=6):
        rec = decode_record(m.value, 1_048_576)
        assert rec["type"] in RECORD_TYPES


def test_bundled_sample_is_current_and_complete(tmp_path: Path) -> None:
    bundled = bundled_sample_path()
    fresh = write_bundled_sample(tmp_path / "sample.jsonl")
    assert bundled.read_bytes() == fresh.read_bytes(), (
        "regenerate: python -m streamer.devkit.sample"
    )
    msgs = load_bundled_sample()
    assert len(msgs) == BUNDLED_SAMPLE_SIZE
    types = Counter(orjson.loads(m.value)["type"] for m in msgs)
    assert set(types) == set(RECORD_TYPES)
    assert bundled.stat().st_size < 4_000_000
