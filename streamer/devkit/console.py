"""How the tools talk to the person running them: progress lines on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable

#: A progress reporter: the tools take one so tests can silence or capture them.
Say = Callable[[str], None]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
