"""Code point sets as sorted, disjoint, non-adjacent inclusive ranges, and their algebra."""

from __future__ import annotations

import bisect

MAX_CP = 0x10FFFF
_SURR_LO, _SURR_HI = 0xD800, 0xDFFF
Ranges = tuple[tuple[int, int], ...]


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
