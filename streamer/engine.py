"""The multi-pattern matcher: RE2 sets answer "which patterns match this line" in linear time.

``re2.Set`` (RE2::Set, unanchored) returns *every* matching pattern index in one DFA pass; the
winner is the lowest index (KumoMTA takes the first index of Rust's ``RegexSet`` matches).

The patterns are split, in index order, into a few sets of at most ``SET_PATTERNS`` (at most
``MAX_SETS`` sets). RE2 builds its DFA lazily, and a set's DFA states combine the positions of
all its patterns: one 610-pattern set spent ~47 µs per line on its first 10,000 distinct
response lines and ~19 µs per cache miss after 100,000 lines, against ~16 and ~10 µs for four
sets of ~150 (an already-seen line: 2.7 against 4.0 µs, and those mostly hit the caches).
The sets are asked in order and the first one with a hit holds the lowest matching index, so a
line matched by an early rule never reaches the later sets. Above ``SPLIT_LIMIT`` patterns the
engine keeps one set: on 2,000 and 10,000 generated patterns (simple ones, few shared states)
four sets were 3-5x slower per new line, every line that matched no early rule paying a pass
per set.

Two safety nets:

* RE2's DFA has a memory budget; when it is exhausted ``Match`` returns "no match" rather than
  an error. Every set therefore ends with an always-matching sentinel pattern, so an empty
  answer can only mean a failed DFA; we then fall back to per-pattern RE2 searches (each
  linear-time) so the answer is still right. ``max_mem`` is raised with the set size so that
  large sets compile and this path stays exceptional.
* Patterns with a Unicode ``\\b``/``\\B`` are exact in the main set only for ASCII lines
  (RE2's ``\\b`` is ASCII). For non-ASCII lines a second set holds their boundary-encoded forms,
  matched against the encoded line (see :mod:`streamer.rust_regex`); it is compiled on the
  first non-ASCII line, since many streams never need it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import re2

from streamer.rust_regex import Translation, encode_for_boundaries

log = logging.getLogger(__name__)

#: Patterns per RE2 set, and the most sets (``MatchEngine``); see the module docstring.
SET_PATTERNS = 160
MAX_SETS = 4
SPLIT_LIMIT = 1000

_BASE_MEM = 128 << 20
_PER_PATTERN_MEM = 32 << 10
_MAX_MEM = 1 << 30


class EngineError(Exception):
    """RE2 rejected a translated pattern (e.g. the compiled program is too large)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _options(n_patterns: int) -> re2.Options:
    opts = re2.Options()
    opts.max_mem = min(_MAX_MEM, _BASE_MEM + _PER_PATTERN_MEM * n_patterns)
    opts.log_errors = False  # we report errors ourselves, with the rule's file and label
    return opts


def _compile_one(pattern: str, opts: re2.Options, index: int) -> re2._Regexp:
    try:
        return re2.compile(pattern, opts)
    except re2.error as exc:
        msg = exc.args[0] if exc.args else str(exc)
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise EngineError(index, f"the RE2 engine rejected it: {msg}") from None


def _build_set(patterns: Sequence[str], opts: re2.Options) -> re2.Set:
    s = re2.Set.SearchSet(opts)
    add = s._set.Add  # the C++ method: the wrapper's per-call overhead adds up over 10,000
    for i, p in enumerate(patterns):
        if add(p.encode()) < 0:
            _compile_one(p, opts, i)  # raises with RE2's own reason
            raise EngineError(i, "the RE2 engine rejected it")
    s.Add("")  # the sentinel: matches every line, so an empty answer means a DFA failure
    try:
        s.Compile()
    except re2.error:
        for i, p in enumerate(patterns):  # name the culprit: the first that fails alone
            alone = re2.Set.SearchSet(opts)
            alone.Add(p)
            try:
                alone.Compile()
            except re2.error:
                raise EngineError(
                    i, "its compiled program exceeds the RE2 memory limit (simplify it)"
                ) from None
        raise EngineError(-1, "the RE2 set failed to compile (too large for max_mem)") from None
    return s


def _scrub(line: str) -> str:
    """Lone surrogates cannot be UTF-8 encoded (and cannot exist in a Rust string)."""
    return line.encode("utf-8", "replace").decode("utf-8")


