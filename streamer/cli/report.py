"""``streamer report``: a self-contained HTML deliverability report (opens offline)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from streamer.cli import app
from streamer.cli.classify import RulesOption, _load_classifier, _tables
from streamer.cli.classify import _settings as _file_settings
from streamer.cli.kafka import BootstrapOpt


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
) -> None:
    """Label mix over time, rates per provider, category split, rules that fired and rule
    gaps, with a short summary on top: one HTML file with its charts' scripts inline."""
    from streamer.report import ReportError, read_inputs, read_stats_topic, stats_data, write_report

    try:
        if topic is not None:
            if inputs:
                raise _error("give either files or --topic, not both", 2)
            from streamer.cli.kafka import _bootstrap, _settings

            settings = _settings(bootstrap=bootstrap)
            address = _bootstrap(settings)
            rows = list(read_stats_topic(settings, address, topic, timeout=timeout))
            data = stats_data(rows, f"topic {topic}")
        else:
            from streamer.inputs import expand_inputs

            if not inputs:
                from streamer.devkit.sample import bundled_sample_path

                inputs = [str(bundled_sample_path())]
            items = expand_inputs(inputs)  # as classify and gaps: folders, globs, '-' (stdin)
            for item in items:  # fail before any work
                if item.error is not None:
                    raise _error(f"{item.name}: cannot read: {item.error}")
            data = read_inputs(items, _load_classifier(rules), *_tables(_file_settings(rules)))
        written = write_report(data, output)
    except ReportError as exc:
        raise _error(str(exc)) from None
    except OSError as exc:
        raise _error(f"{output}: cannot write: {exc.strerror or exc}") from None
    typer.echo(str(written.resolve()))
