"""`streamer classify` on KumoMTA's own log files: zstd, gzip, plain; folders, globs, stdin;
records or response lines detected; all-rejected runs fail; --summary."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest
import zstandard
from typer.testing import CliRunner

from streamer.cli import _register, app
from streamer.inputs import expand_inputs, read_lines

runner = CliRunner()
_register()


def _record(i: int, content: str, code: int = 550, site: str = "mx.gmail.com") -> bytes:
    return orjson.dumps(
        {
            "type": "Bounce",
            "id": f"m{i}",
            "site": f"unspecified->({site})@smtp_client",
            "recipient": f"u{i}@gmail.com",
            "response": {"code": code, "enhanced_code": None, "content": content},
        }
    )


@pytest.fixture(autouse=True)
def _no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_CONFIG", "")
    monkeypatch.delenv("STREAMER_CONFIG")
    monkeypatch.delenv("STREAMER_FILES", raising=False)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A KumoMTA-like log folder: a zstd segment (two frames), a gzip copy, a plain file."""
    folder = tmp_path / "logs"
    folder.mkdir()
    compressor = zstandard.ZstdCompressor()
    first = b"\n".join(_record(i, "5.1.1 user unknown") for i in range(3)) + b"\n"
    second = _record(3, "4.2.2 mailbox full", 452) + b"\n"
    (folder / "20260101-000000").write_bytes(
        compressor.compress(first) + compressor.compress(second)
    )
    with gzip.open(folder / "old.jsonl.gz", "wb") as fh:
        fh.write(_record(4, "4.9.9 zork 99 frobnicated", 451) + b"\n")
    (folder / "plain.jsonl").write_bytes(_record(5, "5.1.1 user unknown") + b"\n\n")
    (folder / ".hidden").write_bytes(b"not read\n")
    return folder


def test_expand_inputs_folders_globs_and_errors(logs: Path, tmp_path: Path) -> None:
    names = [i.name for i in expand_inputs([str(logs)])]
    assert [Path(n).name for n in names] == ["20260101-000000", "old.jsonl.gz", "plain.jsonl"]
    globbed = expand_inputs([str(logs / "*.jsonl*")])
    assert [Path(i.name).name for i in globbed] == ["old.jsonl.gz", "plain.jsonl"]
    assert [i.name for i in expand_inputs([])] == ["<stdin>"]
    (missing,) = expand_inputs([str(tmp_path / "nope")])
    assert missing.error == "No such file or directory"
    (nomatch,) = expand_inputs([str(tmp_path / "*.zst")])
    assert nomatch.error == "no file matches this pattern"
    segment = expand_inputs([str(logs / "20260101-000000")])[0]
    assert len(list(read_lines(segment))) == 4  # both zstd frames


def test_classify_reads_a_kumomta_log_folder(logs: Path) -> None:
    res = runner.invoke(app, ["classify", str(logs)])
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [o["id"] for o in out] == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert out[0]["bounce_classification"] == "InvalidRecipient"
    assert out[0]["classification"]["rule"]["file"].startswith("rules/")
    assert "classified 6 lines, skipped 0 malformed" in res.stderr


def test_classify_detects_response_lines_and_lines_overrides(tmp_path: Path) -> None:
    res = runner.invoke(app, ["classify"], input="\n550 5.1.1 user unknown\n")
    assert res.exit_code == 0, res.output
    blank, obj = [json.loads(x) for x in res.stdout.splitlines()]  # a row per input line
    assert blank["line"] == "" and blank["label"] == "Uncategorized"
    assert obj["label"] == "InvalidRecipient" and obj["line"] == "550 5.1.1 user unknown"
    # a JSON line forced to be a response line is classified as text
    forced = runner.invoke(app, ["classify", "--lines"], input='{"a": 1}\n')
    assert forced.exit_code == 0 and json.loads(forced.stdout)["line"] == '{"a": 1}'
    gz = tmp_path / "lines.txt.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("552 5.2.2 mailbox full\n")
    res = runner.invoke(app, ["classify", str(gz)])
    assert json.loads(res.stdout)["label"] == "QuotaIssues"


def test_every_line_rejected_is_exit_1_with_one_line_reason(tmp_path: Path) -> None:
    res = runner.invoke(app, ["classify"], input='{"type": "Bounce"}\n{oops\n')
    assert res.exit_code == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every input line was rejected: ")
    assert "missing-response" in last or "invalid-response" in last, last
    assert "not-json" in last
    forced = runner.invoke(app, ["classify", "--records"], input="550 user unknown\n")
    assert forced.exit_code == 1
    assert forced.stderr.strip().splitlines()[-1].startswith("error: every input line")
    # empty input is not a rejection
    empty = runner.invoke(app, ["classify"], input="")
    assert empty.exit_code == 0


