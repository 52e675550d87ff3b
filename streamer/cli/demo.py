"""``streamer demo``: run the main job on the bundled sample and show what came out."""

from __future__ import annotations

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
    from streamer.devkit.broker import BrokerError
    from streamer.devkit.demo import run_demo
    from streamer.devkit.harness import HarnessError
    from streamer.kafka.admin import TopicError

    try:
        ok = run_demo(load_settings(), timeout=timeout, examples=examples, keep_topics=keep_topics)
    except ConfigError as exc:
        from streamer.cli import config_error

        raise config_error(exc) from None
    except (BrokerError, HarnessError, TopicError) as exc:
        typer.secho(f"demo failed: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    if not ok:
        raise typer.Exit(1)
