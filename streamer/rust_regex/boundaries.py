"""The text as the boundary-encoded patterns expect it (see the package docstring)."""

from __future__ import annotations

import functools

import regex as _uniregex


@functools.cache
def _boundary_encoder() -> _uniregex.Pattern[str]:
    return _uniregex.compile(r"[\w--\p{ASCII}]", _uniregex.V1)


def encode_for_boundaries(text: str) -> str:
    """The text as the ``encoded`` patterns expect it (linear time, no backtracking)."""
    encoded: str = _boundary_encoder().sub(r"_\g<0>_", text.replace("_", "__"))
    return encoded
