"""``streamer classify`` records through the worker's native record path: the Python path's bytes.

The native path splices the enrichment into a record's own bytes; ``classify`` writes what
orjson re-encodes. The labeller sends only lines that are orjson's own writing to the native
path (``streamer._native.canonical_or_none``), so its output must be the Python path's byte
for byte, whatever the input: the bundled sample, generated records, hostile messages and
records spelled in other ways, with analytics on (category and provider) and off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from system_tools import lacking
from test_native_path import HOSTILE, _spellings, records
from typer.testing import CliRunner

import streamer.native
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.classifier import Classifier
from streamer.cli import _register, app
from streamer.config import shipped_rule_files
from streamer.devkit.sample import bundled_sample_path, generate_records
from streamer.offline.chunks import LineChunk
from streamer.offline.labeller import Labeller
from streamer.rules import load_rules

TABLES = (CategoryTable.shipped(), ProviderMatcher.shipped())
CLASSIFIER = Classifier(load_rules(shipped_rule_files()))
runner = CliRunner()
_register()


@pytest.fixture(autouse=True)
def _built() -> None:
    """Every test here needs the extension: skip without it, fail on CI (``CI=true``)."""
    if not streamer.native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")


def _labeller(native: bool, analytics: bool, max_bytes: int = 4096) -> Labeller:
    tables = TABLES if analytics else None
    return Labeller(CLASSIFIER, max_bytes=max_bytes, tables=tables, native=native)


def _both_paths(data: bytes, analytics: bool, max_bytes: int = 4096) -> int:
    """The native and the Python path give the same output, counts and skips on ``data``
    (twice: the second time from the caches); returns the rows the native path wrote."""
    results = []
    native_rows = 0
    for native in (False, True):
        labeller = _labeller(native, analytics, max_bytes)
        for first_line in (1, 7):
            r = labeller.label(LineChunk("f", first_line, data, False))
            results.append((r.output, r.lines, r.done, r.skips))
        if labeller._native_records is not None:
            raws = data.split(b"\n")
            rows = labeller._native_records.rows(raws[:-1], False) if raws else []
            native_rows = sum(row is not None for row in rows)
    assert results[2:] == results[:2]
    return native_rows


def _orjson_writing(record: dict[str, Any]) -> bytes:
    """``record`` as orjson writes it (json's compact form where orjson cannot: big integers)."""
    try:
        return orjson.dumps(record)
    except TypeError:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _jsonl(items: list[Any]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


@pytest.mark.parametrize("analytics", [False, True], ids=["plain", "analytics"])
def test_bundled_sample_and_generated_records(analytics: bool) -> None:
    sample = bundled_sample_path().read_bytes()
    assert _both_paths(sample, analytics) > 700  # of 1,000: most take the native path
    generated = _jsonl(list(generate_records(3000, seed=7)))
    assert _both_paths(generated, analytics) > 2000


@pytest.mark.parametrize("analytics", [False, True], ids=["plain", "analytics"])
def test_hostile_messages(analytics: bool) -> None:
    lines = [raw for raw in HOSTILE if raw is not None]
    _both_paths(b"\n".join(lines) + b"\n", analytics)
    _both_paths(b"\n".join(lines), analytics)  # the last line without its newline
    for raw in lines:
        _both_paths(raw, analytics)
        _both_paths(raw + b"\n", analytics)


def test_size_limit_counts_the_newline_on_the_native_path_too() -> None:
    record = b'{"type":"Bounce","response":{"code":550,"content":"user unknown"}}'
    for max_bytes in (len(record) - 1, len(record), len(record) + 1, len(record) + 2):
        _both_paths(record + b"\n" + record + b"\n", False, max_bytes)
        _both_paths(record + b"\n" + record, False, max_bytes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            records.map(_orjson_writing),  # the native path's input
            records.flatmap(_spellings),
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_generated_records_in_every_spelling(raws: list[bytes], analytics: bool) -> None:
    _both_paths(b"\n".join(raws), analytics)


def test_only_orjson_writing_takes_the_native_path() -> None:
    record = {"type": "Bounce", "response": {"code": 550, "content": "user unknown é"}}
    compact = orjson.dumps(record)
    spaced = json.dumps(record).encode()
    rows = _labeller(True, False)._native_records
    assert rows is not None
    made = rows.rows([compact, spaced, compact + b" ", b""], False)
    assert made[0] is not None and made[0].startswith(compact[:-1])
    assert made[1:] == [None, None, None]
    assert rows.rows([compact], True) == [None]  # an unterminated last line: Python's limit


def test_explain_summary_and_switch_take_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Labeller(CLASSIFIER, max_bytes=10, explain=True)._native_records is None
    assert Labeller(CLASSIFIER, max_bytes=10, native=False)._native_records is None
    monkeypatch.setenv(streamer.native.NATIVE_ENV, "0")
    assert Labeller(CLASSIFIER, max_bytes=10)._native_records is None
    assert Labeller(CLASSIFIER, max_bytes=10, native=True)._native_records is not None


@pytest.mark.parametrize("jobs", ["1", "auto"])
def test_cli_writes_the_same_bytes_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    monkeypatch.delenv("STREAMER_CONFIG", raising=False)
    monkeypatch.setattr("streamer.offline.chunks.CHUNK_BYTES", 64 << 10)  # several chunks
    path = tmp_path / "records.jsonl"
    hostile = b"\n".join(raw for raw in HOSTILE if raw is not None)
    path.write_bytes(_jsonl(list(generate_records(1500, seed=3))) + hostile)
    outputs = []
    for switch in ("0", "1"):
        monkeypatch.setenv(streamer.native.NATIVE_ENV, switch)
        result = runner.invoke(app, ["classify", "--jobs", jobs, str(path)])
        assert result.exit_code == 0, result.output
        outputs.append((result.stdout_bytes, result.stderr))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"\n") > 1500
