"""Translate Rust ``regex`` crate syntax into RE2 syntax with Rust's semantics.

KumoMTA's users write Rust regexes; we match with RE2 (linear time, multi-pattern sets). The
two dialects share most syntax but not all meaning, so every pattern is parsed here and
re-emitted with every character class spelled out as explicit code point ranges:

* ``\\d \\w \\s`` (and negations, inside or outside brackets) are Unicode-aware as in Rust
  (``\\p{Nd}``, UTS#18 word characters, ``\\p{White_Space}``); ``(?-u)`` makes them ASCII.
* ``(?i)`` uses Unicode *simple* case folding, applied the way Rust applies it (each class
  operand is folded before negation and set operations), so no RE2 case flag is emitted.
* Rust-only syntax is handled: ``(?x)`` verbose mode, class set operations ``&& -- ~~``,
  ``[[:alpha:]]``, ``\\u{..}``/``\\U..`` escapes, ``\\p{sc=Greek}``-style properties,
  escaping any ASCII punctuation.
* ``$`` without ``(?m)`` only matches at the very end (RE2 agrees, unlike Python's ``re``).
* Look-around and back-references are refused, exactly like the Rust crate refuses them.

Unicode word boundaries: RE2's ``\\b`` only knows ASCII word characters. For ASCII text that
is exactly Rust's Unicode ``\\b``. For non-ASCII text we use a second, *encoded* form of each
pattern that has a Unicode ``\\b``/``\\B``: the text is rewritten so that every ``_`` becomes
``__`` and every non-ASCII word character ``c`` becomes ``_c_`` (:func:`encode_for_boundaries`).
In the rewritten text the ASCII boundary between two encoded units is exactly the Unicode
boundary between the original characters, and the encoded pattern is anchored to consume
whole units only, so RE2 answers the Unicode question exactly and still in linear time.

Not supported (a clear error, never a silent difference): ``\\b{start}``-style and ``\\<``/``\\>``
assertions, ``(?mR)`` CRLF-aware line anchors, repetition counts above 1000, and mixing
``(?-u:\\b)`` with a Unicode ``\\b`` in one pattern.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field, replace

import regex as _uniregex

MAX_CP = 0x10FFFF
_SURR_LO, _SURR_HI = 0xD800, 0xDFFF
MAX_REPEAT = 1000  # RE2's limit

Ranges = tuple[tuple[int, int], ...]


class RustRegexError(ValueError):
    """A pattern Rust's regex crate would reject (or that we cannot reproduce exactly)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.reason = message
        self.offset = offset


# --------------------------------------------------------------------------------------------
# Code point sets as sorted, disjoint, non-adjacent inclusive ranges.


def _normalize(rs: list[tuple[int, int]]) -> Ranges:
    rs = sorted(rs)
    out: list[tuple[int, int]] = []
    for lo, hi in rs:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def union(a: Ranges, b: Ranges) -> Ranges:
    return _normalize([*a, *b])


