"""Sample data: realistic, deterministic, KumoMTA's record types and fields, malformed kinds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import kumomta_schema as schema
import orjson
import pytest

from streamer.analytics.windows import event_time_ms
from streamer.devkit.sample import (
    BUNDLED_SAMPLE_SIZE,
    MALFORMED_REASONS,
    PROVIDERS,
    bundled_sample_path,
    generate,
    generate_records,
    load_bundled_sample,
    make_malformed,
    record_identity,
    to_message,
    write_bundled_sample,
)
from streamer.records import (
    CLASSIFIABLE_TYPES,
    RECORD_TYPES,
    MalformedRecord,
    decode_record,
    is_log_hook_record,
    rejected_recipient,
    response_line,
)


def test_deterministic_per_seed() -> None:
    a = list(generate(300, seed=7, malformed_fraction=0.1))
    b = list(generate(300, seed=7, malformed_fraction=0.1))
    c = list(generate(300, seed=8, malformed_fraction=0.1))
    assert a == b
    assert [m.value for m in a] != [m.value for m in c]


def test_record_types_are_kumomtas() -> None:
    assert set(RECORD_TYPES) == schema.RECORD_TYPES
    assert "Delay" not in RECORD_TYPES  # KumoMTA's type is Delayed
    # streamer classifies exactly what KumoMTA's own bounce classifier would look at.
    assert CLASSIFIABLE_TYPES == schema.BOUNCE_CLASSIFIABLE


def test_records_look_like_kumomta_logs() -> None:
    records = list(generate_records(3000, seed=1))
    assert set(Counter(r["type"] for r in records)) == set(RECORD_TYPES)
    for r in records:
        assert schema.record_problems(r) == []
        # Field order as KumoMTA writes it.
        assert [k for k in r if k in schema.REQUIRED] == list(schema.REQUIRED)
        resp = r["response"]
        if resp["enhanced_code"] is not None:
            assert resp["enhanced_code"]["class"] == resp["code"] // 100
        if r["type"] == "Rejection":  # no message: KumoMTA writes an empty id
            assert r["id"] == "" and r["queue"] == "" and r["reception_protocol"] is None
        else:
            assert "@" in r["recipient"] and len(r["id"]) == 32
        if r["type"] != "OOB":  # an OOB record's time is the report's last-attempt date
            assert r["timestamp"] >= r["created"]
    by_type: dict[str, list[dict[str, object]]] = {}
    for r in records:
        by_type.setdefault(r["type"], []).append(r)
    # Outbound attempts carry the connection details; the queue machinery's records do not.
    for r in by_type["Delivery"] + by_type["Bounce"] + by_type["TransientFailure"]:
        assert r["egress_source"] and r["source_address"] and "session_id" in r
    for t in ("Delayed", "AdminRebind", "Expiration", "AdminBounce", "XferOut"):
        for r in by_type[t]:
            assert r["egress_pool"] is None and r["peer_address"] is None
            assert "tls_cipher" not in r and "session_id" not in r
    assert all(r["response"]["code"] == 400 for r in by_type["Delayed"])
    assert all(r["response"]["content"].startswith("Context: ") for r in by_type["Delayed"])
    assert all(r["response"]["content"].startswith("Rebound from ") for r in by_type["AdminRebind"])
    assert all(r["delivery_protocol"] == "xfer" for r in by_type["XferOut"] + by_type["XferIn"])
    assert all(r["queue"].endswith(".xfer.kumomta.internal") for r in by_type["XferOut"])
    assert all(r["delivery_protocol"] == "DeferredSmtpInjection"
               for r in by_type["DeferredInjectionRebind"])  # fmt: skip
    deliveries = [r for r in records if r["type"] == "Delivery"]
    assert all(r["response"]["code"] == 250 and r["site"] for r in deliveries)
    failures = [r for r in records if r["type"] == "Bounce"]
    assert all(r["response"]["code"] >= 500 for r in failures)
    transient = [r for r in records if r["type"] == "TransientFailure"]
    assert all(400 <= r["response"]["code"] < 500 for r in transient)
    feedback = [r for r in records if r["type"] == "Feedback"]
    kinds = Counter(r["feedback_report"]["feedback_type"] for r in feedback)
    assert set(kinds) == schema.FEEDBACK_TYPES and kinds.most_common(1)[0][0] == "abuse"
    for r in feedback:
        report = r["feedback_report"]
        # The record is the report's own reception; the complainer is in the report.
        assert r["recipient"] not in report["original_rcpto_to"]
        assert report["supplemental_trace"]["recipient"] == report["original_rcpto_to"][0]
    # OOB records come with the report's enhanced status code.
    assert all(r["response"]["enhanced_code"] for r in records if r["type"] == "OOB")
    # ~1 KB per record, as the benchmark promises.
    sizes = [len(orjson.dumps(r)) for r in records]
    assert 900 <= sum(sizes) / len(sizes) <= 1800


def test_traffic_mix_is_realistic() -> None:
    records = list(generate_records(5000, seed=2))
    domains = Counter(r["recipient"].split("@", 1)[1] for r in records if r["recipient"])
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
    # Most records are receptions and deliveries; the new types are a few each.
    types = Counter(r["type"] for r in records)
    assert (types["Reception"] + types["Delivery"]) / len(records) > 0.6
    for t in ("AdminRebind", "DeferredInjectionRebind", "Delayed", "XferOut", "XferIn"):
        assert 0 < types[t] / len(records) < 0.02, t
    # Every record of one message keeps the message's key (its spool id); identities are unique.
    assert len({record_identity(r) for r in records}) == len(records)
    per_message = Counter(r["id"] for r in records)
    assert per_message.most_common(1)[0][1] >= 3


def test_rejections_are_logged_as_kumomtas_smtp_server_logs_them() -> None:
    """The refused address is only in the command as the client sent it; ``recipient`` is the
    transaction's last accepted one (or ""), ``sender`` "" where no transaction had begun."""
    rejections = [r for r in generate_records(6000, seed=11) if r["type"] == "Rejection"]
    rcpt = [r for r in rejections if (r["response"]["command"] or "").upper().startswith("RCPT")]
    assert len(rcpt) > 40
    for r in rcpt:
        refused = rejected_recipient(r)
        assert refused and "@" in refused and refused != r["recipient"]
        assert r["response"]["command"].lower() == f"rcpt to:<{refused}>"
        assert r["sender"]
    assert {r["recipient"] == "" for r in rcpt} == {True, False}
    assert {r["response"]["command"][:4] for r in rcpt} == {"RCPT", "rcpt"}
    mail = [r for r in rejections if (r["response"]["command"] or "").startswith("MAIL FROM:<")]
    assert mail and all(r["sender"] == r["recipient"] == "" for r in mail)
    assert all(rejected_recipient(r) is None for r in rejections if r not in rcpt)
    assert all(r["id"] == "" and r["num_attempts"] == 0 for r in rejections)


