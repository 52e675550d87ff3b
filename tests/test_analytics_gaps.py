"""Rule gaps: collection, the TOML skeleton (valid, matching its examples), the CLI."""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamer.analytics.gaps import Gap, GapCollector, render_toml, template_pattern
from streamer.analytics.templates import template
from streamer.classifier import Classifier
from streamer.cli import _register, app
from streamer.config import shipped_rule_files
from streamer.records import CLASSIFIABLE_TYPES, effective_type
from streamer.rules import load_rules

UNKNOWN = [
    "451 4.9.9 zork failure for <a@example.com> id 3F2A9C11D0",
    "451 4.9.9 zork failure for <bob.smith@mail.example.org> id 0A1B2C3D4E",
    "451 4.9.9 zork failure for <c@x.co.uk> id 99AABBCCDD",
    "KumoMTA internal: odd thing at mx1.example.net (attempt 3)",
    "550 5.9.9 It's a 'quoted' reply from [192.0.2.5]",
]
KNOWN = "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_files(shipped_rule_files())


def test_collector_counts_uncategorized_templates(classifier: Classifier) -> None:
    g = GapCollector(classifier)
    for line in [*UNKNOWN, KNOWN]:
        g.add_line(line)
    g.feed(json.dumps({"type": "Bounce", "response": {"code": 451, "content": "4.9.9 x"}}).encode())
    # a Feedback without a usable report: its response line, as the worker classifies it
    g.feed(json.dumps({"type": "Feedback", "response": {"code": 250, "content": ""}}).encode())
    g.feed(json.dumps({"type": "Delivery", "response": {"code": 250, "content": "ok"}}).encode())
    g.feed(b"{not json\n")
    g.feed(b"\n")
    assert g.responses == 8 and g.uncategorized == 7 and g.skipped == 2
    top = g.top(1)[0]
    assert top == Gap(template(UNKNOWN[0]), 3, UNKNOWN[0])


def test_collector_is_bounded(classifier: Classifier) -> None:
    g = GapCollector(classifier, capacity=10)
    for i in range(500):
        g.add_line(f"451 4.9.9 zork variant{'x' * (i % 50)} {i}")
    assert len(g.summary) <= 10 and len(g.examples) <= 10


def test_template_pattern_matches_its_lines() -> None:
    for line in UNKNOWN:
        pattern = template_pattern(template(line))
        assert pattern.startswith("(?i)^")
        assert re.search(pattern, line), (pattern, line)
    assert template_pattern("550 5.1.1 a.b (c) {n}") == r"(?i)^550 5\.1\.1 a\.b \(c\) [0-9]+"


def test_skeleton_is_valid_toml_and_its_entries_are_valid_rules(
    tmp_path: Path, classifier: Classifier
) -> None:
    g = GapCollector(classifier)
    for line in UNKNOWN:
        g.add_line(line)
    gaps = g.top()
    text = render_toml(gaps)
    assert tomllib.loads(text) == {"rules": {}}  # as written: nothing active
    # uncomment every entry under its own label: a valid rule file whose rules classify
    # their examples
    entries = re.findall(r"^# LABEL = (.*)$", text, flags=re.M)
    assert len(entries) == len(gaps)
    body = "[rules]\n" + "".join(f"Label{i} = {e}\n" for i, e in enumerate(entries))
    path = tmp_path / "filled.toml"
    path.write_text(body)
    filled = Classifier(load_rules([path, *shipped_rule_files()]))
    for i, gap in enumerate(gaps):
        assert filled.classify(gap.example).label == f"Label{i}"


runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _commands() -> None:
    _register()


def test_cli_text_json_toml_and_gzip(tmp_path: Path) -> None:
    plain = tmp_path / "lines.txt"
    plain.write_text("\n".join([*UNKNOWN, KNOWN]) + "\n")
    records = tmp_path / "log.jsonl.gz"
    with gzip.open(records, "wt") as fh:
        for line in UNKNOWN[:3]:
            code, rest = line.split(" ", 1)
            fh.write(
                json.dumps({"type": "Bounce", "response": {"code": int(code), "content": rest}})
                + "\n"
            )
    out_toml = tmp_path / "skeleton.toml"
    result = runner.invoke(
        app, ["gaps", str(plain), str(records), "--top", "2", "--toml", str(out_toml)]
    )
    assert result.exit_code == 0, result.output
    assert (
        "8 of 9 responses are rule gaps (8 uncategorized, 0 classified by the reply code "
        "alone), 3 templates" in result.output
    )
    assert "       6  451 4.9.9 zork failure for <{email}> id {id}" in result.output
    assert f"e.g. {UNKNOWN[0]}" in result.output
    assert "LABEL = " in out_toml.read_text()
    result = runner.invoke(app, ["gaps", "--json", str(plain)])
    doc = json.loads(result.output)
    assert doc["uncategorized"] == 5 and doc["gaps"][0]["count"] == 3
    assert doc["gaps"][0]["pattern"] == template_pattern(doc["gaps"][0]["template"])


