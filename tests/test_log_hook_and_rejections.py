"""What a real KumoMTA writes where it surprises (shapes in ``kumomta_records``): a log hook's
bookkeeping records are recognised once (``streamer.records``) and never count as mail, a
Rejection of ``RCPT TO`` concerns the refused address, in every consumer of records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import kumomta_records as kr
import kumomta_schema as schema
import orjson
import pytest
from confluent_kafka import Message
from system_tools import lacking
from typer.testing import CliRunner

from streamer import native
from streamer.analytics.analyzer import Analyzer
from streamer.analytics.batch import BatchAggregator, tenant_of
from streamer.analytics.categories import CategoryTable
from streamer.analytics.gaps import GapCollector
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppression_fold import decode_event, truth
from streamer.analytics.suppressions import SuppressionEvents, recipient_keys
from streamer.classifier import Classifier, ReloadableClassifier
from streamer.cli import _register, app
from streamer.config import shipped_rule_files
from streamer.pipeline import Pipeline
from streamer.records import (
    LOG_HOOK_TYPE,
    decode_record,
    effective_type,
    enrich,
    is_log_hook_record,
    recipients,
    rejected_recipient,
)
from streamer.report import RecordReader, summary, tables

SHIPPED = Classifier.from_files(shipped_rule_files())
NOW = kr.T0 + 1000.0


def test_the_shapes_are_kumomtas() -> None:
    records = kr.local_log_with_a_hook()
    assert [p for r in records for p in schema.record_problems(r)] == []
    assert all(r["bounce_classification"] == "Uncategorized" for r in records)
    assert Counter(r["type"] for r in records) == {
        "Delivery": 12, "Reception": 1, "Bounce": 3, "Rejection": 2, "AdminBounce": 1,
    }  # fmt: skip


# --- recognising them ---------------------------------------------------------------------


def test_a_log_hook_record_is_known_by_its_reception_protocol_whatever_its_queue() -> None:
    shipped = kr.delivered(1, "ok@gmail.com")
    for hook in (kr.hook_delivery(2, shipped), kr.hook_bounce(3, shipped)):
        assert is_log_hook_record(hook) and effective_type(hook) == LOG_HOOK_TYPE
        assert recipients(hook) == [] and recipient_keys(hook) == []
    # a hand-written hook (kumo.configure_log_hook) names its queue as it likes
    webhook = kr.hook_delivery(4, shipped) | {"queue": "webhook", "site": "unspecified->webhook"}
    assert is_log_hook_record(webhook)
    # a mail queue may be called anything: the name alone proves nothing
    assert not is_log_hook_record(shipped | {"queue": "kafka.log_hook"})
    assert effective_type(shipped) == "Delivery" and recipients(shipped) == ["ok@gmail.com"]


@pytest.mark.parametrize(
    ("command", "refused"),
    [
        ("RCPT TO:<nobody@yahoo.com>", "nobody@yahoo.com"),
        ("rcpt TO:<Nobody@Yahoo.com>", "Nobody@Yahoo.com"),  # as Python's smtplib sends it
        ("rcpt to: <a@b.example> NOTIFY=NEVER", "a@b.example"),
        ("RCPT TO:a@b.example", "a@b.example"),
        ("RCPT TO:<@relay.example:a@b.example>", "a@b.example"),  # a source route
        ("RCPT TO:<x>", "x"),  # refused with 501 for its syntax: still the refused one
        ("RCPT TO:<>", ""),
        ("RCPT TO:<a@b.example", "a@b.example"),  # unclosed: refused for its syntax
        ("RCPT TO:", ""),  # names nobody: still not the last accepted recipient
    ],
)
def test_a_rejected_rcpt_names_the_address_of_its_command(command: str, refused: str) -> None:
    rec = kr.rcpt_rejection(1, "-", "kept@gmail.com", command=command)
    assert rejected_recipient(rec) == refused
    assert recipients(rec) == ([refused] if refused else [])
    assert recipient_keys(rec) == ([refused.lower()] if refused else [])
    assert rec["recipient"] == "kept@gmail.com"  # the record stays as it came


def test_other_records_keep_their_recipient() -> None:
    data = kr.record(
        "Rejection",
        1,
        id="",
        recipient="kept@gmail.com",
        response=kr.smtp_response(552, "5.3.4", "message too big", "DATA"),
    )
    assert rejected_recipient(data) is None and recipients(data) == ["kept@gmail.com"]
    no_command = data | {"response": kr.smtp_response(421, "4.3.2", "too many connections")}
    assert rejected_recipient(no_command) is None
    bounce = kr.hard_bounce(2, "gone@gmail.com")  # outbound: its RCPT TO is ours, to them
    assert rejected_recipient(bounce) is None and recipients(bounce) == ["gone@gmail.com"]
    assert recipients(kr.reception(3, ["a@x.example", "b@x.example"])) == [
        "a@x.example",
        "b@x.example",
    ]


def test_a_log_hook_record_is_never_classified_nor_dead_lettered() -> None:
    hook = kr.hook_bounce(1, kr.delivered(0, "ok@gmail.com"))
    assert enrich(dict(hook), SHIPPED) == hook
    # a Bounce whose response is no object is dead-lettered; a hook's is not even read
    odd = hook | {"response": "550 kafka down"}
    assert decode_record(orjson.dumps(odd))["type"] == "Bounce"
    with pytest.raises(ValueError, match="bad-response"):
        decode_record(orjson.dumps(odd | {"reception_protocol": "ESMTP"}))


# --- the worker's path ----------------------------------------------------------------------


def _analyzer() -> Analyzer:
    return Analyzer(
        CategoryTable.shipped(),
        ProviderMatcher.shipped(),
        BatchAggregator(window_s=60),
        SuppressionEvents(),
        clock=lambda: NOW,
    )


def _process(records: list[dict[str, Any]], fast: bool, non_classifiable: str = "pass") -> Any:
    rules = ReloadableClassifier(shipped_rule_files())
    if fast and not native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")
    an = _analyzer()
    pipe = Pipeline(
        rules,
        output_topic="out",
        dlq_topic="in.dlq",
        non_classifiable=non_classifiable,
        clock=lambda: NOW,
        analyzer=an,
        suppression_events_topic="sup",
        native=fast,
    )
    raws = [orjson.dumps(r) for r in records]
    batch = [
        Message(topic="in", partition=0, offset=i, key=b"k", value=raw, headers=None)
        for i, raw in enumerate(raws)
    ]
    outputs, stats = pipe.process(batch)
    return raws, outputs, stats, an


@pytest.mark.parametrize("fast", [True, False], ids=["native", "python"])
def test_a_replayed_local_log_keeps_every_suppression(fast: bool) -> None:
    records = kr.local_log_with_a_hook()
    raws, outputs, stats, an = _process(records, fast)
    # the suppression events, folded as the keyed stage folds them: the hook's Deliveries
    # (which name gone1 and gone2) concern nobody, so both stay suppressed
    events: dict[str, list[Any]] = {}
    for o in outputs:
        if o.topic == "sup":
            events.setdefault(o.key.decode(), []).append(decode_event(o.value))
    assert sorted(events) == [
        "gone1@gmail.com",
        "gone2@gmail.com",
        "kept@gmail.com",
        "ok@gmail.com",
    ]
    assert {r for r, evs in events.items() if truth(evs).suppressed} == {
        "gone1@gmail.com",
        "gone2@gmail.com",
    }
    assert all(e.kind == "delivery" for e in events["ok@gmail.com"])  # the hook's Bounce: none
    # bookkeeping records pass unchanged (the default), counted as log_hook, never classified
    rest = [o for o in outputs if o.topic == "out"]
    assert len(rest) == len(records)
    for raw, rec, out in zip(raws, records, rest, strict=True):
        if is_log_hook_record(rec):
            assert out.value == raw
    assert stats.events_in[LOG_HOOK_TYPE] == 10 and stats.events_in["Delivery"] == 3
    assert stats.events_out[LOG_HOOK_TYPE, "none"] == 10
    assert sum(n for (t, _), n in stats.events_out.items() if t == "Bounce") == 2
    # the windowed counts: 3 deliveries, the hook's records apart, outcomes only of mail
    folded = an.aggregator.finish()
    counts: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for key, row in folded.items():
        counts.update(row.counts)
        categories.update(row.categories)
        if row.counts.get(LOG_HOOK_TYPE):
            assert key[1] == "other"  # a log hook ships to no mailbox provider
    assert counts["Delivery"] == 3 and counts[LOG_HOOK_TYPE] == 10
    assert categories["hard"] == 4  # two bounces, two refused yahoo.com addresses


@pytest.mark.parametrize("fast", [True, False], ids=["native", "python"])
def test_a_refused_rcpt_counts_for_the_refused_address(fast: bool) -> None:
    refused = kr.rcpt_rejection(1, "nobody@yahoo.com", "kept@gmail.com")
    _raw, outputs, _stats, _an = _process([refused], fast)
    (out,) = outputs
    enriched = orjson.loads(out.value)
    assert enriched["recipient"] == "kept@gmail.com"  # kept as it came
    assert enriched["classification"]["label"] == "InvalidRecipient"
    assert enriched["classification"]["category"] == "hard"
    assert enriched["classification"]["provider"] == "yahoo"  # not kept@gmail.com's google
    assert tenant_of(refused) == ""  # a refusal has no queue: no tenant from any address
    none_yet = kr.rcpt_rejection(2, "nobody@yahoo.com", "")
    assert orjson.loads(_process([none_yet], fast)[1][0].value)["classification"]["provider"] == (
        "yahoo"
    )


def test_the_other_shapes_are_handled() -> None:
    """``recipient`` as a list, ``mx_list`` sites (provider from the peer), AdminBounce at
    ``localhost``, a Rejection's empty id, ``bounce_classification`` on every input record
    (KumoMTA's own, "Uncategorized" without its classifier): through the worker's path."""
    records = [
        kr.reception(1, ["a@gmail.com", "b@gmail.com"]),
        kr.delivered(2, "a@gmail.com"),
        kr.admin_bounce(3, "c@yahoo.com"),
        kr.rcpt_rejection(4, "d@yahoo.com", ""),
    ]
    raws, everything, stats, _an = _process(records, native.AVAILABLE)
    # a Delivery emits its suppression event (for the keyed stage) after its own output
    assert [o.topic for o in everything] == ["out", "out", "sup", "out", "out"]
    assert not stats.dlq
    outputs = [o for o in everything if o.topic == "out"]
    assert [o.value for o in outputs[:2]] == raws[:2]  # passed as they came
    admin, refusal = (orjson.loads(o.value) for o in outputs[2:])
    assert admin["classification"]["provider"] == "yahoo"
    assert refusal["classification"]["provider"] == "yahoo" and refusal["id"] == ""
    for enriched in (admin, refusal):  # streamer's label replaces KumoMTA's placeholder
        assert enriched["bounce_classification"] == enriched["classification"]["label"]
    assert refusal["bounce_classification"] == "InvalidRecipient"
    an = _analyzer()
    assert an.provider(records[1]) == "google"  # mx_list site: the peer's MX name decides
    assert an.provider(records[0]) == "google"  # the list's first recipient


# --- the commands on a folder of local logs -----------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    import zstandard

    logs = tmp_path / "logs"
    logs.mkdir()
    records = kr.local_log_with_a_hook()
    half = len(records) // 2
    (logs / "20261206-201505.1").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in records[:half])
    )
    data = b"".join(orjson.dumps(r) + b"\n" for r in records[half:])
    (logs / "20261206-201605.2").write_bytes(zstandard.ZstdCompressor().compress(data))
    return logs


def test_classify_summary_counts_only_the_real_deliveries(folder: Path) -> None:
    _register()
    result = CliRunner().invoke(app, ["classify", "--summary", "--json", str(folder)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["other_types"] == {LOG_HOOK_TYPE: 10, "Delivery": 3, "Reception": 1}
    assert doc["classified"] == 5  # 2 bounces, 2 refusals, 1 admin bounce
    assert doc["providers"] == {"google": 3, "yahoo": 2}  # the refusals: the refused's
    assert doc["categories"]["hard"] == 4


def test_the_report_counts_only_real_outcomes(folder: Path) -> None:
    from streamer.inputs import expand_inputs
    from streamer.report import read_inputs

    data = read_inputs(expand_inputs([str(folder)]), SHIPPED)
    t = tables(data)
    assert t.totals["delivered"] == 3 and t.totals["hard"] == 4
    assert data.records == 19 and data.log_hook == 10
    assert any("10 records were a log hook's bookkeeping" in line for line in summary(data, t))
    assert t.providers["yahoo"]["hard"] == 2  # the refused addresses' provider
    reader = RecordReader(SHIPPED)
    reader.add(kr.hook_bounce(1, kr.delivered(0, "ok@gmail.com")))
    assert reader.finish().rules == Counter()  # nothing classified


def test_gaps_leave_the_hooks_responses_out() -> None:
    gaps = GapCollector(SHIPPED)
    gaps.add_record(kr.hook_bounce(1, kr.delivered(0, "ok@gmail.com")))
    gaps.add_record(kr.hard_bounce(2, "gone@gmail.com"))
    assert (gaps.responses, gaps.skipped) == (1, 1)
