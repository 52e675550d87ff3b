"""``streamer tail [TOPIC]``: follow a topic, one JSON record per line on stdout."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from streamer.cli import app
from streamer.cli.kafka import BootstrapOpt, _bootstrap, _err, _settings
from streamer.text import counted


@app.command("tail")
def tail_command(
    topic: Annotated[
        str | None, typer.Argument(help="Topic to follow (default: the output topic).")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record, not the end.")
    ] = False,
    max_records: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after N records.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Stop after S seconds.")
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Only records with this classification (repeat)."),
    ] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Follow a topic and print each record as one JSON line (the worker's connection settings)."""
    from streamer.kafka.probe import Needs
    from streamer.kafka.tail import TailError, tail

    settings = _settings(bootstrap=bootstrap)
    topic = topic or settings.output_topic
    address = _bootstrap(settings, Needs(read=(topic,)))
    out = sys.stdout.buffer

    def write(line: bytes) -> None:
        out.write(line)
        out.flush()

    try:
        result = tail(
            settings,
            address,
            topic,
            write,
            from_beginning=from_beginning,
            max_records=max_records,
            timeout=timeout,
            labels=labels or (),
        )
    except TailError as exc:
        _err(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        raise typer.Exit(0) from None
    typer.echo(f"{counted(result.printed, 'record')} printed ({result.seen} read)", err=True)
