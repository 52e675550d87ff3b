# The C extension's interface (streamer/analytics/_fastcount.c).
from collections.abc import Callable, Mapping, Sequence
from typing import Any

class FastCounter:
    def __init__(
        self,
        window_ms: int,
        gaps: list[Any],
        complaints: list[Any],
        complaint_types: dict[str, str],
        seconds: dict[str, int],
        tenants: dict[str, str],
        site_provider: dict[str, str],
        domain_provider: dict[str, str],
        peer_provider: dict[str, str],
        category_of: dict[tuple[str, int], str],
        owner: object,
        other: str,
        hard: str,
        uncategorized: str,
        fallback: Callable[..., Any],
        suppress: Callable[..., Any],
    ) -> None: ...
    @property
    def pending(self) -> int: ...
    def drain_into(self, tally: dict[Any, int]) -> None: ...
    def observe(
        self, record: Mapping[str, Any], rtype: str, label: str | None, rule: Any, line: str | None
    ) -> tuple[str | None, str, Sequence[tuple[bytes, bytes]]]: ...
