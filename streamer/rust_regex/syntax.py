"""The parsed pattern (its syntax tree, with the flags in force) and its translation."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.rust_regex.ranges import Ranges


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