def test_a_log_hook_adds_its_bookkeeping_records_and_leaves_the_mail_alone() -> None:
    """KumoMTA's local logs with a log hook: one Delivery of the hook's queue per shipped
    record (a failed attempt now and then), with the shipped record's sender and recipient."""
    plain = list(generate_records(3000, seed=12))
    hooked = list(generate_records(3000, seed=12, log_hook="kafka"))
    book = [r for r in hooked if is_log_hook_record(r)]
    mail = [r for r in hooked if not is_log_hook_record(r)]
    assert mail == plain[: len(mail)]  # the hook has its own random stream
    assert not any(is_log_hook_record(r) for r in plain)
    assert 0.05 < len(book) / len(hooked) < 0.25
    assert Counter(r["type"] for r in book).keys() == {"Delivery", "TransientFailure", "Bounce"}
    shipped = {(r["sender"], str(r["recipient"])) for r in mail}
    for r in book:
        assert schema.record_problems(r) == []
        assert r["queue"] == "kafka.log_hook" and r["delivery_protocol"] == "Lua"
        assert r["site"] == "unspecified->kafka.log_hook@lua:make.kafka.log_hook"
        assert r["reception_protocol"] == r["meta"]["reception_protocol"] == "LogRecord"
        assert (r["sender"], str(r["recipient"])) in shipped
        assert to_message(r).kind == "pass"  # never classified, whatever its type
    assert any(r["recipient"] == "" for r in book)  # a Rejection's, shipped too


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
    # a local log with a log hook: its bookkeeping records, and policy refusals of RCPT TO
    records = [orjson.loads(m.value) for m in msgs]
    book = Counter(r["type"] for r in records if is_log_hook_record(r))
    assert book["Delivery"] > 50 and book["TransientFailure"] and book["Bounce"]
    assert sum(1 for r in records if rejected_recipient(r)) >= 5


def _bundled_records() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in bundled_sample_path().read_bytes().splitlines()]


def test_bundled_sample_matches_kumomta_schema() -> None:
    records = _bundled_records()
    problems = [p for r in records for p in schema.record_problems(r)]
    assert problems == []
    feedback = [r["feedback_report"] for r in records if r["type"] == "Feedback"]
    assert {f["feedback_type"] for f in feedback} == schema.FEEDBACK_TYPES


def test_bundled_sample_event_time_agrees_with_timestamp() -> None:
    """The analytics read ``event_time`` first: it must name the same second as ``timestamp``."""
    for r in _bundled_records():
        ms = event_time_ms(r)
        assert ms is not None and ms // 1000 == r["timestamp"], r["event_time"]
        assert event_time_ms({"timestamp": r["timestamp"]}) == r["timestamp"] * 1000
        created = event_time_ms({"event_time": r["created_time"]})
        assert created is not None and created // 1000 == r["created"]


def test_unknown_record_types_pass_through() -> None:
    """A type streamer does not know (a newer KumoMTA's) is passed, never dead-lettered."""
    rec = next(r for r in generate_records(50, seed=9) if r["type"] == "Delivery")
    rec = {**rec, "type": "SomeFutureType", "response": None}
    raw = orjson.dumps(rec)
    assert decode_record(raw, 1_048_576)["type"] == "SomeFutureType"
    assert to_message(rec).kind == "pass"


def test_docs_list_the_record_types() -> None:
    from streamer.config import PROJECT_ROOT

    page = (PROJECT_ROOT / "docs" / "kumomta.md").read_text(encoding="utf-8")
    section = page.split("## The record types", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[0]: {t.strip() for t in cells[1].split(",")}
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| Handling")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    classified = next(v for k, v in rows.items() if k.startswith("classified"))
    passed = next(v for k, v in rows.items() if k.startswith("not classifiable"))
    assert classified == set(CLASSIFIABLE_TYPES)
    assert passed == set(RECORD_TYPES) - set(CLASSIFIABLE_TYPES)
