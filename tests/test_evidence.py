"""What a classification rests on (``streamer.evidence``), and what that evidence decides:
suppressions only on defensible evidence, reply-code matches counted as rule gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message
from system_tools import lacking
from typer.testing import CliRunner

from streamer import native
from streamer.analytics.analyzer import Analyzer
from streamer.analytics.batch import BatchAggregator
from streamer.analytics.categories import CategoryTable
from streamer.analytics.gaps import GapCollector
from streamer.analytics.providers import ProviderMatcher
from streamer.analytics.suppressions import SuppressionEvents
from streamer.classifier import Classifier
from streamer.cli import _register, app
from streamer.config import ConfigError, load_settings, shipped_rule_files
from streamer.evidence import ENHANCED_CODE, REPLY_CODE, WORDING, EvidenceMemo, evidence_of
from streamer.pipeline import Pipeline

runner = CliRunner()
_register()
NOW = 1_767_268_800.0
SHIPPED = Classifier.from_files(shipped_rule_files())


@pytest.mark.parametrize(
    ("line", "label", "evidence"),
    [
        # the issue's example: RFC 5321's 550 fallback in rules/iana.toml, nothing else
        ("550 weird thing foo 123", "InvalidRecipient", REPLY_CODE),
        ("550", "InvalidRecipient", REPLY_CODE),
        ("550 5.0.0 weird thing foo 123", "InvalidRecipient", REPLY_CODE),  # uninformative X.0.0
        ("550 5.1.1 weird thing foo 123", "InvalidRecipient", ENHANCED_CODE),
        ("552 5.2.2 zork", "QuotaIssues", ENHANCED_CODE),
        (
            "550 5.1.1 The email account that you tried to reach does not exist.",
            "InvalidRecipient",
            WORDING,
        ),
        ("550 Requested action not taken: mailbox unavailable, user unknown", None, WORDING),
    ],
)
def test_shipped_rules_evidence(line: str, label: str | None, evidence: str) -> None:
    result = SHIPPED.classify(line)
    if label is not None:
        assert result.label == label
    assert result.evidence == evidence
    assert SHIPPED.classify_uncached(line) is result  # one long-lived object per (rule, evidence)
    assert SHIPPED.explain(line).evidence == evidence


def test_uncategorized_has_no_evidence() -> None:
    assert SHIPPED.classify("299 nothing anyone wrote a rule for").evidence is None


@pytest.mark.parametrize(
    ("pattern", "line", "evidence"),
    [
        (r"^5\d\d ", "554 go away", REPLY_CODE),
        (r"^55[0-4]", "550-5.7.1 relaying denied", REPLY_CODE),
        (r"^\d{3} 5\.1\.1 ", "550 5.1.1 go away", ENHANCED_CODE),
        (r"^\d{3} 5\.1\.1 ", "550 5.1.1 ", ENHANCED_CODE),
        (r"(?i)user unknown", "550 5.1.1 User unknown", WORDING),
        (r"^550 5\.1\.1 .*unknown", "550 5.1.1 user unknown", WORDING),
        (r"no such user", "no such user here", WORDING),  # no reply code at all
        # an alternation rests on whichever branch matched this line
        (r"^550 (5\.1\.1 |.*no such user)", "550 5.1.1 whatever", ENHANCED_CODE),
        (r"^550 (5\.1\.1 |.*no such user)", "550 no such user", WORDING),
    ],
)
def test_evidence_of_any_rules_file(tmp_path: Path, pattern: str, line: str, evidence: str) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text(f"[rules]\nInvalidRecipient = ['{pattern}']\n")
    result = Classifier.from_files([rules]).classify(line)
    assert result.label == "InvalidRecipient"
    assert result.evidence == evidence


def test_evidence_of_probes_only_the_head_of_the_line() -> None:
    asked: list[str] = []
    assert evidence_of("421 4.7.0 try later", lambda t: asked.append(t) or False) == WORDING
    assert asked == ["421", "421 ", "421 4.7.0 "]
    asked.clear()
    assert evidence_of("451 busy", lambda t: asked.append(t) or False) == WORDING
    assert asked == ["451", "451 "]  # no enhanced code to ask about


def _analyzer(**kw: Any) -> Analyzer:
    return Analyzer(
        CategoryTable.shipped(),
        ProviderMatcher.shipped(),
        BatchAggregator(window_s=60),
        SuppressionEvents(),
        clock=lambda: NOW,
        **kw,
    )


def _bounce(content: str, enhanced: tuple[int, int, int] | None, rcpt: str) -> bytes:
    response: dict[str, Any] = {"code": 550, "content": content, "command": None}
    if enhanced is not None:
        c, s, d = enhanced
        response["enhanced_code"] = {"class": c, "subject": s, "detail": d}
    return orjson.dumps(
        {
            "type": "Bounce",
            "id": rcpt,
            "recipient": rcpt,
            "site": "mx.example.net",
            "event_time": "2026-01-01T00:00:05Z",
            "response": response,
        }
    )


def _run(analyzer: Analyzer, native_path: bool = False) -> tuple[list[Any], dict[str, str | None]]:
    """Three hard InvalidRecipient bounces, one per kind of evidence, through a pipeline; the
    outputs to "supp" are the hard suppression events the stage would fold."""

    class Source:
        current = SHIPPED

    pipeline = Pipeline(
        Source(),
        output_topic="out",
        dlq_topic="dlq",
        analyzer=analyzer,
        suppression_events_topic="supp",
        clock=lambda: NOW,
        native=native_path,
    )
    values = [
        _bounce("weird thing foo 123", None, "code@example.net"),
        _bounce("weird thing foo 123", (5, 1, 1), "enhanced@example.net"),
        _bounce("The email account that you tried to reach does not exist.", (5, 1, 1), "w@x.net"),
    ]
    messages = [Message(topic="in", partition=0, offset=i, value=v) for i, v in enumerate(values)]
    outputs, _ = pipeline.process(messages)
    evidence = {}
    for o in outputs:
        if o.topic == "out":
            rec = orjson.loads(o.value)
            assert rec["classification"]["category"] == "hard"
            assert rec["bounce_classification"] == "InvalidRecipient"  # the label is kept
            evidence[rec["recipient"]] = rec["classification"]["evidence"]
    return outputs, evidence


@pytest.mark.parametrize("native_path", [pytest.param(True, id="native"), False])
def test_a_reply_code_alone_neither_suppresses_nor_hides_a_gap(native_path: bool) -> None:
    if native_path and not native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")
    analyzer = _analyzer()
    outputs, evidence = _run(analyzer, native_path)
    assert evidence == {
        "code@example.net": REPLY_CODE,
        "enhanced@example.net": ENHANCED_CODE,
        "w@x.net": WORDING,
    }
    suppressed = [o.key for o in outputs if o.topic == "supp"]
    assert suppressed == [b"enhanced@example.net", b"w@x.net"]
    # the batch's gap lines, as the fold takes them (the native path's included)
    rows = analyzer.aggregator.finish().values()
    assert [line for row in rows for line in row.examples.values()] == ["550 weird thing foo 123"]


def test_suppress_evidence_is_a_setting() -> None:
    analyzer = _analyzer(suppress_evidence=[WORDING, ENHANCED_CODE, REPLY_CODE])
    outputs, _ = _run(analyzer)
    suppressed = [o.key for o in outputs if o.topic == "supp"]
    assert suppressed == [b"code@example.net", b"enhanced@example.net", b"w@x.net"]
    only_wording = _analyzer(suppress_evidence=[WORDING])
    outputs, _ = _run(only_wording)
    assert [o.key for o in outputs if o.topic == "supp"] == [b"w@x.net"]


def test_unknown_evidence_is_a_one_line_configuration_error(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("STREAMER_SUPPRESS_EVIDENCE", '["wording", "hunch"]')
    with pytest.raises(ConfigError, match=r"suppress_evidence.*unknown evidence \['hunch'\]"):
        load_settings()
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0
    assert "unknown evidence ['hunch']" in res.stderr


def test_explain_prints_the_evidence() -> None:
    res = runner.invoke(app, ["explain", "550 weird thing foo 123"])
    assert res.exit_code == 0, res.output
    assert "label:  InvalidRecipient" in res.output
    assert (
        "evidence: reply-code (only the reply code matched: a rule gap; by default no address "
        "is suppressed on it)"
    ) in res.output
    res = runner.invoke(app, ["explain", "--json", "550 5.1.1 weird thing"])
    assert json.loads(res.output)["evidence"] == ENHANCED_CODE


def test_explain_says_what_the_worker_does_with_a_hard_label_on_weak_evidence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The action line follows ``suppress_evidence``, as the worker does, not the label alone."""
    res = runner.invoke(app, ["explain", "550 weird thing foo 123"])
    assert (
        "category: hard (action: none: reply-code evidence suppresses no address "
        "(suppress_evidence))\n"
    ) in res.output
    res = runner.invoke(app, ["explain", "--json", "550 5.1.1 user unknown"])
    assert json.loads(res.output)["action"] == "suppress the address"
    monkeypatch.setenv("STREAMER_SUPPRESS_EVIDENCE", '["reply-code"]')
    res = runner.invoke(app, ["explain", "550 weird thing foo 123"])
    assert "category: hard (action: suppress the address)\n" in res.output, res.output


