"""The error a pattern Rust's regex crate would reject raises."""

from __future__ import annotations


class RustRegexError(ValueError):
    """A pattern Rust's regex crate would reject (or that we cannot reproduce exactly)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.reason = message
        self.offset = offset
