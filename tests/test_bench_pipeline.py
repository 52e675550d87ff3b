"""``streamer bench pipeline``: both record paths measured in one run, ratios reported."""

from __future__ import annotations

from system_tools import lacking

from streamer import native
from streamer.devkit.bench.pipeline import run


def test_both_paths_measured_and_compared() -> None:
    if not native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")
    said: list[str] = []
    report = run(2000, 2, said.append)
    assert said == [f"round {r}/2: {p}" for r in (1, 2) for p in ("python", "native")]
    assert {path: len(runs) for path, runs in report.runs.items()} == {"python": 2, "native": 2}
    data = report.to_json()
    assert data["ratio_warm"] > 0 and data["ratio_cold"] > 0
    assert "native / python: cold" in report.table()
