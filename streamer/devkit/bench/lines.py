"""``streamer bench lines``: ``streamer classify --lines`` as a user runs it, native against Python.

Generates realistic response lines (the classifiable records' own lines from
``streamer.devkit.sample``, the block repeated: templates repeat, addresses and ids vary), then
runs ``streamer classify --lines FILE`` in a new process per run (output to a file, bytecode
caching on, as an installed package has it) on the native loop and on the Python loop
(``STREAMER_NATIVE=0``), interleaved so that both see the same machine load. Reports the
start-up (an empty input), wall and CPU seconds (the process and its workers), lines per wall
and per CPU second, lines per CPU second without the start-up's CPU (on a loaded machine wall
seconds say more about the load than about the code), and whether both loops wrote the same
bytes. With ``baseline`` (another source tree, e.g. a checkout of the previous release) its
``classify`` runs alongside, from that tree (``PYTHONPATH``), and must write the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.devkit.bench.files import timed
from streamer.devkit.sample import generate_records
from streamer.native import NATIVE_ENV
from streamer.records import CLASSIFIABLE_TYPES, effective_type, response_line

#: The two loops: the name in the report and the value of ``STREAMER_NATIVE``.
LOOPS = {"native": "1", "python": "0"}
#: The name in the report of another source tree's ``classify`` (``baseline``).
BASELINE = "baseline"


@dataclass
class Result:
    lines: int
    distinct: int
    runs: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    startup: dict[str, dict[str, float]] = field(default_factory=dict)
    same_output: bool = True

    def table(self) -> str:
        out = [
            f"{self.lines:,} response lines ({self.distinct:,} distinct); medians of "
            f"{self.runs} runs; the same output from every run: {self.same_output}",
            "start-up (empty input): "
            + ", ".join(
                f"{loop} {s['wall']:.2f} s wall / {s['cpu']:.2f} s CPU"
                for loop, s in self.startup.items()
            ),
            f"{'loop':<8} {'jobs':>5} {'wall s':>7} {'CPU s':>6} {'lines/s':>10} "
            f"{'lines/CPU s':>12} {'w/o start':>10}",
        ]
        for r in self.rows:
            rest = r["without_startup"]
            out.append(
                f"{r['loop']:<8} {r['jobs']:>5} {r['wall']:>7.2f} {r['cpu']:>6.2f} "
                f"{r['per_second']:>10,.0f} {r['per_cpu_second']:>12,.0f} "
                + (f"{rest:>10,.0f}" if rest else f"{'-':>10}")
            )
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "distinct": self.distinct,
            "runs": self.runs,
            "startup": self.startup,
            "rows": self.rows,
            "same_output": self.same_output,
        }


def make_lines(path: Path, lines: int, repeat: int = 3, seed: int = 0) -> int:
    """Write ``lines`` response lines to ``path`` (a block of ``lines / repeat`` records'
    lines, ``repeat`` times); returns how many are distinct."""
    want = max(1, -(-lines // repeat))
    block: list[str] = []
    batch = want * 3 + 1000  # about a third of the sample's records are classifiable
    while len(block) < want:
        for record in generate_records(batch, seed=seed):
            if effective_type(record) in CLASSIFIABLE_TYPES:
                block.append(response_line(record["response"]))
                if len(block) == want:
                    break
        seed += 1
    text = ("\n".join(block) + "\n").encode()
    with open(path, "wb") as fh:
        for _ in range(repeat):
            fh.write(text)
    return len(set(block))


def _digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def run(
    lines: int = 400_000,
    *,
    runs: int = 3,
    jobs: tuple[str, ...] = ("auto", "1"),
    baseline: Path | None = None,
    progress: Any = lambda _msg: None,
) -> Result:
    with tempfile.TemporaryDirectory(prefix="streamer-bench-lines-") as tmpdir:
        tmp = Path(tmpdir)
        progress(f"generating {lines:,} response lines")
        path = tmp / "lines.txt"
        distinct = make_lines(path, lines)
        count = path.read_bytes().count(b"\n")
        result = Result(count, distinct, runs)
        # bytecode caching as an installed package has it (pip compiles it at install time)
        base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs = {loop: dict(base_env, **{NATIVE_ENV: value}) for loop, value in LOOPS.items()}
        if baseline is not None:
            envs = {BASELINE: dict(base_env, PYTHONPATH=str(baseline.resolve()))} | envs
        base = [sys.executable, "-m", "streamer", "classify", "--lines"]
        empty = tmp / "empty.jsonl"
        starts: dict[str, list[dict[str, float]]] = {loop: [] for loop in envs}
        samples: dict[tuple[str, str], list[dict[str, float]]] = {
            (loop, j): [] for j in jobs for loop in envs
        }
        digests: set[str] = set()
        for i in range(runs):  # interleaved: every variant sees the same machine load
            progress(f"run {i + 1} of {runs}")
            for loop, env in envs.items():
                starts[loop].append(timed(base, env, empty, b""))
            for loop, j in samples:
                out = tmp / f"out-{loop}-{j}.jsonl"
                samples[(loop, j)].append(timed([*base, "--jobs", j, str(path)], envs[loop], out))
                digests.add(_digest(out))
        result.same_output = len(digests) == 1
        for loop, got in starts.items():
            result.startup[loop] = {k: statistics.median(s[k] for s in got) for k in got[0]}
        for (loop, j), got in samples.items():
            wall = statistics.median(s["wall"] for s in got)
            cpu = statistics.median(s["cpu"] for s in got)
            work = cpu - result.startup[loop]["cpu"]  # CPU: wall seconds vary with the load
            result.rows.append(
                {
                    "loop": loop,
                    "jobs": j,
                    "wall": wall,
                    "cpu": cpu,
                    "per_second": count / wall,
                    "per_cpu_second": count / cpu,
                    "without_startup": count / work if work > 0 else None,
                }
            )
        return result
