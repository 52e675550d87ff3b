"""`streamer validate`, `classify`, `explain` and `bench classify` through the real CLI app."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

import streamer.cli.bench
import streamer.cli.classify
import streamer.config
from streamer.cli import app

FIXTURES = Path(__file__).parent / "fixtures"
RULES = ["--rules", str(FIXTURES / "basic.toml"), "--rules", str(FIXTURES / "second.json")]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMER_CONFIG", raising=False)


def test_validate_ok() -> None:
    files = [str(FIXTURES / n) for n in ("basic.toml", "second.json", "third.json5")]
    res = runner.invoke(app, ["validate", *files])
    assert res.exit_code == 0, res.output
    assert res.stdout == "OK: 8 patterns, 5 labels, 3 files\n"


def test_validate_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules]\nA = ['(?=x)', 'ok', '(a)\\1']\n")
    res = runner.invoke(app, ["validate", str(bad), str(tmp_path / "r.yaml")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"error: {bad}:2: label 'A' pattern #1 '(?=x)': look-around")
    assert "pattern #3" in lines[1] and "backreferences" in lines[1]
    assert "unsupported rules file extension '.yaml'" in lines[2]
    assert res.stdout == ""


def test_classify_lines_in_order_with_malformed_skipped(tmp_path: Path) -> None:
    data = b"550 user unknown\r\nnothing here\n\xff\xfe bad\n552 mailbox full\n"
    res = runner.invoke(app, ["classify", "--lines", *RULES], input=data)
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(o["line"], o["label"]) for o in out] == [  # one row per input line
        ("550 user unknown", "InvalidRecipient"),
        ("nothing here", "Uncategorized"),
        (None, None),
        ("552 mailbox full", "QuotaIssues"),
    ]
    assert out[0]["rule"]["index"] == 1 and out[1]["rule"] is None
    assert out[2]["error"] == "not-utf8"
    assert "<stdin>:3: skipped malformed line (not-utf8)" in res.stderr
    assert "classified 3 lines, skipped 1 malformed" in res.stderr
    # the run hides its start-up from the garbage collector, and gives it back when done
    assert gc.get_freeze_count() == 0


def test_classify_lines_gives_one_row_per_input_line(tmp_path: Path) -> None:
    data = b"550 user unknown\n\n552 mailbox full\n   \n\r\nlast\n"  # 6 lines, 3 blank
    res = runner.invoke(app, ["classify", "--lines", *RULES], input=data)
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["line"] for o in out] == [
        "550 user unknown",
        "",
        "552 mailbox full",
        "   ",
        "",
        "last",
    ]
    assert [o["label"] for o in out][1] == "Uncategorized"
    assert "classified 6 lines, skipped 0 malformed" in res.stderr


def test_classify_records_from_files(tmp_path: Path) -> None:
    rec = {
        "type": "Bounce",
        "response": {"code": 550, "enhanced_code": None, "content": "no such\r\nuser"},
        "keep": {"me": [1, 2]},
    }
    f1 = tmp_path / "a.jsonl"
    f1.write_bytes(orjson.dumps(rec) + b"\n\n" + b'{"type":"Delivery","x":1}\n')
    f2 = tmp_path / "b.jsonl"
    f2.write_bytes(b"[1]\n{oops\n" + orjson.dumps(rec) + b"\n")
    res = runner.invoke(app, ["classify", *RULES, str(f1), str(f2)])
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(out) == 3
    assert out[0]["bounce_classification"] == "InvalidRecipient"
    assert out[0]["keep"] == {"me": [1, 2]}
    assert out[1] == {"type": "Delivery", "x": 1}
    assert out[2]["classification"]["rule"]["file"] == str(FIXTURES / "second.json")
    assert f"{f2}:1: skipped malformed line (not-object)" in res.stderr
    assert f"{f2}:2: skipped malformed line (not-json)" in res.stderr
    assert "classified 3 lines, skipped 2 malformed" in res.stderr


def test_classify_explain_and_missing_input(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["classify", "--lines", "--explain", *RULES, "-", str(tmp_path / "missing")],
        input="550 5.1.1 no such user\n",
    )
    assert res.exit_code == 1  # an unreadable input is reported, the rest still processed
    (obj,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert [m["index"] for m in obj["matches"]] == [0, 6]
    assert "missing: cannot read" in res.stderr


def test_classify_invalid_rules(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": {"A": ["[z-a]"]}}')
    res = runner.invoke(app, ["classify", "--lines", "--rules", str(bad)], input="x\n")
    assert res.exit_code == 2  # a configuration error, as for the worker
    (line,) = res.stderr.splitlines()
    assert (
        line.startswith(f"rules: {bad}:1: label 'A' pattern #1 '[z-a]': ") and "start > end" in line
    )


def test_classify_without_rules_uses_shipped_load_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "load-order.txt").write_text("# shipped\nfirst.toml\n\niana.toml  # last\n")
    (tmp_path / "first.toml").write_text("[rules]\nFirst = ['alpha']\n")
    (tmp_path / "iana.toml").write_text("[rules]\nInvalidRecipient = ['alpha', 'beta']\n")
    monkeypatch.setattr(streamer.config, "SHIPPED_RULES_DIR", tmp_path)
    res = runner.invoke(app, ["classify", "--lines"], input="alpha\nbeta\n")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["label"] for x in res.stdout.splitlines()] == [
        "First",
        "InvalidRecipient",
    ]


def test_explain_text_and_json() -> None:
    res = runner.invoke(app, ["explain", "550 5.1.1 User unknown", *RULES])
    assert res.exit_code == 0, res.output
    assert "label:  InvalidRecipient" in res.stdout
    assert "winner: rule #0 (InvalidRecipient)" in res.stdout
    assert "rule #1 (InvalidRecipient) '(?i)user unknown'" in res.stdout
    res = runner.invoke(app, ["explain", "nothing", "--json", *RULES])
    obj = json.loads(res.stdout)
    assert obj["label"] == "Uncategorized" and obj["rule"] is None and obj["matches"] == []


def test_bench_classify_small_run() -> None:
    from streamer.devkit.bench.classify import builtin_rules_toml, run

    assert 140 <= sum(t.count("'") // 2 for t in builtin_rules_toml()) <= 170
    report = run(lines=200, budget=0.05, large=(300,), load_runs=1)
    cases = [r.case for r in report.rows]
    assert cases[0].startswith("re loop") and "300 generated" in cases[-1]
    assert all(r.per_second > 0 for r in report.rows)
    assert len(report.worst_adversarial_ms) == 2 * 2 * 5  # 2 rule sets, 5 lines, first+median
    assert "vs re loop" in report.table()
    split = report.load_split
    assert split["rules"] == 300 and split["translate_ms"] > 0 and split["compile_ms"] > 0
    assert "fresh process (median of 1)" in report.table()


# --- misspelled predefined labels ------------------------------------------------------------


def test_label_warnings_name_the_closest_predefined_label(tmp_path: Path) -> None:
    from streamer.rules import label_warnings, load_rules

    path = tmp_path / "site.toml"
    path.write_text(
        "[rules]\nInvalidRecipent = ['a']\nquotaissues = ['b']\nOurVendorThrottle = ['c']\n"
        "SpamBlock = ['d']\n"
    )
    warnings = label_warnings(load_rules([path]))
    assert len(warnings) == 2, warnings
    assert "'InvalidRecipent'" in warnings[0] and "did you mean 'InvalidRecipient'" in warnings[0]
    assert warnings[0].startswith(str(path))
    assert "did you mean 'QuotaIssues'" in warnings[1]


def test_shipped_rules_have_no_label_warnings() -> None:
    from streamer.config import shipped_rule_files
    from streamer.rules import label_warnings, load_rules

    assert label_warnings(load_rules(shipped_rule_files())) == []


def test_validate_warns_and_strict_fails(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[rules]\nInvalidRecipent = ['user unknown']\nCustomThing = ['x']\n")
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("OK: 2 patterns")
    (warning,) = res.stderr.strip().splitlines()
    assert warning == (
        f"warning: {path}:2: label 'InvalidRecipent' is not a predefined label; did you mean "
        "'InvalidRecipient'? (custom labels are allowed)"
    )
    strict = runner.invoke(app, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1 and strict.stdout == ""
    # classify loads the same rules: the warning goes to stderr, the output is unchanged
    res = runner.invoke(app, ["classify", "--lines", "--rules", str(path)], input="user unknown\n")
    assert res.exit_code == 0 and "did you mean 'InvalidRecipient'" in res.stderr
    assert json.loads(res.stdout)["label"] == "InvalidRecipent"
    # beside errors: the warning is shown too (a misspelled label may explain them)
    path.write_text("[rules]\nInvalidRecipent = ['user unknown']\nQuotaIssues = ['(x']\n")
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 1
    assert [line.split(":", 1)[0] for line in res.stderr.strip().splitlines()] == [
        "warning",
        "error",
    ]
    assert res.stderr.splitlines()[1].startswith(f"error: {path}:3: label 'QuotaIssues'")


def _to_full_disk(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``streamer ARGS`` with its standard output on /dev/full (every write: ENOSPC)."""
    with open("/dev/full", "wb") as full:
        return subprocess.run(
            [sys.executable, "-m", "streamer", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_disk_is_one_line_and_exit_1(tmp_path: Path, jobs: str) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_text(
        "".join(
            f'{{"type":"Bounce","id":"{i}","response":{{"code":550,"content":"no such user"}}}}\n'
            for i in range(20_000)
        )
    )
    proc = _to_full_disk(["classify", "--jobs", jobs, str(logs)])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "cannot write output: No space left on device" in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_disk_under_response_lines_is_one_line_and_exit_1(tmp_path: Path, jobs: str) -> None:
    # the native loop writes rows straight to the output's descriptor: its error is Python's
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"550 5.1.1 <user{i}@example.com> unknown\n" for i in range(200_000)))
    proc = _to_full_disk(["classify", "--lines", "--jobs", jobs, str(lines)])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "cannot write output: No space left on device" in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("command", [["validate"], ["explain", "550 5.1.1 user unknown"]])