def test_gaps_count_reply_code_matches(tmp_path: Path) -> None:
    lines = ["550 weird thing foo 1", "550 weird thing foo 2", "550 5.1.1 user unknown", "299 x"]
    collector = GapCollector(SHIPPED)
    for line in lines:
        collector.add_line(line)
    assert (collector.responses, collector.gaps) == (4, 3)
    assert (collector.uncategorized, collector.reply_code_only) == (1, 2)
    assert collector.top(1)[0].template == "550 weird thing foo {n}"
    src = tmp_path / "lines.txt"
    src.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["gaps", str(src)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == (
        "3 of 4 responses are rule gaps (1 uncategorized, 2 classified by the reply code "
        "alone), 2 templates; top 2:"
    )
    res = runner.invoke(app, ["classify", "--lines", "--summary", "--json", str(src)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["evidence"] == {REPLY_CODE: 2, WORDING: 1}
    assert sum(g["count"] for g in doc["gaps"]) == 3


def test_the_memo_asks_the_rule_once_per_head() -> None:
    asked: list[tuple[int, str]] = []

    def matches(index: int, text: str) -> bool:
        asked.append((index, text))
        return text == "550"

    memo = EvidenceMemo(matches, capacity=2)
    assert memo(7, "550 weird 1") == memo(7, "550 weird 2") == REPLY_CODE
    assert asked == [(7, "550")]  # the second line has the same head: not asked again
    assert memo(7, "550 5.1.1 x") == REPLY_CODE  # another head
    assert memo(8, "451 4.7.1 busy") == WORDING
    assert len(memo._memo) <= 2  # bounded
