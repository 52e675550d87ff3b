"""``streamer bench ...``: benchmarks (they print ratios against a baseline run alongside)."""

from __future__ import annotations

import typer

from streamer.cli import app

bench_app = typer.Typer(help="Benchmarks: classifier speed and end-to-end throughput.")
app.add_typer(bench_app, name="bench")
