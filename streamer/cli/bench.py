"""``streamer bench ...``: benchmarks (they print ratios against a baseline run alongside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from streamer.cli import app

bench_app = typer.Typer(help="Benchmarks: classifier speed and end-to-end throughput.")
app.add_typer(bench_app, name="bench")


@bench_app.command("e2e")
def e2e(
    events: Annotated[
        int, typer.Option("--events", "-n", min=1, help="Records to push through.")
    ] = 200_000,
    partitions: Annotated[
        int, typer.Option("--partitions", "-p", min=1, help="Input partitions.")
    ] = 4,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker processes (and baseline ones).")
    ] = 1,
    processes: Annotated[
        int,
        typer.Option(min=1, help="Processes per worker (also runs 1, for the scaling)."),
    ] = 1,
    latency_seconds: Annotated[
        float, typer.Option(help="Measured duration of the fixed-rate latency run (at most).")
    ] = 10.0,
    seed: Annotated[int, typer.Option(help="Sample data seed.")] = 0,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds each phase may take (default 120 + events/500).")
    ] = None,
    keep_topics: Annotated[bool, typer.Option(help="Keep the benchmark's topics.")] = False,
    analytics_pairs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Runs with and without analytics, alternating, for the analytics' cost (median).",
        ),
    ] = 3,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (progress goes to stderr).")
    ] = False,
) -> None:
    """End to end: raw confluent-kafka pass-through vs `streamer worker`, latency, RSS."""
    from streamer.devkit.bench.e2e import run

    _run_bench(
        "e2e",
        lambda settings, bootstrap: run(
            settings,
            bootstrap,
            events=events,
            partitions=partitions,
            workers=workers,
            processes=processes,
            seed=seed,
            latency_seconds=latency_seconds,
            timeout=timeout,
            keep_topics=keep_topics,
            analytics_pairs=analytics_pairs,
        ),
        as_json,
    )


@bench_app.command("soak")
def soak(
    events: Annotated[
        int, typer.Option("--events", "-n", min=1000, help="Hostile records to push through.")
    ] = 1_000_000,
    rss_limit_mb: Annotated[float, typer.Option(help="Largest worker RSS allowed (MB).")] = 250.0,
    replay_hours: Annotated[
        float,
        typer.Option(
            min=0,
            help="Replay hard bounces whose event time spans this many hours (0: every value "
            "new within one minute).",
        ),
    ] = 0.0,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 1800,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (progress goes to stderr).")
    ] = False,
) -> None:
    """Memory under hostile cardinality: every site, source, tenant and response new."""
    from streamer.devkit.bench.soak import run

    _run_bench(
        "soak",
        lambda settings, bootstrap: run(
            settings,
            bootstrap,
            events=events,
            rss_limit_mb=rss_limit_mb,
            replay_hours=replay_hours,
            timeout=timeout,
        ),
        as_json,
    )


def _run_bench(name: str, bench: Callable[[Any, str], Any], as_json: bool) -> None:
    """Run a Kafka benchmark on the configured (or local) broker; print its table or JSON and
    exit 1 unless it passed. Configuration and broker errors are one line."""
    import json

    from streamer.config import ConfigError, load_settings
    from streamer.devkit.broker import ensure_broker
    from streamer.devkit.harness import HarnessError
    from streamer.kafka.probe import KafkaProblem

    try:
        settings = load_settings()
        result = bench(settings, ensure_broker(settings))
    except ConfigError as exc:
        from streamer.cli import config_error

        raise config_error(exc) from None
    except (KafkaProblem, HarnessError) as exc:
        typer.secho(f"bench {name} failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    print(json.dumps(result.to_json()) if as_json else result.table())
    if not result.ok:
        raise typer.Exit(1)


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

    from streamer.devkit.bench.classify import run
    from streamer.rules import RulesError

    try:
        report = run(
            [Path(r) for r in rules] if rules else None,
            lines=lines,
            budget=budget,
            progress=lambda msg: print(f"... {msg}", file=sys.stderr, flush=True),
        )
    except RulesError as exc:
        from streamer.cli import rules_error

        raise rules_error(exc) from None
    print(json.dumps(report.to_json()) if as_json else report.table())


@bench_app.command("pipeline")
def pipeline_bench(
    records: Annotated[int, typer.Option("--records", "-n", min=2000, help="Sample records.")] = (
        50_000
    ),
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of both paths (median).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Pipeline.process on the native and the Python record path: CPU µs per record."""
    import json
    import sys

    from streamer.devkit.bench.pipeline import run

    report = run(records, rounds, lambda msg: print(f"... {msg}", file=sys.stderr, flush=True))
    print(json.dumps(report.to_json()) if as_json else report.table())


#: ``--baseline`` of the benchmarks that run ``streamer classify`` as a user does.
BaselineOption = Annotated[
    str | None,
    typer.Option(help="Another source tree whose `streamer classify` runs alongside."),
]


def _say(msg: str) -> None:
    """A benchmark's progress, on stderr."""
    import sys

    print(f"... {msg}", file=sys.stderr, flush=True)


@bench_app.command("files")
def files_bench(
    records: Annotated[
        int, typer.Option("--records", "-n", min=100, help="Generated KumoMTA records.")
    ] = 200_000,
    runs: Annotated[int, typer.Option(min=1, help="Runs per measurement (median).")] = 3,
    repeat: Annotated[
        int, typer.Option(min=1, help="The records' response lines, this many times.")
    ] = 3,
    baseline: BaselineOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """`streamer classify` over generated files: lines/s and records/s, --jobs 1 and auto."""
    import json
    from pathlib import Path

    from streamer.devkit.bench.files import run

    result = run(
        records,
        runs=runs,
        repeat=repeat,
        baseline=Path(baseline) if baseline else None,
        progress=_say,
    )
    print(json.dumps(result.to_json()) if as_json else result.table())


@bench_app.command("lines")
def lines_bench(
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=100, help="Response lines to classify.")
    ] = 400_000,
    runs: Annotated[int, typer.Option(min=1, help="Runs per measurement (median).")] = 3,
    baseline: BaselineOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """`streamer classify --lines` as a user runs it: native vs Python loop, lines/s."""
    import json
    from pathlib import Path

    from streamer.devkit.bench.lines import run

    result = run(
        lines,
        runs=runs,
        baseline=Path(baseline) if baseline else None,
        progress=_say,
    )
    print(json.dumps(result.to_json()) if as_json else result.table())
    if not result.same_output:
        message = "the classify runs compared wrote different output"
        typer.secho(message, fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@bench_app.command("profile")
def profile_bench(
    events: Annotated[
        int, typer.Option("--events", "-n", min=1000, help="Records each worker drains.")
    ] = 200_000,
    raw_dir: Annotated[
        str | None, typer.Option(help="Keep py-spy's collapsed stacks in this directory.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (progress goes to stderr).")
    ] = False,
) -> None:
    """Where a worker's CPU per event goes (py-spy), analytics on and off."""
    from pathlib import Path

    from streamer.devkit.bench.profile import run

    keep = Path(raw_dir) if raw_dir else None
    _run_bench(
        "profile",
        lambda settings, bootstrap: run(settings, bootstrap, events=events, raw_dir=keep),
        as_json,
    )
