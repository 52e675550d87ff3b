"""The ``streamer`` command line. Each concern registers its commands from its own module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="streamer",
    help="Classify MTA delivery-failure events (KumoMTA bounce-classifier semantics).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config file (also STREAMER_CONFIG)."),
    ] = None,
) -> None:
    if config is not None:
        os.environ["STREAMER_CONFIG"] = str(config)


def _register() -> None:
    # Imported for their side effect of adding commands to `app`.
    from streamer.cli import bench, classify, demo, gaps, kafka, report, worker  # noqa: F401


def main() -> None:
    _register()
    app()
