"""``streamer report``: a self-contained HTML deliverability report (opens offline)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamer.cli import app
from streamer.cli.classify import RulesOption, _load_classifier, _tables
from streamer.cli.classify import _settings as _file_settings
from streamer.cli.kafka import BootstrapOpt

if TYPE_CHECKING:
    from streamer.report import ReportData


def _error(message: str, code: int = 1) -> typer.Exit:
    """One line on stderr; exit 1 (an input or output that fails), 2 for a usage error."""
    print(message, file=sys.stderr)
    return typer.Exit(code)


@app.command("report")
def report_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="KumoMTA log files or classified JSONL (gzip/zstd by content): files, folders "
            "(every file inside), globs; default: the bundled sample."
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    topic: Annotated[
        str | None,
        typer.Option("--topic", help="Read the worker's stats topic instead of files."),
    ] = None,
    bootstrap: BootstrapOpt = None,
    rules: RulesOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to read the stats topic at most.")] = 60.0,
    period: Annotated[
        str | None,
        typer.Option(
            help="Report the last DURATION of the input (30m, 1d, 1w) and compare it with the "
            "DURATION before; default: all of the input, compared with the same length before."
        ),
    ] = None,
    suppressions_topic: Annotated[
        str | None,
        typer.Option(
            help="With --topic: the compacted suppressions topic to count suppressed addresses "
            "on; default: the configured suppressions_topic."
        ),
    ] = None,
) -> None:
    """Summary, comparison with the previous period, complaint rates against the providers'
    thresholds, suppressed addresses, block and deferral reasons per provider, label mix,
    rates per provider, category split, outcomes per tenant / egress pool / egress source,
    rules that fired and rule gaps: one HTML file with its charts' scripts inline."""
    from streamer.report import ReportError, write_report

    period_s = _period_seconds(period)
    try:
        if topic is not None:
            if inputs:
                raise _error("give either files or --topic, not both", 2)
            data = _topic_data(topic, suppressions_topic, bootstrap, rules, timeout)
        else:
            data = _file_data(inputs, rules)
        data.period_s = period_s
        written = write_report(data, output)
    except ReportError as exc:
        raise _error(str(exc)) from None
    except OSError as exc:
        raise _error(f"{output}: cannot write: {exc.strerror or exc}") from None
    typer.echo(str(written.resolve()))


def _period_seconds(period: str | None) -> float | None:
    """``--period`` in seconds; not a duration: a usage error, exit 2."""
    from streamer.timespec import parse_duration

    if period is None:
        return None
    seconds = parse_duration(period)
    if not seconds:
        raise _error(f"--period: {period!r} is not a duration (30m, 2h, 1d, 1w)", 2)
    return seconds


def _file_data(inputs: list[str] | None, rules: list[Path] | None) -> Any:
    """The report's data from log files (default: the bundled sample)."""
    from streamer.inputs import expand_inputs
    from streamer.report import read_inputs

    if not inputs:
        from streamer.devkit.sample import bundled_sample_path

        inputs = [str(bundled_sample_path())]
    items = expand_inputs(inputs)  # as classify and gaps: folders, globs, '-' (stdin)
    for item in items:  # fail before any work
        if item.error is not None:
            raise _error(f"{item.name}: cannot read: {item.error}")
    settings = _file_settings(rules)
    return read_inputs(
        items,
        _load_classifier(rules),
        *_tables(settings),
        suppress_evidence=settings.suppress_evidence,
    )


def _topic_data(
    topic: str,
    suppressions_topic: str | None,
    bootstrap: str | None,
    rules: list[Path] | None,
    timeout: float,
) -> ReportData:
    """The stats topic's rows, and the suppressed addresses on the suppressions topic (a
    missing suppressions topic leaves the number unknown, saying why)."""
    from streamer.cli.kafka import _bootstrap, _settings
    from streamer.report import ReportError, read_stats_topic, read_suppressed, stats_data

    settings = _settings(bootstrap=bootstrap)
    address = _bootstrap(settings)
    rows = list(read_stats_topic(settings, address, topic, timeout=timeout))
    data = stats_data(rows, f"topic {topic}", _tables(_file_settings(rules))[0])
    name = suppressions_topic or settings.suppressions_topic
    try:
        data.suppressed = read_suppressed(settings, address, name, timeout=timeout)
        data.suppressed_source = f"on topic {name}"
    except ReportError as exc:
        data.suppressed_source = str(exc)
    return data
