"""Rust `regex` semantics reproduced on RE2: each known trap against a fixed expected answer,
the refusals Rust makes, and a property test against the `regex` module as reference."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import rust_regex
from streamer.config import shipped_rule_files
from streamer.devkit.bench.classify import builtin_rules_toml, generated_rules_toml
from streamer.engine import MatchEngine
from streamer.rust_regex import (
    RustRegexError,
    Translation,
    case_fold,
    encode_for_boundaries,
    translate,
    translate_fast,
    translate_full,
    unicode_word,
)


def rust_match(pattern: str, text: str) -> bool:
    """One pattern through the real engine path (set and per-pattern regex must agree)."""
    engine = MatchEngine([translate(pattern)])
    via_set = engine.first_match(text) == 0
    assert via_set == engine.matches(0, text), (pattern, text)
    return via_set


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        # \d is Unicode (Nd) in Rust, ASCII in RE2 and (?a) Python
        (r"\d", "٥", True),
        (r"^\d+$", "１２３", True),
        (r"(?-u:\d)", "٥", False),
        (r"[[:digit:]]", "٥", False),
        # $ matches only at the very end (Python's $ also matches before a final \n)
        (r"^a$", "a\n", False),
        (r"^a$", "a", True),
        (r"(?m)^a$", "a\nb", True),
        (r"a\z", "a\n", False),
        (r"\Aa", "ba", False),
        (r"(?m)^b", "a\nb", True),
        (r"^b", "a\nb", False),
        # case-insensitivity: Unicode simple case folding
        (r"(?i)straße", "STRAẞE", True),
        (r"(?i)σας", "ΣΑΣ", True),
        (r"(?i)k", "\u212a", True),  # Kelvin sign folds to k
        (r"(?i)ss", "ß", False),  # no full case folding
        (r"(?i)I", "ı", False),  # no Turkic folding
        (r"(?i)[^a]", "A", False),  # fold then negate, like Rust
        (r"(?i:[a[^b]])", "B", False),
        (r"(?i:[\w&&[^a]])", "A", False),  # Rust folds operands before the set operation
        (r"(?i)\p{Lu}", "a", True),
        (r"(?i)a(?-i)b", "AB", False),
        (r"(?i)a(?-i)b", "Ab", True),
        # Unicode classes
        (r"\pL", "ж", True),
        (r"\p{Greek}", "λ", True),
        (r"\p{Greek}", "l", False),
        (r"\p{sc=Cyrillic}", "ж", True),
        (r"\P{L}", "ж", False),
        (r"\p{Alphabetic}", "ª", True),
        (r"[[:alpha:]]", "é", False),  # POSIX classes are ASCII-only
        (r"[[:alpha:]]+", "abc", True),
        (r"[[:^alpha:]]", "a", False),
        (r"\w", "é", True),
        (r"\w", "\u0301", True),  # marks are word characters
        (r"\s", "\u2003", True),  # em space is White_Space
        (r"\s", "\u200b", False),  # zero width space is not
        (r"\S", "\u00a0", False),
        # Rust class set operations
        (r"[a-z&&[^aeiou]]", "e", False),
        (r"[a-z&&[^aeiou]]", "f", True),
        (r"[0-9--4]", "4", False),
        (r"[a-c~~b-d]", "b", False),
        (r"[a-c~~b-d]", "d", True),
        (r"[\w--\d]", "5", False),
        # dot and (?s)
        (r"a.b", "a\nb", False),
        (r"(?s)a.b", "a\nb", True),
        (r"a.b", "a\rb", True),
        (r"(?R)a.b", "a\rb", False),
        # verbose mode
        (r"(?x) 550 \  user # a comment", "550 user", True),
        (r"(?x) a [ b ] c", "abc", True),
        # escapes Rust allows
        (r"\x41\x{1F600}\u00e9\U0001F600", "A😀é😀", True),
        (r"\/\'\%\@\_", "/'%@_", True),
        (r"\.", "a", False),
        # repetitions
        (r"^a{2,3}$", "aaaa", False),
        (r"^a{2,}$", "aaaa", True),
        (r"^(?U)a+?$", "aa", True),
        # Unicode word boundaries, ASCII and non-ASCII text
        (r"\bfoo\b", "a foo b", True),
        (r"\bfoo\b", "afoo", False),
        (r"\bé", "x é", True),
        (r"\bé", "xé", False),
        (r"é\b", "é_", False),
        (r"é\b", "é-", True),
        (r"\bspam\b", "éspam", False),  # é is a word character: no boundary
        (r"\bspam\b", "—spam—", True),  # em dash is not
        (r"a\Bé", "aé", True),
        (r"\B", "é", False),
        (r"(?-u:\b)spam", "éspam", True),  # ASCII boundary: é is not a word byte
        (r"user\b", "user_é", False),
        (r"_\b", "_é x", False),
        (r"(?i)\bSS\b", "ss-ſs", True),
        # named groups in both spellings
        (r"(?P<a>x)(?<b>y)", "xy", True),
    ],
)
def test_rust_semantics(pattern: str, text: str, expected: bool) -> None:
    assert rust_match(pattern, text) is expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(?=a)", "look-around"),
        (r"(?!a)", "look-around"),
        (r"(?<=a)b", "look-around"),
        (r"(?<!a)b", "look-around"),
        (r"(a)\1", "backreferences"),
        (r"(?P<n>a)(?P=n)", "backreferences"),
        (r"\k<n>", "backreferences"),
        (r"[a", "unclosed character class"),
        (r"(a", "unclosed group"),
        (r"a)", "unopened group"),
        (r"[z-a]", "start > end"),
        (r"a{3,2}", "invalid repetition"),
        (r"a{1001}", "above 1000"),
        (r"*a", "missing expression"),
        (r"a**", "nested repetition"),
        (r"\p{NoSuchProperty}", "unknown Unicode class"),
        (r"\q", "unrecognized escape"),
        (r"\<word", "not supported"),
        (r"\b{start}", "not supported"),
        (r"(?mR)^a", "CRLF"),
        (r"(?-u:.)", "invalid UTF-8"),
        (r"(?-u)[^a]", "invalid UTF-8"),
        (r"(?-u)\pL", "Unicode"),
        (r"(?z)a", "unrecognized flag"),
        (r"\x{110000}", "code point"),
        (r"a\b(?-u:\b)", "mixing"),
    ],
)
def test_refused(pattern: str, reason: str) -> None:
    with pytest.raises(RustRegexError) as info:
        translate(pattern)
    assert reason in str(info.value)
    assert "offset" in str(info.value)


def test_linear_time_on_hostile_lines() -> None:
    # Correctness only (speed is measured by `streamer bench classify`): the classic
    # catastrophic-backtracking shapes still give the right answer on 16 KB lines.
    engine = MatchEngine([translate(p) for p in (r"^550.+User.+unknown$", r"^(a+)+$")])
    assert engine.first_match("550 " + "User " * 3300) == -1
    assert engine.first_match("550 " + "User " * 3300 + "unknown") == 0
    assert engine.first_match("a" * 16384 + "!") == -1


def test_encoding_marks_exactly_the_non_ascii_word_characters() -> None:
    assert encode_for_boundaries("a_é—b") == "a___é_—b"
    word = unicode_word()
    assert (0x5F, 0x5F) in word or any(lo <= 0x5F <= hi for lo, hi in word)


def test_case_fold_orbits() -> None:
    assert case_fold(((ord("k"), ord("k")),)) == ((0x4B, 0x4B), (0x6B, 0x6B), (0x212A, 0x212A))
    assert case_fold(((ord("k"), ord("k")),), ascii_only=True) == ((0x4B, 0x4B), (0x6B, 0x6B))


# ------------------------------------------------------------------------------------------
# Property test: our engine vs the `regex` module on the syntax both read the same way.

_ALPHABET = "abAB_ 1٥éÉßẞσςΣ\u212ak—\t"
_LITERALS = [regex.escape(c) for c in "abAB_ 1éσΣk"]
_ATOMS = [*_LITERALS, ".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "[ab]", "[^a]", "[a-z]"]
# Set operations whose operands are closed under case folding: `regex` folds the result of
# the operation while Rust folds the operands first (checked by fixed cases above instead).
_ATOMS += [r"\pL", r"\p{Greek}", "[[:alpha:]]", r"[\w&&[^\d]]", "[a-z--[aeiou]]"]
_ASSERTIONS = [r"\b", r"\B", "^", "$"]


def _patterns() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(_ATOMS + _ASSERTIONS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, min_size=2, max_size=4).map("".join),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
            st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}"])).map(
                lambda t: f"(?:{t[0]}){t[1]}"
            ),
            inner.map(lambda x: f"(?i:{x})"),
        )

    return st.recursive(leaf, extend, max_leaves=8)


def _reference(pattern: str, text: str) -> bool:
    # `regex` in V1 mode (set operations) without full case folding reads this syntax like
    # Rust, except `$`, which also matches before a final "\n": our lines contain no "\n".
    # POSIX classes are ASCII in Rust but Unicode in `regex`.
    pattern = pattern.replace("[[:alpha:]]", "[A-Za-z]")
    return regex.search("(?-f)" + pattern, text, flags=regex.V1) is not None


_lines = st.text(alphabet=_ALPHABET, max_size=12)


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(pattern=_patterns(), texts=st.lists(_lines, min_size=1, max_size=5))
def test_single_pattern_agrees_with_reference(pattern: str, texts: list[str]) -> None:
    engine = MatchEngine([translate(pattern)])
    for text in texts:
        assert (engine.first_match(text) == 0) == _reference(pattern, text), (pattern, text)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    patterns=st.lists(_patterns(), min_size=1, max_size=12),
    texts=st.lists(_lines, min_size=1, max_size=8),
)
def test_set_agrees_with_per_pattern_reference(patterns: list[str], texts: list[str]) -> None:
    engine = MatchEngine([translate(p) for p in patterns])
    for text in texts:
        expected = next((i for i, p in enumerate(patterns) if _reference(p, text)), -1)
        assert engine.first_match(text) == expected, (patterns, text)
        assert engine.all_matches(text) == [
            i for i, p in enumerate(patterns) if _reference(p, text)
        ]


# ------------------------------------------------------------------------------------------
# The fast path must emit exactly what the complete parser emits, or decline.

_FAST_PIECES = [
    *["abc", "é", "ß", "_x_", " ", "k", "Σσ", "5.1.1", "\t", ",", "-", "#", "ǅ", "\u212a"],
    *[r"\d", r"\D", r"\s", r"\S", r"\w", r"\W", r"\b", r"\B", r"\A", r"\z", r"\.", r"\-"],
    *[r"\x41", r"\x{E9}", r"\u00e9", r"\U0001F600", r"\n", r"\pL", r"\p{Greek}", r"\PN"],
    *[r"\x4", r"\x{}", r"\x{D800}", r"\p{Nope}", r"\p{", r"\k", r"\k<a>", r"\1", r"\<", r"\Q"],
    *["[abc]", "[^a-z]", "[]a]", "[^]a]", r"[\d_-]", "[a-]", "[z-a]", "[a-c&&b]", "[a--b]"],
    *["[[:alpha:]]", r"[\p{Lu}x]", r"[\]]", "[é-ë]", "[^\n]", "[", "]", "{", "}"],
    *["*", "+", "?", "*?", "+?", "??", "{2}", "{1,3}", "{2,}", "{3,1}", "{1001}", "{,2}"],
    *["(", "(?:", ")", "|", ".", "^", "$", "(?i)", "(?i:", "(?P<n>", "(?x)", "(?-u)"],
]


def _fields(tr: Translation) -> tuple[str, str | None, bool]:
    return tr.re2, tr.encoded, tr.unicode_boundary


def _assert_fast_matches_full(pattern: str) -> bool:
    """True when the fast path took the pattern (and then it must equal the full parse)."""
    fast = translate_fast(pattern)
    try:
        full = translate_full(pattern)
    except RustRegexError:
        assert fast is None, pattern  # whatever Rust refuses must get the full error
        return False
    if fast is None:
        return False
    assert _fields(fast) == _fields(full), pattern
    return True


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(
    fold=st.booleans(),
    pieces=st.lists(st.sampled_from(_FAST_PIECES), max_size=10),
)
def test_fast_path_emits_exactly_what_the_full_parser_emits(fold: bool, pieces: list[str]) -> None:
    _assert_fast_matches_full(("(?i)" if fold else "") + "".join(pieces))


_VALID_ATOMS = [
    *["abc", "é", "ß", "_x_", " ", "k", "Σσ", "5", "\t", ",", "-", "#", "ǅ", "\u212a", "."],
    *[r"\d", r"\D", r"\s", r"\S", r"\w", r"\W", r"\.", r"\x{E9}", r"\pL", r"\p{Greek}"],
    *["[abc]", "[^a-z]", "[]a]", r"[\d_-]", "[a-]", "[é-ë]", "[^\n]", r"[\]]"],
]
_VALID_LOOKS = [r"\b", r"\B", r"\A", r"\z", "^", "$"]
_VALID_REPS = ["", "", "*", "+", "?", "*?", "??", "{2}", "{1,3}", "{2,}"]


def _valid_patterns() -> st.SearchStrategy[str]:
    repeated = st.tuples(st.sampled_from(_VALID_ATOMS), st.sampled_from(_VALID_REPS)).map("".join)
    leaf = st.one_of(repeated, st.sampled_from(_VALID_LOOKS))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        concat = st.lists(inner, max_size=4).map("".join)
        group = st.tuples(
            st.sampled_from(["(", "(?:"]),
            st.lists(concat, min_size=1, max_size=3).map("|".join),
            st.sampled_from(_VALID_REPS),
        ).map(lambda t: f"{t[0]}{t[1]}){t[2]}")
        return st.one_of(concat, group, st.lists(concat, min_size=2, max_size=3).map("|".join))

    return st.recursive(leaf, extend, max_leaves=10)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(fold=st.booleans(), pattern=_valid_patterns())
def test_fast_path_takes_valid_patterns_and_matches_the_full_parser(
    fold: bool, pattern: str
) -> None:
    assert _assert_fast_matches_full(("(?i)" if fold else "") + pattern), pattern


def test_fast_path_takes_the_common_syntax() -> None:
    # So the equivalence test above cannot pass by the fast path always declining.
    common = [
        r"(?i)user (?:unknown|not found)\b",
        r"^5\d\d[ -]5\.1\.[01]\b",
        r"(?i)ip (?:address )?(?:\d{1,3}\.){3}\d{1,3} (?:is )?blocked",
        r"(?i)\bblock(?:ed|list)\b.*\breputation\b",
        r"users?\s+\[x1\]$",
        r"(a|b|)*?c{2,}é\x{E9}\pL",
        "",
    ]
    assert all(_assert_fast_matches_full(p) for p in common)
    for declined in [r"(?i:a)b", r"(?x) a", r"[[:alpha:]]", r"[a&&b]", r"(?P<n>a)", r"a(?i)b"]:
        assert translate_fast(declined) is None, declined


def test_fast_path_agrees_on_shipped_and_benchmark_rules() -> None:
    files = [tomllib.loads(Path(f).read_text("utf-8")) for f in shipped_rule_files()]
    files += [tomllib.loads(t) for t in builtin_rules_toml()]
    files.append(tomllib.loads(generated_rules_toml(2000)))
    patterns = [p for doc in files for pats in doc["rules"].values() for p in pats]
    taken = [_assert_fast_matches_full(p) for p in patterns]
    assert sum(taken) >= 0.9 * len(patterns)


def test_unicode_tables_are_built_from_every_code_point() -> None:
    chars = rust_regex._all_chars()
    simple = "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    assert chars == simple
    # The fold table asks only characters that change under a case mapping: check that no
    # character with other cases is missed (the exhaustive table takes every code point).
    assert rust_regex._fold_table()[1] == rust_regex._fold_table_exhaustive()
