"""RE2 text of a parsed pattern, plain and boundary-encoded (see the package docstring)."""

from __future__ import annotations

import functools

from streamer.rust_regex.ranges import (
    ASCII,
    EMPTY,
    MAX_CP,
    Ranges,
    complement,
    contains,
    difference,
    intersect,
)
from streamer.rust_regex.syntax import Alt, CharSet, Concat, Lit, Look, Node
from streamer.rust_regex.unicode import unicode_word


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
