"""Rule files: KumoMTA's merge order, formats, custom labels, version, and every error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.classifier import Classifier
from streamer.rules import PREDEFINED_LABELS, RulesError, label_warnings, load_rules

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_merge_order_matches_kumomta(tmp_path: Path) -> None:
    # The scenario of KumoMTA's own rule-order test: first file, label order, list order.
    f1 = write(tmp_path, "a.toml", '[rules]\nfoo = ["woot", "aaa"]\nbar = ["woot", "aaa", "bbb"]\n')
    f2 = write(tmp_path, "b.toml", '[rules]\nsecond_file = ["bbb", "ccc"]\n')
    rs = load_rules([f1, f2])
    assert [(r.index, r.label, r.pattern) for r in rs.rules] == [
        (0, "foo", "woot"),
        (1, "foo", "aaa"),
        (2, "bar", "woot"),
        (3, "bar", "aaa"),
        (4, "bar", "bbb"),
        (5, "second_file", "bbb"),
        (6, "second_file", "ccc"),
    ]
    c = Classifier(rs)
    assert c.classify("woot").label == "foo"
    assert c.classify("aaa").label == "foo"
    assert c.classify("bbb").label == "bar"
    assert c.classify("ccc").label == "second_file"
    assert c.classify("zzz").label == "Uncategorized"
    assert c.classify("zzz").rule is None


def test_same_label_in_two_files_keeps_file_order(tmp_path: Path) -> None:
    f1 = write(tmp_path, "a.toml", '[rules]\nA = ["x"]\nB = ["y"]\n')
    f2 = write(tmp_path, "b.json", '{"rules": {"A": ["y"]}}')
    c = Classifier(load_rules([f1, f2]))
    assert c.classify("y").label == "B"  # B's rule (index 1) beats the later A rule (index 2)
    assert [r.label for r in c.rules] == ["A", "B", "A"]
    assert c.ruleset.labels == ["A", "B"]


def test_all_three_formats_and_custom_labels() -> None:
    files = [FIXTURES / "basic.toml", FIXTURES / "second.json", FIXTURES / "third.json5"]
    rs = load_rules(files)
    assert rs.files == [str(f) for f in files]
    assert rs.labels == [
        "InvalidRecipient",
        "QuotaIssues",
        "SpamBlock",
        "MyCustomLabel",
        "TransientFailure",
    ]
    assert "MyCustomLabel" not in PREDEFINED_LABELS
    c = Classifier(rs)
    assert c.classify("custom failure 42").label == "MyCustomLabel"
    assert c.classify("451 later").label == "TransientFailure"
    rule = c.classify("custom failure 42").rule
    assert rule is not None and rule.file == str(FIXTURES / "second.json") and rule.index == 5


def test_predefined_labels() -> None:
    assert len(PREDEFINED_LABELS) == 29
    assert PREDEFINED_LABELS[0] == "InvalidRecipient" and PREDEFINED_LABELS[-1] == "Uncategorized"


def test_version_is_a_hash_of_the_files_in_order(tmp_path: Path) -> None:
    f1 = write(tmp_path, "a.toml", '[rules]\nA = ["x"]\n')
    f2 = write(tmp_path, "b.toml", '[rules]\nB = ["y"]\n')
    v12 = load_rules([f1, f2]).version
    assert len(v12) == 12 and int(v12, 16) >= 0
    assert load_rules([f1, f2]).version == v12
    assert load_rules([f2, f1]).version != v12
    f1.write_text('[rules]\nA = ["x", "z"]\n')
    assert load_rules([f1, f2]).version != v12


def errors_of(files: list[Path]) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_rules(files)
    return info.value.errors


def test_unknown_extension_names_the_file(tmp_path: Path) -> None:
    f = write(tmp_path, "rules.yaml", "rules: {}")
    (err,) = errors_of([f])
    assert str(f) in err and "unsupported rules file extension '.yaml'" in err


def test_missing_file(tmp_path: Path) -> None:
    (err,) = errors_of([tmp_path / "nope.toml"])
    assert f"{tmp_path / 'nope.toml'}: cannot read" in err


@pytest.mark.parametrize(
    ("name", "text", "line", "kind"),
    [
        ("bad.toml", '[rules]\nA = ["x"\nB = 1\n', 3, "invalid TOML"),
        ("bad.json", '{\n  "rules": {\n    "A": ["x",]\n  }\n}', 3, "invalid JSON"),
        ("bad.json5", "{\n rules: {\n  A: ['x'\n  }\n}", 4, "invalid JSON5"),
    ],
)
def test_syntax_errors_name_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, kind: str
) -> None:
    f = write(tmp_path, name, text)
    (err,) = errors_of([f])
    assert err.startswith(f"{f}:{line}: {kind}: "), err


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_bytes(b"[rules]\nA = ['\xff']\n")
    (err,) = errors_of([f])
    assert str(f) in err and "UTF-8" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[other]\nA = ['x']\n", "missing the 'rules' table (label = [patterns...])"),
        ("rules = 3\n", "'rules' must be a table mapping labels to lists of patterns"),
        ("[rules]\nA = 'x'\n", "2: label 'A': expected a list of pattern strings, got str"),
        ("[rules]\nA = ['x', 3]\n", "2: label 'A' pattern #2 3: patterns must be strings"),
    ],
)
def test_shape_errors(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path, "r.toml", text)
    (err,) = errors_of([f])
    assert err == f"{f}:{message}" if message[0].isdigit() else err == f"{f}: {message}"


def test_bad_pattern_error_names_everything(tmp_path: Path) -> None:
    f = write(tmp_path, "r.toml", "[rules]\nA = ['ok']\nSpamBlock = ['fine', '(?<!x)spam']\n")
    (err,) = errors_of([f])
    assert err == (
        f"{f}:3: label 'SpamBlock' pattern #2 '(?<!x)spam': look-around, including look-ahead "
        "and look-behind, is not supported (at offset 0)"
    )


def test_every_error_is_reported_and_nothing_half_applies(tmp_path: Path) -> None:
    good = write(tmp_path, "good.toml", "[rules]\nA = ['x']\n")
    bad = write(tmp_path, "bad.toml", r"[rules]" + "\nB = ['(a)\\1', '[z-a]']\n")
    errs = errors_of([good, bad, tmp_path / "missing.json"])
    assert len(errs) == 3
    assert "backreferences are not supported" in errs[0]
    assert f"{bad}:2: label 'B' pattern #2 '[z-a]'" in errs[1]
    assert "missing.json: cannot read" in errs[2]


def test_engine_rejections_are_reported_like_syntax_errors(tmp_path: Path) -> None:
    # Valid Rust, but the program RE2 would build exceeds its memory limit.
    f = write(tmp_path, "r.toml", "[rules]\nBig = ['ok', '\\w{1000}\\w{1000}']\n")
    with pytest.raises(RulesError) as info:
        Classifier.from_files([f])
    assert f"{f}:2: label 'Big' pattern #2 '\\w{{1000}}\\w{{1000}}'" in str(info.value)
    assert "exceeds the RE2 memory limit" in str(info.value)


def test_no_files() -> None:
    assert errors_of([]) == ["no rule files given"]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("r.toml", "[rules]\nA = ['ok']\nB = [\n  'fine',\n  '\\d{2000}',\n]\n", 5),
        ("r.toml", '[rules]\nB = ["fine", "\\\\d{2000}"]\n', 2),
        ("r.json", '{"rules": {\n "A": ["ok"],\n "B": ["fine",\n   "\\\\d{2000}"]}}\n', 4),
        ("r.json5", "{rules: {\n  B: ['fine',\n    '\\\\d{2000}'], // why\n}}\n", 3),
    ],
)
def test_a_bad_pattern_is_named_by_file_line_and_its_text_as_written(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    f = write(tmp_path, name, text)
    (err,) = errors_of([f])
    assert err.startswith(f"{f}:{line}: label 'B' pattern #2 '\\d{{2000}}': "), err


def test_a_label_twice_in_a_json_file_keeps_the_last_list_and_says_so(tmp_path: Path) -> None:
    f = write(tmp_path, "r.json", '{"rules": {\n "A": ["first"],\n "A": ["second"]\n}}\n')
    ruleset = load_rules([f])
    assert [r.pattern for r in ruleset.rules] == ["second"]  # as KumoMTA (serde) reads it
    (note,) = label_warnings(ruleset)
    assert note == (
        f"{f}:3: 'A' appears more than once in the same object; only its last value counts "
        "(as in KumoMTA)"
    )


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # a bad pattern that is the prefix of the one before it
        (
            "a.toml",
            "[rules]\nPolicy = [\n  '(?i)blocked (by|due to) policy',\n  '(?i)blocked (by',\n]\n",
            [":4: label 'Policy' pattern #2"],
        ),
        # a comment naming the label, the same bad pattern under another label first
        (
            "b.toml",
            "# SpamBlock: the sending IP is listed\n"
            "[rules]\nFoo = ['bad(']\nSpamBlock = ['bad(']\n",
            [":3: label 'Foo' pattern #1", ":4: label 'SpamBlock' pattern #1"],
        ),
        # the label's name inside another label's pattern
        (
            "c.toml",
            "[rules]\nBlocked = ['550 Spam: rejected', 'x(']\nSpam = [\n  'ok',\n  'x(',\n]\n",
            [":2: label 'Blocked' pattern #2", ":5: label 'Spam' pattern #2"],
        ),
    ],
)
def test_the_line_is_where_the_pattern_stands(
    tmp_path: Path, name: str, text: str, expected: list[str]
) -> None:
    f = write(tmp_path, name, text)
    errs = errors_of([f])
    assert len(errs) == len(expected), errs
    assert all(e.startswith(f"{f}{x} ") for e, x in zip(errs, expected, strict=True)), errs


def test_each_repeated_json_label_is_warned_on_its_own_line(tmp_path: Path) -> None:
    text = (
        '{"rules": {\n "Spam": ["a"],\n "Other": ["5.7.1 Spam: x"],\n'
        ' "Spam": ["c"],\n "Spam": ["d"]\n}}\n'
    )
    f = write(tmp_path, "d.json", text)
    notes = label_warnings(load_rules([f]))
    assert [n.split(":")[1] for n in notes] == ["4", "5"], notes
