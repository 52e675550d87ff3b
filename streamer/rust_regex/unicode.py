"""Unicode data, taken from the `regex` module (it implements UTS#18 like Rust's crate):
classes, properties and simple case folding."""

from __future__ import annotations

import bisect
import functools
from typing import TYPE_CHECKING

from streamer.rust_regex.errors import RustRegexError
from streamer.rust_regex.ranges import (
    _SURR_HI,
    _SURR_LO,
    MAX_CP,
    POSIX,
    Ranges,
    _normalize,
    complement,
    intersect,
    union,
)

if TYPE_CHECKING:
    import regex as _uniregex
else:  # imported when a pattern is translated: a leaner start for a run with cached rules
    from streamer.rust_regex.lazy import LazyModule

    _uniregex = LazyModule("regex")


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
