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
    paths = ("python", "native", "python+analytics", "native+analytics")
    assert said == [f"round {r}/2: {p}" for r in (1, 2) for p in paths]
    assert {path: len(runs) for path, runs in report.runs.items()} == dict.fromkeys(paths, 2)
    data = report.to_json()
    for ratio in ("ratio", "analytics_ratio"):
        assert data[f"{ratio}_warm"] > 0 and data[f"{ratio}_cold"] > 0
    assert data["analytics_cost_warm"] > -1
    assert "native / python, analytics off: cold" in report.table()
    assert "native analytics cost: cold" in report.table()