def test_summary_text_and_json(logs: Path) -> None:
    res = runner.invoke(app, ["classify", "--summary", str(logs)])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert text.startswith("6 responses classified, 0 lines skipped")
    assert "labels:" in text and "InvalidRecipient" in text
    assert "categories:" in text and "providers:" in text
    assert "rule gaps" in text and "frobnicated" in text
    doc = json.loads(runner.invoke(app, ["classify", "--summary", "--json", str(logs)]).stdout)
    assert doc["classified"] == 6
    assert doc["labels"]["InvalidRecipient"] == 4 and doc["labels"]["Uncategorized"] == 1
    assert doc["labels"]["QuotaIssues"] == 1
    assert sum(doc["categories"].values()) == 6
    assert doc["providers"] and sum(doc["providers"].values()) == 6
    assert doc["gaps"][0]["count"] == 1 and "frobnicated" in doc["gaps"][0]["example"]


def test_unreadable_input_is_reported_and_others_processed(logs: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    res = runner.invoke(app, ["classify", str(bad), str(logs / "plain.jsonl")])
    assert res.exit_code == 1
    assert f"{bad}: cannot read: zstd" in res.stderr
    assert len(res.stdout.splitlines()) == 1


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_truncated_zstd_segment_gives_what_it_holds_and_an_error(
    tmp_path: Path, jobs: str
) -> None:
    """A segment cut short (still being written, or copied half-way): zstandard's own stream
    reader just stops there. Its readable lines come out, then a one-line error and exit 1."""
    lines = b"".join(
        b'{"type":"Bounce","id":"%d","response":{"code":550,"content":"user unknown"}}\n' % i
        for i in range(4000)
    )
    compressor = zstandard.ZstdCompressor()
    whole = compressor.compress(lines[:200_000]) + compressor.compress(lines[200_000:])
    cut = tmp_path / "segment.zst"
    cut.write_bytes(whole[: len(whole) - 7])  # the second frame loses its end
    res = runner.invoke(app, ["classify", "--jobs", jobs, str(cut)])
    assert res.exit_code == 1
    assert f"{cut}: cannot read: zstd stream ends inside a frame (truncated?)" in res.stderr
    out = res.stdout.splitlines()
    assert 2_000 < len(out) < 4000  # the first frame whole, and the second as far as it goes
    ok = tmp_path / "whole.zst"
    ok.write_bytes(whole)
    res = runner.invoke(app, ["classify", "--jobs", jobs, str(ok)])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 4000


def test_report_reads_a_log_folder_and_globs_like_classify(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    for given in ([str(logs)], [str(logs / "*")]):
        res = runner.invoke(app, ["report", *given, "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.stat().st_size > 10_000
        out.unlink()
    res = runner.invoke(app, ["report", str(tmp_path / "nothing-*.zst"), "-o", str(out)])
    assert res.exit_code == 1 and "no file matches this pattern" in res.stderr
    plain = (logs / "plain.jsonl").read_text()
    res = runner.invoke(app, ["report", "-", "-o", str(out)], input=plain)
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 10_000


def test_zstd_frames_of_every_kind_read_whole_and_every_cut_is_an_error() -> None:
    """Many frames, an empty one and a skippable one read exactly as written, by lines and by
    blocks; a cut anywhere, also within the first 128 KiB or just after a frame's end, is an
    EOFError after the readable part (zstandard's stream reader would just stop)."""
    import io

    from streamer.inputs import _blocks, open_input

    c = zstandard.ZstdCompressor(level=3)
    lines = b"".join(b"line %d of the log\n" % i for i in range(60_000))
    frames = [c.compress(lines[i : i + 7_000]) for i in range(0, len(lines), 7_000)]
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"abcd"
    data = b"".join(frames[:5]) + skippable + c.compress(b"") + b"".join(frames[5:])

    def by_lines(raw: bytes) -> bytes:
        return b"".join(open_input("x", io.BytesIO(raw)))

    def by_blocks(raw: bytes) -> bytes:
        return b"".join(_blocks("x", io.BytesIO(raw), 1 << 20))

    for read in (by_lines, by_blocks):
        assert read(data) == lines
        whole = c.compress(lines)
        for cut in (whole[:-7], frames[0][:-3], b"".join(frames[:3]) + frames[3][:10]):
            with pytest.raises(EOFError, match="ends inside a frame"):
                read(cut)
