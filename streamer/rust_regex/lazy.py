"""The `regex` module, imported on first use.

Translating patterns needs it (Unicode data, the boundary encoder), classifying ASCII lines does
not: a ``streamer classify`` run whose rules were translated by an earlier run
(``streamer.offline.startup``) starts without paying for its import (tens of ms of CPU).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name``, imported at the first attribute asked of it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
