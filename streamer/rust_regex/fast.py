"""The fast path: most rules use a small subset of the syntax.

Literal text, escapes, simple bracket classes, groups, alternation, repetition, ``^ $ .`` and a
leading ``(?i)``: for those, a C-level tokenizer (stdlib ``re``) splits the pattern and each
token's RE2 text comes from a cache filled by the complete parser's own methods, so repeated
words, classes and escapes (``\\d``, ``\\s+``, ``[45]`` ...) are parsed once per process. The
output is exactly, character for character, what ``translate_full`` emits
(tests/test_rust_regex.py checks it); anything else (other flags, nested or POSIX classes, set
operations, named groups, errors) returns None and goes through the complete parser.
"""

from __future__ import annotations

import functools
import re

from streamer.rust_regex.emitter import (
    _ENCODED_UNIT,
    _LOOKS,
    _encoded_atom,
    _needs_group,
    _repeat_op,
    ranges_to_re2,
)
from streamer.rust_regex.errors import RustRegexError
from streamer.rust_regex.parser import MAX_REPEAT, _Parser
from streamer.rust_regex.ranges import _chars, complement
from streamer.rust_regex.syntax import CharSet, Flags, Look, Translation
from streamer.rust_regex.unicode import _folded_literal

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
