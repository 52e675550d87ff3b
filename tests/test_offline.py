"""``streamer classify`` over chunks and processes: the same bytes as one line at a time."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import BinaryIO

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from system_tools import lacking
from typer.testing import CliRunner

import streamer.native
import streamer.offline.chunks
import streamer.offline.labeller
from streamer.classifier import Classifier
from streamer.cli import _register, app
from streamer.inputs import expand_inputs
from streamer.offline.chunks import ChunkReader, InputFailed, LineChunk, detect
from streamer.offline.labeller import NOT_UTF8_ROW, Labelled, Labeller, write_output
from streamer.offline.pool import label_all
from streamer.offline.summary import Summary
from streamer.records import MalformedRecord, decode_record, enrich
from streamer.rules import load_rules

FIXTURES = Path(__file__).parent / "fixtures"
RULE_FILES = [FIXTURES / "basic.toml", FIXTURES / "second.json"]
RULES = [arg for f in RULE_FILES for arg in ("--rules", str(f))]
runner = CliRunner()
_register()


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMER_CONFIG", raising=False)
    monkeypatch.delenv("STREAMER_FILES", raising=False)


def _classifier() -> Classifier:
    return Classifier(load_rules(RULE_FILES))


def _records() -> bytes:
    responses = ["550 user unknown", "552 mailbox full", "nothing known", "451 try\r\nlater"]
    out = []
    for i in range(300):
        kind = ("Bounce", "Delivery", "TransientFailure", "Feedback")[i % 4]
        rec = {
            "type": kind,
            "id": f"m{i}",
            "response": {"code": 550, "enhanced_code": None, "content": responses[i % 4]},
            "é": "ü",
        }
        if kind == "Feedback" and i % 8 == 3:
            rec["feedback_report"] = {"feedback_type": "abuse"}
        out.append(orjson.dumps(rec))
        if i % 37 == 0:
            out.append(b"{oops")
        if i % 41 == 0:
            out.append(b"  ")
    return b"\n".join(out)  # the last line has no newline


def _lines() -> bytes:
    base = [b"550 user unknown\r", b"", b"552 mailbox full", b"\xff bad", b"x\r\r", b"\x85 nel"]
    return b"\n".join(base[i % len(base)] + str(i % 7).encode() * (i % 3) for i in range(400))


def _reference(data: bytes, as_lines: bool, classifier: Classifier) -> tuple[bytes, list[int]]:
    """The output and skipped line numbers of classifying one line at a time (the old way)."""
    out, skipped = [], []
    for lineno, raw in enumerate(io.BytesIO(data), 1):
        if not as_lines and not raw.strip():
            continue
        if as_lines:  # one row per line: a blank one too, and one that is not UTF-8
            try:
                text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError:
                skipped.append(lineno)
                out.append(NOT_UTF8_ROW)
                continue
            result = classifier.classify(text)
            rule = result.rule
            obj = {
                "line": text,
                "label": result.label,
                "rule": None
                if rule is None
                else {
                    "file": rule.file,
                    "label": rule.label,
                    "index": rule.index,
                    "pattern": rule.pattern,
                },
                "evidence": result.evidence,
            }
        else:
            try:
                obj = enrich(decode_record(raw, 1 << 20), classifier)
            except MalformedRecord:
                skipped.append(lineno)
                continue
        out.append(orjson.dumps(obj) + b"\n")
    return b"".join(out), skipped


@pytest.mark.parametrize(
    ("as_lines", "native"), [(True, False), (True, True), (False, None)], ids=str
)
@pytest.mark.parametrize("chunk_bytes", [1, 50, 1 << 20])
@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("to_file", [False, True], ids=["stream", "file"])
def test_chunks_and_processes_give_the_old_output(
    tmp_path: Path, as_lines: bool, native: bool | None, chunk_bytes: int, jobs: int, to_file: bool
) -> None:
    # to a file, native rows and a worker's spool file go to its descriptor (writev, sendfile)
    if native:
        _needs_native()
    data = _lines() if as_lines else _records()
    path = tmp_path / "in"
    path.write_bytes(data)
    classifier = _classifier()
    expected, skipped = _reference(data, as_lines, _classifier())
    reader = ChunkReader(expand_inputs([str(path)]), None, chunk_bytes)
    labeller = Labeller(classifier, max_bytes=1 << 20, native=native)
    stream = io.BytesIO()
    out: BinaryIO = open(tmp_path / "out", "wb") if to_file else stream  # noqa: SIM115
    skips = []
    with out:
        out.write(b"head\n")  # buffered: before every row
        for r in label_all(reader, labeller, jobs):
            assert not isinstance(r, InputFailed)
            r.write_to(out)  # before the next result: a worker's output file lives until then
            skips += [n for n, _ in r.skips]
        written = b"" if to_file else stream.getvalue()
    if to_file:
        written = (tmp_path / "out").read_bytes()
    assert written == b"head\n" + expected
    assert skips == skipped
    assert reader.records_seen is (not as_lines)


def _needs_native() -> None:
    """The native loop's tests: skipped where the extension is not built, failed on CI."""
    if not streamer.native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")


