"""Small wording helpers for what the commands print."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """``n`` and ``noun`` in the number they agree with: "1 record", "2 records", "0 files".

    ``plural`` for nouns that do not take an "s"; ``grouped`` writes thousands separators.
    """
    number = f"{n:,}" if grouped else str(n)
    return f"{number} {noun if n == 1 else plural or noun + 's'}"
