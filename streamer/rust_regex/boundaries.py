"""The text as the boundary-encoded patterns expect it (see the package docstring)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import regex as _uniregex
else:  # imported on the first line that needs it: a leaner start
    from streamer.rust_regex.lazy import LazyModule

    _uniregex = LazyModule("regex")


@functools.cache
def _boundary_encoder() -> _uniregex.Pattern[str]:
    return _uniregex.compile(r"[\w--\p{ASCII}]", _uniregex.V1)


def encode_for_boundaries(text: str) -> str:
    """The text as the ``encoded`` patterns expect it (linear time, no backtracking)."""
    encoded: str = _boundary_encoder().sub(r"_\g<0>_", text.replace("_", "__"))
    return encoded
