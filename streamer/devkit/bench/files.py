"""``streamer bench files``: ``streamer classify`` end to end over files, 1 process and all cores.

Generates its inputs into a temporary folder (realistic KumoMTA records from
``streamer.devkit.sample``: a plain JSONL file, the same zstd-compressed, and their response
lines, repeated), then times ``streamer classify`` as a user runs it (a new process, output to a
file) with ``--jobs 1`` and ``--jobs auto``, a few runs each, on the native path and on the
Python one (``STREAMER_NATIVE=0``, the reference), and reports medians of wall and CPU seconds
(the process and its workers: on a loaded machine CPU seconds say more). With ``baseline``
(another source tree, e.g. a checkout of the previous release) the same commands run from there
too, interleaved, so that the ratio is measured on the same machine load.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamer.devkit.sample import generate_records
from streamer.native import NATIVE_ENV
from streamer.records import CLASSIFIABLE_TYPES, effective_type, response_line

#: The name in the report of this tree's Python path (``STREAMER_NATIVE=0``): the reference
#: the native path's rows compare with.
PYTHON = "python"


@dataclass
class Inputs:
    records: int
    lines: int
    distinct_lines: int
    files: dict[str, tuple[Path, bool, int]]  # name -> (path, response lines?, items)


@dataclass
class Result:
    rows: list[dict[str, Any]] = field(default_factory=list)
    startup_seconds: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        out = [
            f"inputs: {self.inputs['records']:,} records, {self.inputs['lines']:,} response "
            f"lines ({self.inputs['distinct_lines']:,} distinct); startup (empty input): "
            f"{self.startup_seconds:.2f} s; medians of {self.inputs['runs']} runs",
            f"{'input':<16} {'code':<9} {'jobs':>5} {'seconds':>8} {'per second':>12} {'vs':>6}"
            f" {'CPU s':>6} {'per CPU s':>10}",
        ]
        for r in self.rows:
            vs = f"{r['ratio']:.2f}x" if r.get("ratio") else ""
            out.append(
                f"{r['input']:<16} {r['code']:<9} {r['jobs']:>5} {r['seconds']:>8.2f} "
                f"{r['per_second']:>12,.0f} {vs:>6} {r['cpu_seconds']:>6.2f} "
                f"{r['per_cpu_second']:>10,.0f}"
            )
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "startup_seconds": self.startup_seconds, "inputs": self.inputs}


def make_inputs(folder: Path, records: int, repeat: int = 3, seed: int = 0) -> Inputs:
    """Write the benchmark's inputs; the response lines are the records' own, ``repeat`` times
    (a long log repeats its responses: a few dominate, ids and addresses vary)."""
    import zstandard

    plain = folder / "records.jsonl"
    lines: list[str] = []
    with open(plain, "wb") as fh:
        for record in generate_records(records, seed=seed):
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            if effective_type(record) in CLASSIFIABLE_TYPES:
                lines.append(response_line(record["response"]))
    packed = folder / "records.jsonl.zst"
    with open(plain, "rb") as src, open(packed, "wb") as dst:
        zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
    text = folder / "lines.txt"
    block = ("\n".join(lines) + "\n").encode() if lines else b""
    text.write_bytes(block * repeat)
    return Inputs(
        records,
        len(lines) * repeat,
        len(set(lines)),
        {
            "lines, plain": (text, True, len(lines) * repeat),
            "records, plain": (plain, False, records),
            "records, zstd": (packed, False, records),
        },
    )


def timed(
    cmd: list[str], env: dict[str, str], out: Path, stdin: bytes | None = None
) -> dict[str, float]:
    """Wall and CPU seconds of one command, its output to ``out`` (CPU: the process and the
    workers it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(out, "wb") as fh:
        subprocess.run(
            cmd,
            input=stdin,
            stdout=fh,
            stderr=subprocess.DEVNULL,
            env=env,
            # `python -m` puts the working directory first on sys.path, before PYTHONPATH: run
            # from the output's folder, so that each tree's code is the one that runs
            cwd=out.parent,
            check=True,
            timeout=900,
        )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def _time(cmd: list[str], env: dict[str, str], out: Path, stdin: bytes | None = None) -> float:
    return timed(cmd, env, out, stdin)["wall"]


def run(
    records: int = 200_000,
    *,
    runs: int = 3,
    repeat: int = 3,
    jobs: tuple[str, ...] = ("1", "auto"),
    baseline: Path | None = None,
    progress: Any = lambda _msg: None,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="streamer-bench-files-") as tmpdir:
        tmp = Path(tmpdir)
        progress(f"generating {records:,} records")
        inputs = make_inputs(tmp, records, repeat)
        src = str(Path(__file__).resolve().parents[3])
        codes = {"this": src} | ({"baseline": str(baseline)} if baseline else {})
        env = {name: dict(os.environ, PYTHONPATH=path) for name, path in codes.items()}
        env[PYTHON] = dict(env["this"], **{NATIVE_ENV: "0"})  # this tree's reference path
        base = [sys.executable, "-m", "streamer", "classify"]
        out = tmp / "out.jsonl"
        result = Result(
            inputs={
                "records": records,
                "lines": inputs.lines,
                "runs": runs,
                "distinct_lines": inputs.distinct_lines,
            }
        )
        result.startup_seconds = statistics.median(
            _time([*base, "--lines"], env["this"], out, b"") for _ in range(runs)
        )
        for name, (path, as_lines, count) in inputs.files.items():
            mode = ["--lines"] if as_lines else ["--records"]
            variants = [(code, ["--jobs", j], j) for code in (PYTHON, "this") for j in jobs]
            if baseline:
                variants.insert(0, ("baseline", [], "1"))
            result.rows += _measure(
                name, count, variants, runs, [*base, *mode], path, env, out, progress
            )
        return result


def _measure(
    name: str,
    count: int,
    variants: list[tuple[str, list[str], str]],
    runs: int,
    command: list[str],
    path: Path,
    env: dict[str, dict[str, str]],
    out: Path,
    progress: Any,
) -> list[dict[str, Any]]:
    """One input's rows: each variant (code, extra arguments, jobs) ``runs`` times,
    interleaved so that every variant sees the same machine load; medians."""
    samples: dict[tuple[str, str], list[dict[str, float]]] = {(c, j): [] for c, _, j in variants}
    for i in range(runs):
        progress(f"{name}: run {i + 1} of {runs}")
        for code, extra, j in variants:
            samples[(code, j)].append(timed([*command, *extra, str(path)], env[code], out))
    rows = []
    first = None
    for (code, j), times in samples.items():
        median = statistics.median(t["wall"] for t in times)
        cpu = statistics.median(t["cpu"] for t in times)
        first = first or median
        rows.append(
            {
                "input": name,
                "code": code,
                "jobs": j,
                "seconds": median,
                "per_second": count / median,
                "ratio": first / median,
                # on a loaded machine CPU seconds say more than wall seconds
                "cpu_seconds": cpu,
                "per_cpu_second": count / cpu if cpu else 0.0,
            }
        )
    return rows
