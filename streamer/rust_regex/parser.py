"""The complete parser of Rust's regex syntax (follows regex-syntax's grammar)."""

from __future__ import annotations

from dataclasses import replace

from streamer.rust_regex.errors import RustRegexError
from streamer.rust_regex.ranges import (
    _SURR_HI,
    _SURR_LO,
    ALL,
    ASCII_DIGIT,
    ASCII_SPACE,
    ASCII_WORD,
    MAX_CP,
    POSIX,
    Ranges,
    _chars,
    _normalize,
    complement,
    difference,
    intersect,
    sym_difference,
)
from streamer.rust_regex.syntax import Alt, CharSet, Concat, Flags, Lit, Look, Node, Repeat
from streamer.rust_regex.unicode import (
    _folded_literal,
    case_fold,
    unicode_digit,
    unicode_property,
    unicode_space,
    unicode_word,
)

MAX_REPEAT = 1000  # RE2's limit

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
