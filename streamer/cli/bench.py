"""``streamer bench ...``: benchmarks (they print ratios against a baseline run alongside)."""

from __future__ import annotations

import typer

from streamer.cli import app

bench_app = typer.Typer(help="Benchmarks: classifier speed and end-to-end throughput.")
app.add_typer(bench_app, name="bench")


@bench_app.command("classify")
def classify_bench(
    rules: list[str] | None = typer.Option(  # noqa: B008 - typer's documented style
        None, "--rules", "-r", help="Rule files (default: the built-in ~150-rule set)."
    ),
    lines: int = typer.Option(20_000, "--lines", "-n", min=100, help="Distinct lines in the mix."),
    budget: float = typer.Option(2.0, min=0.1, help="Seconds per measurement (bounded)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Classifications/s vs a naive stdlib-re loop; 2,000/10,000 rules; adversarial lines."""
    import json
    import sys
    from pathlib import Path

    from streamer.bench.classify import run
    from streamer.rules import RulesError

    try:
        report = run(
            [Path(r) for r in rules] if rules else None,
            lines=lines,
            budget=budget,
            progress=lambda msg: print(f"... {msg}", file=sys.stderr, flush=True),
        )
    except RulesError as exc:
        typer.secho(f"invalid rules:\n{exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    print(json.dumps(report.to_json()) if as_json else report.table())