def test_every_command_says_a_full_disk_in_one_line(command: list[str]) -> None:
    proc = _to_full_disk(command)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "cannot write output: No space left on device\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--json"], "usage error: --json only applies to --summary"),
        (["--json", "--top", "3"], "usage error: --json and --top only apply to --summary"),
        (["--summary", "--explain"], "usage error: --explain lists the rules of each record"),
    ],
)
def test_flags_that_would_do_nothing_are_usage_errors(flags: list[str], message: str) -> None:
    res = runner.invoke(app, ["classify", "--lines", *flags], input="550 user unknown\n")
    assert res.exit_code == 2 and res.stderr.startswith(message), res.stderr


def test_counts_agree_with_their_nouns(tmp_path: Path) -> None:
    path = tmp_path / "one.toml"
    path.write_text("[rules]\nInvalidRecipient = ['user unknown']\n")
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    assert res.stdout == "OK: 1 pattern, 1 label, 1 file\n"
    lines = tmp_path / "lines.txt"
    lines.write_text("550 user unknown\n")
    res = runner.invoke(app, ["classify", "--lines", "--summary", "--rules", str(path), str(lines)])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("1 response classified, 0 lines skipped\n")


def test_classify_records_enriches_exactly_as_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``classify --records`` adds ``category`` and ``provider`` like a worker with analytics
    on: every classifiable record of the bundled sample comes out byte for byte as the worker's
    pipeline writes it."""
    from confluent_kafka import Message

    from streamer.analytics.analyzer import Analyzer
    from streamer.classifier import ReloadableClassifier
    from streamer.config import Settings
    from streamer.devkit.sample import load_bundled_sample
    from streamer.pipeline import Pipeline
    from streamer.records import CLASSIFIABLE_TYPES

    for var in [v for v in os.environ if v.startswith("STREAMER_")]:
        monkeypatch.delenv(var)
    sample = [m.value for m in load_bundled_sample() if m.value]
    records = [orjson.loads(v) for v in sample if v.startswith(b"{") and _decodes(v)]
    classifiable = [r for r in records if r.get("type") in CLASSIFIABLE_TYPES]
    src = tmp_path / "sample.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in classifiable))
    res = runner.invoke(app, ["classify", "--records", "--jobs", "1", str(src)])
    assert res.exit_code == 0, res.output
    ours = res.stdout.encode().splitlines()
    settings = Settings()
    pipeline = Pipeline(
        ReloadableClassifier(settings.rule_files),
        output_topic="out",
        dlq_topic="dlq",
        analyzer=Analyzer.from_settings(settings),
        suppression_events_topic="supp",
    )
    messages = [
        Message(topic="in", partition=0, offset=i, value=orjson.dumps(r))
        for i, r in enumerate(classifiable)
    ]
    worker = [o.value for o in pipeline.process(messages)[0] if o.topic == "out"]
    assert len(ours) == len(worker) == len(classifiable) > 200
    assert ours == worker
    res = runner.invoke(app, ["explain", "--json", "452 4.2.2 mailbox full"])
    doc = json.loads(res.stdout)
    assert (doc["label"], doc["category"]) == ("QuotaIssues", "soft")
    assert doc["action"]


def _decodes(value: bytes) -> bool:
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False
