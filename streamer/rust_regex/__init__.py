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

One module per step: ``ranges`` (code point set algebra), ``unicode`` (Unicode classes and case
folding), ``syntax`` (the parsed tree), ``parser`` (the complete parser), ``emitter`` (RE2 text),
``fast`` (the fast path for the common subset), ``translator`` (``translate``) and
``boundaries`` (the text encoding for Unicode ``\\b``).
"""

from streamer.rust_regex.boundaries import encode_for_boundaries
from streamer.rust_regex.emitter import ranges_to_re2
from streamer.rust_regex.errors import RustRegexError
from streamer.rust_regex.fast import translate_fast
from streamer.rust_regex.parser import MAX_REPEAT
from streamer.rust_regex.ranges import (
    ALL,
    ASCII,
    ASCII_DIGIT,
    ASCII_SPACE,
    ASCII_WORD,
    EMPTY,
    MAX_CP,
    POSIX,
    Ranges,
    complement,
    contains,
    difference,
    intersect,
    sym_difference,
    union,
)
from streamer.rust_regex.syntax import (
    Alt,
    CharSet,
    Concat,
    Flags,
    Lit,
    Look,
    Node,
    Repeat,
    Translation,
)
from streamer.rust_regex.translator import translate, translate_full
from streamer.rust_regex.unicode import (
    _all_chars,
    _fold_table,
    _fold_table_exhaustive,
    case_fold,
    unicode_digit,
    unicode_property,
    unicode_space,
    unicode_word,
)

__all__ = [
    "ALL",
    "ASCII",
    "ASCII_DIGIT",
    "ASCII_SPACE",
    "ASCII_WORD",
    "EMPTY",
    "MAX_CP",
    "MAX_REPEAT",
    "POSIX",
    "Alt",
    "CharSet",
    "Concat",
    "Flags",
    "Lit",
    "Look",
    "Node",
    "Ranges",
    "Repeat",
    "RustRegexError",
    "Translation",
    "_all_chars",
    "_fold_table",
    "_fold_table_exhaustive",
    "case_fold",
    "complement",
    "contains",
    "difference",
    "encode_for_boundaries",
    "intersect",
    "ranges_to_re2",
    "sym_difference",
    "translate",
    "translate_fast",
    "translate_full",
    "unicode_digit",
    "unicode_property",
    "unicode_space",
    "unicode_word",
    "union",
]