def test_cli_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["gaps", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1  # as in classify: an input that cannot be read
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [f"{tmp_path / 'missing.jsonl'}: cannot read: No such file or directory"]


def test_cli_corrupt_gzip_is_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    result = runner.invoke(app, ["gaps", str(bad)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "bad.gz: cannot read" in result.output


def test_cli_zstd_without_or_with_a_corrupt_frame_is_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "log.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    result = runner.invoke(app, ["gaps", str(bad)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{bad}: ")


def test_cli_finds_the_bundled_samples_gaps_with_the_provider_rules_only() -> None:
    """The full shipped rules classify every sample response; with only the provider rules the
    rest are gaps, each shown with a real response line of the sample as its example."""
    from streamer.devkit.sample import bundled_sample_path

    sample = bundled_sample_path()
    lines = set()
    for raw in sample.read_text().splitlines():
        record = json.loads(raw)
        response = record.get("response") or {}
        if effective_type(record) in CLASSIFIABLE_TYPES and response.get("content"):
            lines.add(record["response"]["content"])
    rules = [p for p in shipped_rule_files() if p.name.startswith("providers-")]
    args = ["gaps", "--json", "--top", "50", str(sample)]
    for path in rules:
        args += ["--rules", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["uncategorized"] > 20 and len(doc["gaps"]) > 5
    for gap in doc["gaps"]:
        assert any(content in gap["example"] for content in lines), gap
        assert re.search(gap["pattern"], gap["example"]), gap


def test_a_file_of_records_never_takes_garbage_for_response_lines(
    classifier: Classifier, tmp_path: Path
) -> None:
    """As ``classify`` decides per input: a file whose first line is a record holds records,
    and a line that is none is malformed, not a rule gap. Binary lines are never responses."""
    record = {"type": "Bounce", "response": {"code": 451, "content": "4.9.9 zork failure id 3"}}
    logs = tmp_path / "logs.jsonl"
    logs.write_bytes(json.dumps(record).encode() + b"\nnot json\n[1, 2]\n")
    lines = tmp_path / "lines.txt"
    lines.write_bytes(f"{UNKNOWN[3]}\n".encode() + b"\x7fELF\x00\x01\x02\n")
    res = runner.invoke(app, ["gaps", "--json", str(logs), str(lines)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["responses"] == 2 and doc["uncategorized"] == 2 and doc["skipped"] == 3
    assert {g["example"] for g in doc["gaps"]} == {"451 4.9.9 zork failure id 3", UNKNOWN[3]}
    text = runner.invoke(app, ["gaps", str(logs)])
    assert "skipped 2 malformed lines" in text.stderr
    from streamer.devkit.sample import bundled_sample_path

    sample = runner.invoke(app, ["gaps", str(bundled_sample_path())])
    assert "malformed" not in sample.stderr  # records with nothing to classify are no junk


def test_gaps_and_classify_summary_count_the_same_responses() -> None:
    """``gaps FILE`` and ``classify --summary`` count the same classified responses: a Feedback
    record labelled by its report is one (never a gap), as the worker counts it."""
    from streamer.devkit.sample import bundled_sample_path

    sample = str(bundled_sample_path())
    summary = json.loads(
        runner.invoke(app, ["classify", "--summary", "--json", "--jobs", "1", sample]).stdout
    )
    gaps = json.loads(runner.invoke(app, ["gaps", "--json", sample]).stdout)
    assert gaps["responses"] == summary["classified"] > 0
    feedback = sum(n for label, n in summary["labels"].items() if label.startswith("Feedback"))
    assert feedback > 0  # the sample holds ARF reports: they are in both counts
    assert gaps["gaps_total"] == sum(g["count"] for g in summary["gaps"])
