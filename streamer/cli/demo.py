"""``streamer demo``: run the main job on the bundled sample and show what came out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamer.cli import app


@app.command("demo")
def demo(
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every input to come out.")
    ] = 180.0,
    examples: Annotated[int, typer.Option(min=0, help="Enriched events to print.")] = 3,
    keep_topics: Annotated[
        bool, typer.Option(help="Keep the demo's topics (and group) for inspection.")
    ] = False,
) -> None:
    """Start Kafka if needed, run a worker on the bundled sample, report, clean up.

    Exits 0 only when every input was accounted for: each record on the output topic with the
    label the rules give it, each malformed message on the dead-letter topic with its reason.
    """
    from streamer.config import ConfigError, load_settings
    from streamer.devkit.demo import run_demo
    from streamer.devkit.harness import HarnessError
    from streamer.kafka.admin import TopicError
    from streamer.kafka.probe import KafkaProblem

    try:
        settings = load_settings()
        ok = run_demo(settings, timeout=timeout, examples=examples, keep_topics=keep_topics)
    except ConfigError as exc:
        from streamer.cli import config_error

        raise config_error(exc) from None
    except (KafkaProblem, HarnessError, TopicError) as exc:
        typer.secho(f"demo failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    _write_report(settings.state_dir / "report.html")
    if not ok:
        raise typer.Exit(1)


def _write_report(out: Path) -> None:
    """The HTML report on the sample the demo fed (``streamer report``), and its path."""
    from streamer.classifier import Classifier
    from streamer.config import shipped_rule_files
    from streamer.devkit.sample import bundled_sample_path
    from streamer.inputs import Input
    from streamer.report import ReportError, read_inputs, write_report

    try:
        sample = bundled_sample_path()
        data = read_inputs(
            [Input(str(sample), sample)], Classifier.from_files(shipped_rule_files())
        )
        written = write_report(data, out)
    except (ReportError, OSError) as exc:
        typer.secho(f"report not written: {exc}", fg=typer.colors.YELLOW, err=True)
        return
    typer.echo(f"report: {written.resolve()} (open it in a browser; it works offline)")