#: Lines the native loop must write as the Python loop does: odd bytes, line ends and sizes.
HOSTILE_LINES = [
    b"",
    b"\r",
    b"\r\r",
    b" \t ",
    b"550 user unknown\r",
    b"550 \x00 nul \x1f\x7f",
    b"\xef\xbb\xbf550 bom",
    b"\xff\xfe not utf-8",
    b"\xed\xa0\x80 a surrogate in UTF-8",
    b"\xc3",  # a cut sequence
    b"550 caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80",
    b'550 "quoted" \\ back\\slash \\u0041',
    b"550 " + b"x" * 70_000,
    b"\x85 nel \x0b\x0c",
]


def _written(labelled: Labelled, tmp: Path) -> bytes:
    """What ``labelled.write_to`` writes to a stream without a file descriptor, checked to be
    what it writes to a file (the native rows go straight to its descriptor)."""
    stream = io.BytesIO()
    labelled.write_to(stream)
    with open(tmp, "wb") as fh:
        fh.write(b"head\n")  # buffered: written before the rows
        labelled.write_to(fh)
    assert tmp.read_bytes() == b"head\n" + stream.getvalue()
    return stream.getvalue()


def _both_loops(data: bytes, tmp: Path) -> None:
    """The native and the Python loop give the same output, counts and skips on ``data``,
    labelled twice (the second time from the caches)."""
    results = []
    for native in (False, True):
        labeller = Labeller(_classifier(), max_bytes=1 << 20, native=native)
        for first_line in (1, 7):
            r = labeller.label(LineChunk("f", first_line, data, True))
            output = _written(r, tmp / "out")
            results.append((native, first_line, output, r.lines, r.done, r.skips))
    assert [r[2:] for r in results[:2]] == [r[2:] for r in results[2:]]


def test_native_loop_writes_the_python_rows_on_hostile_lines(tmp_path: Path) -> None:
    _needs_native()
    data = b"\n".join(HOSTILE_LINES * 3)
    _both_loops(data, tmp_path)
    _both_loops(data + b"\n", tmp_path)
    _both_loops(b"", tmp_path)
    _both_loops(b"\n", tmp_path)


def test_output_pieces_keep_their_order_whatever_the_stream(tmp_path: Path) -> None:
    # native rows go to a file's descriptor, bytes through its buffer: never out of order
    _needs_native()
    from streamer._native import LineLabeller

    rows = LineLabeller(lambda line: f"<{line}>\n".encode(), 8, b"?\n")
    pieces = [rows.label(b"a\nb")[0], b"middle\n", rows.label(b"c\n")[0], b"end\n"]
    expected = b"<a>\n<b>\nmiddle\n<c>\nend\n"
    stream = io.BytesIO()
    write_output(stream, pieces)
    assert stream.getvalue() == expected
    with open(tmp_path / "out", "wb") as fh:
        fh.write(b"head\n")
        write_output(fh, pieces)
    assert (tmp_path / "out").read_bytes() == b"head\n" + expected


def test_native_loop_in_blocks_writes_the_same_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a chunk is labelled in blocks cut after a newline: line numbers and rows carry over
    _needs_native()
    monkeypatch.setattr(streamer.offline.labeller, "NATIVE_BLOCK", 7)
    data = b"\n".join(HOSTILE_LINES * 3)
    for block in (data, data + b"\n", b"\n\n\n", b"x" * 20 + b"\n" + b"y" * 3):
        _both_loops(block, tmp_path)
    labelled = Labeller(_classifier(), max_bytes=1 << 20).label(LineChunk("f", 1, data, True))
    assert isinstance(labelled.output, list) and len(labelled.output) > 5


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["550 user unknown", "552 mailbox full", "451 try later"]).map(
                str.encode
            ),
            st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.binary(max_size=20),
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_native_loop_writes_the_python_rows_on_generated_lines(
    lines: list[bytes], final_newline: bool
) -> None:
    _needs_native()
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    with tempfile.TemporaryDirectory() as tmp:  # not tmp_path: one per generated example
        _both_loops(data, Path(tmp))


def test_the_native_loop_can_be_required_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_native()
    assert Labeller(_classifier(), max_bytes=10)._native_lines is not None
    assert Labeller(_classifier(), max_bytes=10, native=False)._native_lines is None
    monkeypatch.setenv(streamer.native.NATIVE_ENV, "0")
    assert Labeller(_classifier(), max_bytes=10)._native_lines is None
    assert Labeller(_classifier(), max_bytes=10, native=True)._native_lines is not None