def complement(a: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in a:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return tuple(out)


def intersect(a: Ranges, b: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def difference(a: Ranges, b: Ranges) -> Ranges:
    return intersect(a, complement(b)) if b else a


def sym_difference(a: Ranges, b: Ranges) -> Ranges:
    return union(difference(a, b), difference(b, a))


def contains(a: Ranges, cp: int) -> bool:
    i = bisect.bisect_right(a, (cp, MAX_CP + 1)) - 1
    return i >= 0 and a[i][0] <= cp <= a[i][1]


ASCII: Ranges = ((0, 0x7F),)
ALL: Ranges = ((0, MAX_CP),)
EMPTY: Ranges = ()


def _chars(s: str) -> Ranges:
    return _normalize([(ord(c), ord(c)) for c in s])


ASCII_DIGIT = ((0x30, 0x39),)
ASCII_WORD = _normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
ASCII_SPACE = _normalize([(0x09, 0x0D), (0x20, 0x20)])
POSIX: dict[str, Ranges] = {
    "alnum": _normalize([(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)]),
    "alpha": _normalize([(0x41, 0x5A), (0x61, 0x7A)]),
    "ascii": ASCII,
    "blank": _chars("\t "),
    "cntrl": _normalize([(0, 0x1F), (0x7F, 0x7F)]),
    "digit": ASCII_DIGIT,
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": _normalize([(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)]),
    "space": ASCII_SPACE,
    "upper": ((0x41, 0x5A),),
    "word": ASCII_WORD,
    "xdigit": _normalize([(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)]),
}


# --------------------------------------------------------------------------------------------
# Unicode data, taken from the `regex` module (it implements UTS#18 like Rust's crate).


@functools.cache
def _all_chars() -> str:
    """Every scalar value once; index i is code point i below the surrogates, i + 0x800 above.

    Built as UTF-32-LE bytes with slice assignments (byte 0 counts 0..255, byte 1 steps every
    256 code points, byte 2 every 65,536): ten times faster than a million ``chr`` calls."""
    n = MAX_CP + 1  # 17 planes of 65,536
    buf = bytearray(4 * n)
    buf[0::4] = bytes(range(256)) * (n // 256)
    buf[1::4] = b"".join(bytes([b]) * 256 for b in range(256)) * (n // 65536)
    buf[2::4] = b"".join(bytes([plane]) * 65536 for plane in range(n // 65536))
    del buf[4 * _SURR_LO : 4 * (_SURR_HI + 1)]
    return buf.decode("utf-32-le")


def _index_to_cp(i: int) -> int:
    return i if i < _SURR_LO else i + (_SURR_HI - _SURR_LO + 1)


@functools.cache
def _uniregex_set(expr: str) -> Ranges:
    """The code points matched by a one-character `regex` module expression."""
    pat = _uniregex.compile(f"(?:{expr})+", _uniregex.V1)
    out: list[tuple[int, int]] = []
    for m in pat.finditer(_all_chars()):
        lo, hi = _index_to_cp(m.start()), _index_to_cp(m.end() - 1)
        if lo < _SURR_LO <= hi:  # a run across the surrogate gap
            out += [(lo, _SURR_LO - 1), (_SURR_HI + 1, hi)]
        else:
            out.append((lo, hi))
    return _normalize(out)


def unicode_word() -> Ranges:
    return _uniregex_set(r"\w")


def unicode_digit() -> Ranges:
    return _uniregex_set(r"\p{Nd}")


def unicode_space() -> Ranges:
    return _uniregex_set(r"\p{White_Space}")


@functools.cache
def unicode_property(spec: str, offset: int = 0) -> Ranges:
    """``\\p{spec}``: Rust resolves a bare name as general category, then script, then binary."""
    if "!=" in spec:
        name, value = spec.split("!=", 1)
        return complement(unicode_property(f"{name}={value}", offset))
    spec = spec.replace(":", "=", 1)
    candidates = [spec] if "=" in spec else [f"gc={spec}", f"sc={spec}", spec]
    for cand in candidates:
        if "=" in cand:  # never let `regex` read `\p{..}` syntax we did not intend
            name, value = cand.split("=", 1)
            if not all(c.isalnum() or c in " _-.&" for c in name + value):
                continue
        elif not all(c.isalnum() or c in " _-.&" for c in cand):
            continue
        try:
            return _uniregex_set(rf"\p{{{cand}}}")
        except _uniregex.error:
            continue
    raise RustRegexError(f"unknown Unicode class or property: \\p{{{spec}}}", offset)


_TURKIC = {0x49: {0x131}, 0x69: {0x130}, 0x130: {0x69}, 0x131: {0x49}}


@functools.cache
def _fold_table() -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """Simple case folding orbits (CaseFolding.txt statuses C+S, Turkic T excluded)."""
    get = _uniregex._regex.get_all_cases
    flags = _uniregex.IGNORECASE | _uniregex.UNICODE
    orbits: dict[int, tuple[int, ...]] = {}
    # A character with other cases changes under some case mapping, so only those are asked
    # (3,000 instead of 130,000 calls); tests check it against every code point. Every cased
    # character lives in the first two planes.
    for m in _case_candidates().finditer(_all_chars(), 0, 0x20000 - (_SURR_HI - _SURR_LO + 1)):
        cp = _index_to_cp(m.start())
        cases = set(get(flags, cp)) - _TURKIC.get(cp, set())
        if len(cases) > 1:
            orbits[cp] = tuple(sorted(cases))
    return sorted(orbits), orbits


def _case_candidates() -> _uniregex.Pattern[str]:
    return _uniregex.compile(r"[\p{Changes_When_Casemapped}\p{Changes_When_Casefolded}]")


def _fold_table_exhaustive() -> dict[int, tuple[int, ...]]:
    """The orbits computed from every code point (slow; the reference for a test)."""
    get = _uniregex._regex.get_all_cases
    flags = _uniregex.IGNORECASE | _uniregex.UNICODE
    orbits: dict[int, tuple[int, ...]] = {}
    for cp in range(0x20000):
        if not _SURR_LO <= cp <= _SURR_HI:
            cases = set(get(flags, cp)) - _TURKIC.get(cp, set())
            if len(cases) > 1:
                orbits[cp] = tuple(sorted(cases))
    return orbits


def case_fold(a: Ranges, ascii_only: bool = False) -> Ranges:
    """Close a set under simple case folding (ASCII letters only when Unicode is off)."""
    if ascii_only:
        extra = []
        for lo, hi in intersect(a, POSIX["alpha"]):
            for cp in range(lo, hi + 1):
                extra.append((cp ^ 0x20, cp ^ 0x20))
        return union(a, tuple(extra))
    keys, orbits = _fold_table()
    extra = []
    for lo, hi in a:
        i = bisect.bisect_left(keys, lo)
        while i < len(keys) and keys[i] <= hi:
            extra.extend((c, c) for c in orbits[keys[i]])
            i += 1
    return union(a, _normalize(extra)) if extra else a


@functools.lru_cache(maxsize=4096)
def _folded_literal(cp: int, ascii_only: bool) -> Ranges:
    return case_fold(((cp, cp),), ascii_only=ascii_only)


# --------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Flags:
    i: bool = False
    m: bool = False
    s: bool = False
    U: bool = False
    u: bool = True
    x: bool = False
    R: bool = False


@dataclass
class CharSet:
    ranges: Ranges


@dataclass
class Lit:
    """A run of literal characters matched case-sensitively (the common case, parsed fast)."""

    text: str


@dataclass
class Look:
    kind: str  # start, end, start_line, end_line, word, not_word, ascii_word, ascii_not_word


@dataclass
class Concat:
    items: list[Node]


@dataclass
class Alt:
    items: list[Node]


@dataclass
class Repeat:
    item: Node
    lo: int
    hi: int | None
    greedy: bool


Node = CharSet | Lit | Look | Concat | Alt | Repeat


@dataclass
class Translation:
    """A Rust pattern in RE2 syntax; ``encoded`` is set when Unicode ``\\b`` needs it."""

    source: str
    re2: str
    encoded: str | None = None
    unicode_boundary: bool = False
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Parser (follows regex-syntax's grammar)

#: Characters that are not plain literals (outside classes, without the x flag).
_SPECIAL = frozenset("\\.+*?()|[]{}^$")

_META_NO_ESCAPE = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz<>")


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.pos = 0
        self.has_unicode_boundary = False
        self.has_ascii_boundary = False

    # -- helpers
    def error(self, msg: str, at: int | None = None) -> RustRegexError:
        return RustRegexError(msg, self.pos if at is None else at)

    def peek(self, k: int = 0) -> str | None:
        j = self.pos + k
        return self.p[j] if j < len(self.p) else None

    def eof(self) -> bool:
        return self.pos >= len(self.p)

    def skip_space(self, flags: Flags) -> None:
        if not flags.x:
            return
        while not self.eof():
            c = self.p[self.pos]
            if c.isspace():
                self.pos += 1
            elif c == "#":
                while not self.eof() and self.p[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    # -- grammar
    def parse(self) -> Node:
        node = self.parse_alternation(Flags(), top=True)
        return node

    def parse_alternation(self, flags: Flags, top: bool) -> Node:
        branches: list[Node] = []
        items: list[Node] = []
        while True:
            self.skip_space(flags)
            c = self.peek()
            if c is None:
                if not top:
                    raise self.error("unclosed group")
                break
            if c == ")":
                if top:
                    raise self.error("unopened group")
                break
            if c == "|":
                self.pos += 1
                branches.append(Concat(items))
                items = []
                continue
            if c in "*+?{":
                if not items:
                    raise self.error("repetition operator missing expression")
                if isinstance(items[-1], Repeat):
                    raise self.error("nested repetition is not allowed (wrap it in a group)")
                items[-1] = self.parse_repetition(items[-1], flags)
                continue
            if c not in _SPECIAL and not flags.i and not flags.x:
                j = self.pos + 1
                p = self.p
                while j < len(p) and p[j] not in _SPECIAL:
                    j += 1
                if j < len(p) and p[j] in "*+?{" and j - self.pos > 1:
                    j -= 1  # a repetition applies to the last character only
                if j - self.pos > 1:
                    items.append(Lit(p[self.pos : j]))
                    self.pos = j
                    continue
            if c == "(":
                new_flags = self.parse_group_or_flags(flags, items)
                if new_flags is not None:
                    flags = new_flags
                continue
            items.append(self.parse_atom(flags))
        branches.append(Concat(items))
        return branches[0] if len(branches) == 1 else Alt(branches)

    def parse_repetition(self, item: Node, flags: Flags) -> Node:
        start = self.pos
        c = self.p[self.pos]
        self.pos += 1
        if c == "*":
            lo, hi = 0, None
        elif c == "+":
            lo, hi = 1, None
        elif c == "?":
            lo, hi = 0, 1
        else:
            lo, hi = self.parse_counted(flags, start)
        greedy = True
        self.skip_space(flags)
        if self.peek() == "?":
            self.pos += 1
            greedy = False
        if flags.U:
            greedy = not greedy
        return Repeat(item, lo, hi, greedy)

    def parse_counted(self, flags: Flags, start: int) -> tuple[int, int | None]:
        def number() -> int:
            self.skip_space(flags)
            j = self.pos
            while not self.eof() and self.p[self.pos].isdigit() and self.p[self.pos].isascii():
                self.pos += 1
            if j == self.pos:
                raise self.error("repetition quantifier expects a valid decimal")
            return int(self.p[j : self.pos])

        lo = number()
        hi: int | None = lo
        self.skip_space(flags)
        if self.peek() == ",":
            self.pos += 1
            self.skip_space(flags)
            hi = None if self.peek() == "}" else number()
        self.skip_space(flags)
        if self.peek() != "}":
            raise self.error("unclosed counted repetition", start)
        self.pos += 1
        if hi is not None and hi < lo:
            raise self.error("invalid repetition count range, the start must be <= the end", start)
        if lo > MAX_REPEAT or (hi or 0) > MAX_REPEAT:
            raise self.error(f"repetition counts above {MAX_REPEAT} are not supported", start)
        return lo, hi

    def parse_group_or_flags(self, flags: Flags, items: list[Node]) -> Flags | None:
        """Parses ``(...)``; returns new flags for ``(?flags)`` (which apply to the rest)."""
        start = self.pos
        self.pos += 1
        inner = flags
        if self.peek() == "?":
            self.pos += 1
            c = self.peek()
            if c in ("=", "!") or (c == "<" and self.peek(1) in ("=", "!")):
                raise self.error(
                    "look-around, including look-ahead and look-behind, is not supported", start
                )
            if (c == "P" and self.peek(1) == "<") or c == "<":
                self.pos += 2 if c == "P" else 1
                j = self.pos
                while not self.eof() and self.p[self.pos] != ">":
                    self.pos += 1
                name = self.p[j : self.pos]
                if self.eof():
                    raise self.error("unclosed capture group name", start)
                if not name or not all(ch.isalnum() or ch in "_.[]" for ch in name):
                    raise self.error("invalid capture group name", j)
                if not (name[0].isalpha() or name[0] == "_"):
                    raise self.error("invalid capture group name", j)
                self.pos += 1
            elif c == "P" and self.peek(1) in ("=", ">"):
                raise self.error("backreferences are not supported", start)
            else:
                inner, closed = self.parse_flags(flags, start)
                if closed:  # (?flags) alone: applies to the rest of the enclosing group
                    return inner
        body = self.parse_alternation(inner, top=False)
        self.pos += 1  # the ')'
        items.append(body)
        return None

    def parse_flags(self, flags: Flags, start: int) -> tuple[Flags, bool]:
        negate = False
        seen: set[str] = set()
        changes: dict[str, bool] = {}
        last_was_minus = False
        while True:
            c = self.peek()
            if c is None:
                raise self.error("unclosed group", start)
            self.pos += 1
            if c in ":)":
                if last_was_minus:
                    raise self.error("expected flag but got end of flags", self.pos - 1)
                if c == ")" and not changes and not negate:
                    raise self.error("empty flag group", start)
                return replace(flags, **changes), c == ")"
            if c == "-":
                if negate:
                    raise self.error("duplicate negation in flags", self.pos - 1)
                negate = last_was_minus = True
                continue
            last_was_minus = False
            if c not in "imsUuxR":
                raise self.error(f"unrecognized flag {c!r}", self.pos - 1)
            if c in seen:
                raise self.error(f"duplicate flag {c!r}", self.pos - 1)
            seen.add(c)
            changes[c] = not negate

    def parse_atom(self, flags: Flags) -> Node:
        start = self.pos
        c = self.p[self.pos]
        self.pos += 1
        if c == "[":
            return CharSet(self.parse_class(flags, start))
        if c == ".":
            if not flags.u and not flags.s:
                raise self.error("pattern can match invalid UTF-8 ((?-u:.))", start)
            if flags.s:
                return CharSet(ALL)
            return CharSet(complement(_chars("\r\n" if flags.R else "\n")))
        if c == "^":
            if flags.m and flags.R:
                raise self.error("CRLF-aware line anchors ((?mR)) are not supported", start)
            return Look("start_line" if flags.m else "start")
        if c == "$":
            if flags.m and flags.R:
                raise self.error("CRLF-aware line anchors ((?mR)) are not supported", start)
            return Look("end_line" if flags.m else "end")
        if c == "\\":
            return self.parse_escape(flags, start, in_class=False)
        return CharSet(self.literal(ord(c), flags))

    def literal(self, cp: int, flags: Flags) -> Ranges:
        return _folded_literal(cp, not flags.u) if flags.i else ((cp, cp),)

    def parse_hex(self, start: int, digits: int | None) -> int:
        if self.peek() == "{":
            end = self.p.find("}", self.pos)
            if end < 0:
                raise self.error("unclosed hexadecimal escape", start)
            text = self.p[self.pos + 1 : end]
            self.pos = end + 1
        else:
            assert digits is not None
            text = self.p[self.pos : self.pos + digits]
            if len(text) < digits:
                raise self.error("incomplete hexadecimal escape", start)
            self.pos += digits
        try:
            cp = int(text, 16)
        except ValueError:
            raise self.error("invalid hexadecimal digit", start) from None
        if not text.isascii() or not 0 < len(text) <= 8 or cp > MAX_CP:
            raise self.error("invalid hexadecimal code point", start)
        if _SURR_LO <= cp <= _SURR_HI:
            raise self.error("escape is not a Unicode scalar value (surrogate)", start)
        return cp

    def perl_class(self, c: str, flags: Flags, start: int) -> Ranges:
        low = c.lower()
        if flags.u:
            base = {"d": unicode_digit, "s": unicode_space, "w": unicode_word}[low]()
        else:
            base = {"d": ASCII_DIGIT, "s": ASCII_SPACE, "w": ASCII_WORD}[low]
        if flags.i:
            base = case_fold(base, ascii_only=not flags.u)
        if c.isupper():
            if not flags.u:
                raise self.error(
                    "pattern can match invalid UTF-8 (negated class under (?-u))", start
                )
            base = complement(base)
        return base

    def unicode_class(self, c: str, flags: Flags, start: int) -> Ranges:
        if not flags.u:
            raise self.error("Unicode classes are not allowed when Unicode mode is off", start)
        if self.peek() == "{":
            end = self.p.find("}", self.pos)
            if end < 0:
                raise self.error("unclosed Unicode class", start)
            spec = self.p[self.pos + 1 : end].strip()
            self.pos = end + 1
        else:
            if self.eof():
                raise self.error("incomplete Unicode class escape", start)
            spec = self.p[self.pos]
            self.pos += 1
        negate = c == "P"
        if spec.startswith("^"):
            negate, spec = not negate, spec[1:]
        base = unicode_property(spec, start)
        if flags.i:
            base = case_fold(base)
        return complement(base) if negate else base

    def parse_escape(self, flags: Flags, start: int, in_class: bool) -> Node:
        c = self.peek()
        if c is None:
            raise self.error("incomplete escape sequence", start)
        self.pos += 1
        simple = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
        if c in simple:
            return CharSet(self.literal(simple[c], flags))
        if c == "x":
            return CharSet(self.literal(self.parse_hex(start, 2), flags))
        if c == "u":
            return CharSet(self.literal(self.parse_hex(start, 4), flags))
        if c == "U":
            return CharSet(self.literal(self.parse_hex(start, 8), flags))
        if c in "dDsSwW":
            return CharSet(self.perl_class(c, flags, start))
        if c in "pP":
            return CharSet(self.unicode_class(c, flags, start))
        if c.isdigit() and c.isascii():
            raise self.error("backreferences are not supported", start)
        if c == "k" and self.peek() in ("<", "{", "'"):
            raise self.error("backreferences are not supported", start)
        if not in_class:
            if c in "AzbB":
                if c == "b" and self.peek() == "{":
                    raise self.error(
                        "\\b{start}/\\b{end} style assertions are not supported", start
                    )
                if c == "A":
                    return Look("start")
                if c == "z":
                    return Look("end")
                if flags.u:
                    self.has_unicode_boundary = True
                    return Look("word" if c == "b" else "not_word")
                self.has_ascii_boundary = True
                return Look("ascii_word" if c == "b" else "ascii_not_word")
            if c in "<>":
                raise self.error("\\< and \\> word-start/end assertions are not supported", start)
        if c.isascii() and c not in _META_NO_ESCAPE:
            return CharSet(self.literal(ord(c), flags))
        raise self.error(f"unrecognized escape sequence \\{c}", start)

    # -- bracketed classes
    def parse_class(self, flags: Flags, start: int) -> Ranges:
        """After ``[``: returns the class's set (negation and folding applied)."""
        negated = False
        self.skip_space(flags)
        if self.peek() == "^":
            negated = True
            self.pos += 1
        result = self.parse_class_ops(flags, start, first=True)
        if negated:
            if not flags.u:
                raise self.error(
                    "pattern can match invalid UTF-8 (negated class under (?-u))", start
                )
            result = complement(result)
        return result

    def parse_class_ops(self, flags: Flags, start: int, first: bool) -> Ranges:
        acc = self.parse_class_union(flags, start, first)
        while True:
            op = self.p[self.pos : self.pos + 2]
            if op not in ("&&", "--", "~~"):
                break
            self.pos += 2
            rhs = self.parse_class_union(flags, start, first=False)
            if op == "&&":
                acc = intersect(acc, rhs)
            elif op == "--":
                acc = difference(acc, rhs)
            else:
                acc = sym_difference(acc, rhs)
        self.skip_space(flags)
        if self.peek() != "]":
            raise self.error("unclosed character class", start)
        self.pos += 1
        return acc

    def parse_class_union(self, flags: Flags, start: int, first: bool) -> Ranges:
        parts: list[tuple[int, int]] = []
        allow_literal_bracket = first
        while True:
            self.skip_space(flags)
            c = self.peek()
            if c is None:
                raise self.error("unclosed character class", start)
            if c == "]" and not allow_literal_bracket:
                return _normalize(parts)
            if self.p[self.pos : self.pos + 2] in ("&&", "--", "~~"):
                return _normalize(parts)
            allow_literal_bracket = False
            item_start = self.pos
            if c == "[":
                posix = self.try_posix(flags)
                if posix is not None:
                    parts.extend(posix)
                    continue
                self.pos += 1
                parts.extend(self.parse_class(flags, item_start))
                continue
            lo_set, lo_cp = self.class_atom(flags)
            self.skip_space(flags)
            if lo_cp is not None and self.peek() == "-" and self.peek(1) not in ("]", "-", None):
                self.pos += 1
                self.skip_space(flags)
                _hi_set, hi_cp = self.class_atom(flags)
                if hi_cp is None:
                    raise self.error("invalid range boundary: must be a literal", item_start)
                if hi_cp < lo_cp:
                    raise self.error("invalid character class range, start > end", item_start)
                rng = ((lo_cp, hi_cp),)
                parts.extend(case_fold(rng, ascii_only=not flags.u) if flags.i else rng)
            else:
                parts.extend(lo_set)

    def class_atom(self, flags: Flags) -> tuple[Ranges, int | None]:
        """One class item; the code point is returned when it can bound a range."""
        start = self.pos
        c = self.p[self.pos]
        self.pos += 1
        if c == "\\":
            node = self.parse_escape(flags, start, in_class=True)
            assert isinstance(node, CharSet)
            esc = self.p[start + 1]
            single = esc not in "dDsSwWpP"
            cp = self._escape_cp(start) if single else None
            return node.ranges, cp
        return self.literal(ord(c), flags), ord(c)

    def _escape_cp(self, start: int) -> int:
        # Re-parse without folding to learn the escaped code point (for range bounds).
        saved = self.pos
        self.pos = start + 1
        node = self.parse_escape(Flags(), start, in_class=True)
        self.pos = saved
        assert isinstance(node, CharSet)
        return node.ranges[0][0]

    def try_posix(self, flags: Flags) -> Ranges | None:
        if self.peek(1) != ":":
            return None
        end = self.p.find(":]", self.pos + 2)
        if end < 0:
            return None
        name = self.p[self.pos + 2 : end]
        negated = name.startswith("^")
        if negated:
            name = name[1:]
        if name not in POSIX:
            return None  # Rust then reads it as a nested class
        self.pos = end + 2
        base = POSIX[name]
        if flags.i:
            base = case_fold(base, ascii_only=not flags.u)
        if negated:
            if not flags.u:
                raise self.error("pattern can match invalid UTF-8 (negated class under (?-u))")
            base = complement(base)
        return base


# --------------------------------------------------------------------------------------------
# Emitters


def _esc_cp(cp: int) -> str:
    c = chr(cp)
    if c.isascii():
        return c if c.isalnum() else f"\\x{{{cp:X}}}"
    # Printable non-ASCII characters are never special to RE2: written as themselves they
    # are a quarter of the text RE2 has to parse for big Unicode classes (\d, \w, (?i)).
    return c if c.isprintable() else f"\\x{{{cp:X}}}"


@functools.lru_cache(maxsize=65536)
def ranges_to_re2(rs: Ranges) -> str:
    if not rs:
        return r"[^\x00-\x{10FFFF}]"  # the empty class: never matches
    if len(rs) == 1 and rs[0][0] == rs[0][1]:
        return _esc_cp(rs[0][0])
    body = "".join(_esc_cp(lo) if lo == hi else f"{_esc_cp(lo)}-{_esc_cp(hi)}" for lo, hi in rs)
    return f"[{body}]"


_LOOKS = {
    "start": r"\A",
    "end": r"\z",
    "start_line": "(?m:^)",
    "end_line": "(?m:$)",
    "word": r"\b",
    "not_word": r"\B",
    "ascii_word": r"\b",
    "ascii_not_word": r"\B",
}


@functools.cache
def _non_word() -> Ranges:
    return complement(unicode_word())


@functools.lru_cache(maxsize=65536)
def _encoded_atom(rs: Ranges) -> str:
    """A class in the boundary-encoded text: ``_`` is ``__``, non-ASCII word ``c`` is ``_c_``."""
    if len(rs) == 1 and rs[0][1] < 0x80 and not rs[0][0] <= 0x5F <= rs[0][1]:
        return ranges_to_re2(rs)  # ASCII without "_": unchanged
    word = unicode_word()
    ascii_part = difference(intersect(rs, ASCII), ((0x5F, 0x5F),))
    non_ascii = intersect(rs, ((0x80, MAX_CP),))
    alts = []
    if ascii_part:
        alts.append(ranges_to_re2(ascii_part))
    if contains(rs, 0x5F):
        alts.append("__")
    wide_word = intersect(non_ascii, word)
    if wide_word:
        alts.append(f"_{ranges_to_re2(wide_word)}_")
    wide_other = intersect(non_ascii, _non_word())
    if wide_other:
        alts.append(ranges_to_re2(wide_other))
    if not alts:
        return ranges_to_re2(EMPTY)
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _emit(node: Node, encoded: bool) -> str:
    if isinstance(node, Lit):
        atom = _encoded_atom if encoded else ranges_to_re2
        return "".join(atom(((ord(c), ord(c)),)) for c in node.text)
    if isinstance(node, CharSet):
        return _encoded_atom(node.ranges) if encoded else ranges_to_re2(node.ranges)
    if isinstance(node, Look):
        return _LOOKS[node.kind]
    if isinstance(node, Concat):
        return "".join(_emit(n, encoded) for n in node.items)
    if isinstance(node, Alt):
        return "(?:" + "|".join(_emit(n, encoded) for n in node.items) + ")"
    inner = _emit(node.item, encoded)
    return _repeat_text(
        inner, isinstance(node.item, CharSet), encoded, node.lo, node.hi, node.greedy
    )


def _repeat_text(
    inner: str, charset: bool, encoded: bool, lo: int, hi: int | None, greedy: bool
) -> str:
    if _needs_group(inner, charset, encoded):
        inner = f"(?:{inner})"
    return inner + _repeat_op(lo, hi, greedy)


def _needs_group(inner: str, charset: bool, encoded: bool) -> bool:
    """A repeated item needs a group unless it is one class or one character."""
    simple = charset and (not encoded or not inner.startswith("(?:"))
    return not (simple and (inner.startswith("[") or len(inner) == 1 or inner.startswith("\\x")))


def _repeat_op(lo: int, hi: int | None, greedy: bool) -> str:
    if hi is None:
        op = {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    elif lo == 0 and hi == 1:
        op = "?"
    elif lo == hi:
        op = f"{{{lo}}}"
    else:
        op = f"{{{lo},{hi}}}"
    return op if greedy else op + "?"


#: In the encoded text, a whole unit: one plain character, ``__``, or ``_c_``.
_ENCODED_UNIT = r"(?s:[^_]|__|_[^_]_)"


def translate(pattern: str) -> Translation:
    """Parse a Rust regex and return its RE2 form(s). Raises :class:`RustRegexError`."""
    return translate_fast(pattern) or translate_full(pattern)


def translate_full(pattern: str) -> Translation:
    """:func:`translate` through the complete parser (every construct, every error)."""
    parser = _Parser(pattern)
    ast = parser.parse()
    out = Translation(source=pattern, re2=_emit(ast, encoded=False))
    if parser.has_unicode_boundary:
        if parser.has_ascii_boundary:
            raise RustRegexError(
                "mixing an ASCII word boundary (?-u:\\b) with a Unicode \\b is not supported", 0
            )
        out.unicode_boundary = True
        out.encoded = rf"\A{_ENCODED_UNIT}*?(?:{_emit(ast, encoded=True)})"
    return out


# --------------------------------------------------------------------------------------------
# Fast path. Most rules use a small subset of the syntax: literal text, escapes, simple
# bracket classes, groups, alternation, repetition, ^ $ . and a leading (?i). For those, a
# C-level tokenizer (stdlib `re`) splits the pattern and each token's RE2 text comes from a
# cache filled by the complete parser's own methods, so repeated words, classes and escapes
# (\d, \s+, [45] ...) are parsed once per process. The output is exactly, character for
# character, what :func:`translate_full` emits (tests/test_rust_regex.py checks it); anything
# else (other flags, nested or POSIX classes, set operations, named groups, errors) returns
# None and goes through the complete parser.

_FAST_TOKEN = re.compile(
    r"""
    (?P<lit>[^\\.+*?()|\[\]{}^$]+)
  | (?P<esc>\\(?:[xuU]\{[^}]*\}|x.{2}|u.{4}|U.{8}|[pP]\{[^}]*\}|[pP].|.))
  | (?P<cls>\[\^?\]?(?:[^\\\[\]]|\\.)*\])
  | (?P<rep>(?:[*+?]|\{[0-9]+(?:,[0-9]*)?\})\??)
  | (?P<open>\(\?:|\((?!\?))
  | (?P<close>\))
  | (?P<alt>\|)
  | (?P<dot>\.)
  | (?P<anchor>[\^$])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_CACHE = 16384
#: What the last item of a concatenation is (only classes and groups may be repeated).
_NONE, _SET, _GROUP, _LOOK, _REPEAT, _BOUNDARY = range(6)
_DOT = complement(_chars("\n"))


class _LiteralTable(dict[int, str]):
    """``str.translate`` table: code point -> RE2 text of that literal, filled on first use."""

    def __init__(self, fold: bool, encoded: bool) -> None:
        super().__init__()
        self.fold = fold
        self.atom = _encoded_atom if encoded else ranges_to_re2

    def __missing__(self, cp: int) -> str:
        text = self[cp] = self.atom(_folded_literal(cp, False) if self.fold else ((cp, cp),))
        return text


#: Literal runs are translated by ``str.translate`` (C speed) with these, by (fold, encoded).
_LITERALS = {(f, e): _LiteralTable(f, e) for f in (False, True) for e in (False, True)}


@functools.lru_cache(maxsize=_CACHE)
def _fast_escape(token: str, fold: bool, encoded: bool) -> tuple[int, str] | None:
    """An escape as (``_SET`` or ``_LOOK`` or ``_BOUNDARY``, its RE2 text)."""
    parser = _Parser(token)
    parser.pos = 1
    try:
        node = parser.parse_escape(Flags(i=fold), 0, in_class=False)
    except RustRegexError:
        return None
    if parser.pos != len(token):
        return None
    if isinstance(node, Look):
        unicode_boundary = node.kind in ("word", "not_word")
        return (_BOUNDARY if unicode_boundary else _LOOK), _LOOKS[node.kind]
    if isinstance(node, CharSet):
        return _SET, (_encoded_atom if encoded else ranges_to_re2)(node.ranges)
    return None


@functools.lru_cache(maxsize=_CACHE)
def _fast_class(token: str, fold: bool, encoded: bool) -> str | None:
    """A bracketed class's RE2 text (classes are hashed once here, not per use)."""
    if "&&" in token or "--" in token or "~~" in token:
        return None  # set operations: the complete parser
    parser = _Parser(token)
    parser.pos = 1
    try:
        ranges = parser.parse_class(Flags(i=fold), 0)
    except RustRegexError:
        return None
    if parser.pos != len(token):
        return None
    return (_encoded_atom if encoded else ranges_to_re2)(ranges)


@functools.lru_cache(maxsize=256)
def _fast_repeat(token: str) -> str | None:
    """A repetition operator's RE2 text, None when the complete parser must report it."""
    greedy = not (len(token) > 1 and token.endswith("?"))
    op = token if greedy else token[:-1]
    if op == "*":
        lo, hi = 0, None
    elif op == "+":
        lo, hi = 1, None
    elif op == "?":
        lo, hi = 0, 1
    else:
        lo_text, comma, hi_text = op[1:-1].partition(",")
        lo = int(lo_text)
        hi = (int(hi_text) if hi_text else None) if comma else lo
        if (hi is not None and hi < lo) or lo > MAX_REPEAT or (hi or 0) > MAX_REPEAT:
            return None
    return _repeat_op(lo, hi, greedy)


def _alternation_text(branches: list[str], items: list[str]) -> str:
    if not branches:
        return "".join(items)
    return "(?:" + "|".join([*branches, "".join(items)]) + ")"


def _fast_emit(body: str, fold: bool, encoded: bool) -> tuple[str, bool] | None:
    """RE2 text of ``body`` and whether it has a Unicode word boundary, or None."""
    dot = _encoded_atom(_DOT) if encoded else ranges_to_re2(_DOT)
    stack: list[tuple[list[str], list[str]]] = []
    branches: list[str] = []
    items: list[str] = []
    last = _NONE
    boundary = False
    literals = _LITERALS[fold, encoded]
    run = ""  # the literal run that is the last item, if it is one
    for m in _FAST_TOKEN.finditer(body):
        kind = m.lastgroup
        token = m.group()
        if kind == "lit":
            items.append(token.translate(literals))
            last = _SET
            run = token
            continue
        if kind == "rep":
            op = _fast_repeat(token)
            if op is None or (last != _SET and last != _GROUP):
                return None  # missing or nested operand, repeated assertion, bad counts
            if run:  # a repetition applies to the last character of a literal run
                items[-1] = run[:-1].translate(literals)
                items.append(run[-1].translate(literals))
            inner = items[-1]
            if _needs_group(inner, last == _SET, encoded):
                inner = f"(?:{inner})"
            items[-1] = inner + op
            last = _REPEAT
            run = ""
            continue
        run = ""
        if kind == "esc":
            esc = _fast_escape(token, fold, encoded)
            if esc is None:
                return None
            last, text = esc
            if last == _BOUNDARY:
                boundary = True
                last = _LOOK
            items.append(text)
        elif kind == "cls":
            cls_text = _fast_class(token, fold, encoded)
            if cls_text is None:
                return None
            items.append(cls_text)
            last = _SET
        elif kind == "open":
            stack.append((branches, items))
            branches, items, last = [], [], _NONE
        elif kind == "close":
            if not stack:
                return None
            text = _alternation_text(branches, items)
            branches, items = stack.pop()
            items.append(text)
            last = _GROUP
        elif kind == "alt":
            branches.append("".join(items))
            items, last = [], _NONE
        elif kind == "dot":
            items.append(dot)
            last = _SET
        elif kind == "anchor":
            items.append(_LOOKS["start" if token == "^" else "end"])
            last = _LOOK
        else:
            return None
    if stack:
        return None
    return _alternation_text(branches, items), boundary


def translate_fast(pattern: str) -> Translation | None:
    """:func:`translate` for the common subset of the syntax; None for anything else."""
    fold = pattern.startswith("(?i)")
    body = pattern[4:] if fold else pattern
    plain = _fast_emit(body, fold, encoded=False)
    if plain is None:
        return None
    out = Translation(source=pattern, re2=plain[0])
    if plain[1]:
        enc = _fast_emit(body, fold, encoded=True)
        assert enc is not None
        out.unicode_boundary = True
        out.encoded = rf"\A{_ENCODED_UNIT}*?(?:{enc[0]})"
    return out


@functools.cache
def _boundary_encoder() -> _uniregex.Pattern[str]:
    return _uniregex.compile(r"[\w--\p{ASCII}]", _uniregex.V1)


def encode_for_boundaries(text: str) -> str:
    """The text as the ``encoded`` patterns expect it (linear time, no backtracking)."""
    encoded: str = _boundary_encoder().sub(r"_\g<0>_", text.replace("_", "__"))
    return encoded
