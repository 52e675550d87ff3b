"""The RE2-set engine: lowest index wins, large sets compile, the DFA-failure fallback is right."""

from __future__ import annotations

from streamer.engine import MatchEngine
from streamer.rust_regex import translate


def build(*patterns: str) -> MatchEngine:
    return MatchEngine([translate(p) for p in patterns])


def test_lowest_index_wins_and_all_matches_are_listed() -> None:
    e = build("unknown", r"user\s+unknown", "^550", "nomatch")
    line = "550 user unknown"
    assert e.first_match(line) == 0
    assert e.all_matches(line) == [0, 1, 2]
    assert e.first_match("451 try later") == -1
    assert e.all_matches("451 try later") == []


def test_empty_line_and_empty_pattern() -> None:
    e = build("^$", "x")
    assert e.first_match("") == 0
    assert e.first_match("x") == 1


def test_unicode_boundary_rules_on_non_ascii_lines() -> None:
    # Rule 0 has a Unicode \b (answered by the encoded set for non-ASCII lines); rule 1 not.
    e = build(r"\bspam\b", "spam")
    assert e.first_match("spam") == 0
    assert e.first_match("éspam") == 1  # é is a word character: no boundary before spam
    assert e.first_match("— spam —") == 0
    assert e.first_match("(spam)é") == 0
    assert e.all_matches("éspam") == [1]


def test_lone_surrogates_do_not_crash() -> None:
    e = build("a.b")
    assert e.first_match("a\ud800b") == 0  # replaced by "?" like any unencodable character


def test_ten_thousand_patterns_compile_and_match() -> None:
    patterns = [rf"(?i)error code {i}\b" for i in range(10_000)]
    e = build(*patterns)
    assert len(e) == 10_000 and len(e._sets) == 1  # large sets stay whole (SPLIT_LIMIT)
    assert e.first_match("550 ERROR CODE 9999") == 9999
    assert e.first_match("550 error code 12345") == -1
    assert e.first_match("error code 4200 and error code 17") == 17


def test_failed_set_answer_falls_back_to_per_pattern_matching() -> None:
    # RE2::Set::Match answers "no match" when its DFA runs out of memory. With our budgets we
    # could not provoke that with the pinned RE2 (kManyMatch DFAs reset their cache instead of
    # bailing), so the empty answer is injected: the sentinel must expose it and the
    # per-pattern path must still give the right result.
    e = build("zzz", r"(?i)user\s+unknown", "unknown")
    e._sets = [(start, sentinel, lambda data: []) for start, sentinel, _m in e._sets]
    assert e.first_match("550 USER  unknown") == 1
    assert e.first_match("nothing") == -1
    assert e.fallbacks == 2


def test_patterns_split_over_sets_keep_the_lowest_index() -> None:
    # 500 patterns: 4 sets of 125. A line matching rules in several sets gets the lowest index;
    # one matching only the last set's rules gets that set's first match.
    patterns = [rf"\bcode {i}\b" for i in range(500)]
    patterns[450] = "shared"
    patterns[130] = "shared"
    e = build(*patterns)
    assert len(e._sets) == 4 and [s[0] for s in e._sets] == [0, 125, 250, 375]
    assert e.first_match("550 shared and code 499") == 130
    assert e.first_match("550 code 499 and code 451") == 451
    assert e.first_match("code 3 then shared") == 3
    assert e.first_match("nothing at all") == -1
    # non-ASCII lines take every set (Unicode boundaries): same answers
    assert e.first_match("é code 499 — shared") == 130
    assert e.all_matches("é code 499 — shared") == [130, 450, 499]


def test_split_sets_agree_with_one_pattern_at_a_time_on_the_shipped_rules() -> None:
    # The shipped rules span several sets; the answer must be the lowest pattern that matches
    # on its own, for realistic lines and for non-ASCII variants of them.
    from streamer.config import shipped_rule_files
    from streamer.devkit.sample import generate_records
    from streamer.records import CLASSIFIABLE_TYPES, response_line
    from streamer.rules import load_rules

    ruleset = load_rules(shipped_rule_files())
    e = MatchEngine(ruleset.translations)
    assert len(e._sets) > 1
    lines = {
        response_line(r["response"])
        for r in generate_records(3000, seed=11)
        if r["type"] in CLASSIFIABLE_TYPES and "response" in r
    }
    sample = sorted(lines)[:150]
    for line in [*sample, *(f"é {line} ü" for line in sample[:40])]:
        expected = next((i for i in range(len(e)) if e.matches(i, line)), -1)
        assert e.first_match(line) == expected, line