def test_summary_is_the_same_whatever_the_chunks_and_jobs(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(_records())
    lines = tmp_path / "lines.txt"
    lines.write_bytes(_lines())
    docs = []
    for chunk_bytes, jobs in ((1 << 20, 1), (60, 1), (60, 2)):
        summary = Summary()
        labeller = Labeller(_classifier(), max_bytes=1 << 20, summary=summary)
        reader = ChunkReader(expand_inputs([str(path), str(lines)]), None, chunk_bytes)
        for r in label_all(reader, labeller, jobs):
            assert not isinstance(r, InputFailed) and r.tally is not None and not r.output
            summary.merge(r.tally)
        docs.append(summary.render(10, True))
    assert docs[0] == docs[1] == docs[2]
    assert '"Uncategorized"' in docs[0]


def test_records_size_limit_counts_the_newline(tmp_path: Path) -> None:
    rec = orjson.dumps({"type": "Delivery", "pad": "x" * 2000})
    limit = len(rec) + 1  # fits with its newline, exactly
    labeller = Labeller(_classifier(), max_bytes=limit)
    ok = labeller.label(LineChunk("f", 1, rec + b"\n", False))
    assert ok.done == 1 and not ok.skips
    too_big = labeller.label(LineChunk("f", 1, rec + b" \n" + rec, False))
    assert too_big.skips == [(1, "too-large")] and too_big.done == 1


def test_detect_and_unreadable_inputs_in_order(tmp_path: Path) -> None:
    assert detect(b"\n \r\n  {x") is False and detect(b"\n550 x") is True
    assert detect(b" \n\t") is None
    good = tmp_path / "good.txt"
    good.write_bytes(b"\n\n550 a\n551 b\n552 c")
    reader = ChunkReader(expand_inputs([str(tmp_path / "missing"), str(good)]), None, 4)
    items = list(reader)
    assert isinstance(items[0], InputFailed) and "missing: cannot read" in items[0].message
    chunks = [i for i in items if isinstance(i, LineChunk)]
    assert all(c.as_lines for c in chunks)
    assert [(c.first_line, c.data) for c in chunks] == [
        (3, b"550 a\n"),
        (4, b"551 b\n"),
        (5, b"552 c"),
    ]
    assert not reader.records_seen


def test_cli_jobs_with_small_chunks_keeps_order_and_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(_lines())
    one = runner.invoke(app, ["classify", "--lines", "--jobs", "1", *RULES, str(path)])
    monkeypatch.setattr(streamer.offline.chunks, "CHUNK_BYTES", 64)
    two = runner.invoke(app, ["classify", "--lines", "--jobs", "2", *RULES, str(path)])
    assert one.exit_code == two.exit_code == 0, two.output
    assert one.stdout_bytes == two.stdout_bytes and one.stdout_bytes
    assert one.stderr == two.stderr
    assert f"{path}:4: skipped malformed line (not-utf8)" in two.stderr
    bad = runner.invoke(app, ["classify", "--jobs", "0", str(path)])
    assert bad.exit_code == 2 and "--jobs" in bad.output


def test_bench_files_plumbing(tmp_path: Path) -> None:
    from streamer.devkit.bench.files import make_inputs, run

    inputs = make_inputs(tmp_path, 60, repeat=2)
    path, as_lines, count = inputs.files["lines, plain"]
    assert as_lines and count == inputs.lines and len(path.read_bytes().splitlines()) == count
    result = run(120, runs=1, repeat=1, jobs=("1", "2"))
    assert [(r["input"], r["code"], r["jobs"]) for r in result.rows] == [
        (name, code, j)
        for name in ("lines, plain", "records, plain", "records, zstd")
        for code in ("python", "this")
        for j in "12"
    ]
    assert all(r["per_second"] > 0 for r in result.rows) and result.startup_seconds > 0
    assert "records, zstd" in result.table()


def test_bench_files_runs_the_baseline_tree_not_this_one(tmp_path: Path) -> None:
    # `python -m` puts the working directory before PYTHONPATH on sys.path: the benchmark must
    # run each tree's own code whatever folder it is started from.
    import os
    import sys

    from streamer.devkit.bench.files import _time

    fake = tmp_path / "other" / "streamer"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("print('the other tree')\n")
    out = tmp_path / "run" / "out.jsonl"
    out.parent.mkdir()
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    _time([sys.executable, "-m", "streamer", "classify"], env, out)
    assert out.read_text() == "the other tree\n"


def test_bench_lines_plumbing() -> None:
    from streamer.devkit.bench.lines import run

    result = run(300, runs=1, jobs=("1",))
    assert [(r["loop"], r["jobs"]) for r in result.rows] == [("native", "1"), ("python", "1")]
    assert result.same_output and result.lines == 300 and 0 < result.distinct < 300
    assert all(r["per_second"] > 0 and r["cpu"] > 0 for r in result.rows)
    assert set(result.startup) == {"native", "python"}
