"""Rust regex to RE2: the fast path when it applies, else the complete parser."""

from __future__ import annotations

from streamer.rust_regex.emitter import _ENCODED_UNIT, _emit
from streamer.rust_regex.errors import RustRegexError
from streamer.rust_regex.fast import translate_fast
from streamer.rust_regex.parser import _Parser
from streamer.rust_regex.syntax import Translation


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