class MatchEngine:
    """Finds the lowest-index pattern matching a line. Thread-safe; no per-call state."""

    def __init__(self, translations: Sequence[Translation]) -> None:
        self._translations = list(translations)
        n = len(self._translations)
        self._opts = _options(n)
        #: (index of its first pattern, its sentinel's index, its Match) per set, in order
        self._sets: list[tuple[int, int, Callable[[bytes], list[int]]]] = []
        groups = max(1, min(MAX_SETS, -(-n // SET_PATTERNS))) if n <= SPLIT_LIMIT else 1
        size = -(-n // groups) if n else 0
        for start in range(0, max(n, 1), max(size, 1)):
            part = [t.re2 for t in self._translations[start : start + size]]
            match = _build_set(part, _options(len(part)))._set.Match
            self._sets.append((start, len(part), match))
        self._boundary_rules = [i for i, t in enumerate(self._translations) if t.encoded]
        self._boundary_set = frozenset(self._boundary_rules)
        # The encoded set is only needed for non-ASCII lines: built on first use.
        self._boundary_match: Callable[[bytes], list[int]] | None = None
        self._boundary_lock = threading.Lock()
        # Per-pattern regexes for explain() and the fallback path, compiled on first use.
        self._single: list[re2._Regexp | None] = [None] * n
        self._single_encoded: dict[int, re2._Regexp] = {}
        self.fallbacks = 0

    def __len__(self) -> int:
        return len(self._translations)

    def first_match(self, line: str) -> int:
        """Index of the lowest matching pattern, or -1."""
        try:
            data = line.encode()
        except UnicodeEncodeError:
            line = _scrub(line)
            data = line.encode()
        if self._boundary_rules and not line.isascii():
            return self._first_match_unicode(line, data)
        for start, sentinel, match in self._sets:
            hits = match(data)
            if not hits:  # only the DFA failing answers nothing: the sentinel always matches
                return self._first_match_slowly(line)
            best = min(hits)
            if best != sentinel:
                return start + best
        return -1

    def _set_hits(self, data: bytes) -> list[int] | None:
        """Every matching pattern index over all the sets; None when a DFA failed."""
        out: list[int] = []
        for start, sentinel, match in self._sets:
            hits = match(data)
            if not hits:
                return None
            out.extend(start + h for h in hits if h != sentinel)
        return out

    def _first_match_unicode(self, line: str, data: bytes) -> int:
        """A non-ASCII line with Unicode-boundary rules: every set, then the encoded set."""
        hits = self._set_hits(data)
        if hits is not None:
            hits = self._with_unicode_boundaries(line, hits)
        if hits is None:
            return self._first_match_slowly(line)
        return min(hits) if hits else -1

    def _boundary_set_match(self) -> Callable[[bytes], list[int]] | None:
        with self._boundary_lock:
            if self._boundary_match is None:
                enc = [self._translations[i].encoded or "" for i in self._boundary_rules]
                try:
                    self._boundary_match = _build_set(enc, _options(len(enc)))._set.Match
                except EngineError:
                    log.exception("cannot build the Unicode word-boundary set")
                    return None  # the per-pattern path still answers correctly
            return self._boundary_match

    def _with_unicode_boundaries(self, line: str, hits: list[int]) -> list[int] | None:
        match = self._boundary_match or self._boundary_set_match()
        if match is None:
            return None
        ub = self._boundary_set
        kept = [h for h in hits if h not in ub]
        enc_hits = match(encode_for_boundaries(line).encode())
        if not enc_hits:
            return None
        rules = self._boundary_rules
        last = len(rules)
        kept.extend(rules[j] for j in enc_hits if j != last)
        return kept

    def _first_match_slowly(self, line: str) -> int:
        self.fallbacks += 1
        log.warning("RE2 set DFA out of memory; matching patterns one by one for this line")
        for i in range(len(self._translations)):
            if self.matches(i, line):
                return i
        return -1

    # -- per-pattern matching (explain, fallback, tests)

    def _regex(self, i: int) -> re2._Regexp:
        rx = self._single[i]
        if rx is None:
            rx = self._single[i] = _compile_one(self._translations[i].re2, self._opts, i)
        return rx

    def _regex_encoded(self, i: int) -> re2._Regexp:
        rx = self._single_encoded.get(i)
        if rx is None:
            pattern = self._translations[i].encoded or ""
            rx = self._single_encoded[i] = _compile_one(pattern, self._opts, i)
        return rx

    def matches(self, i: int, line: str) -> bool:
        """Does pattern ``i`` alone match ``line`` (Rust semantics)?"""
        if self._translations[i].encoded and not line.isascii():
            return self._regex_encoded(i).search(encode_for_boundaries(_scrub(line))) is not None
        return self._regex(i).search(_scrub(line)) is not None

    def all_matches(self, line: str) -> list[int]:
        """Every matching pattern index, ascending (one regex at a time: for explain)."""
        return [i for i in range(len(self._translations)) if self.matches(i, line)]
