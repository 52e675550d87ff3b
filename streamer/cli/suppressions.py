"""``streamer suppressions``: manual suppressions (add, remove), folded by the suppression stage."""

from __future__ import annotations

from typing import Annotated

import typer

from streamer.cli import app
from streamer.cli.kafka import BootstrapOpt, _bootstrap, _err, _settings

suppressions_app = typer.Typer(
    help="The suppression list: add addresses by hand (reason manual) or remove any.",
    no_args_is_help=True,
)
app.add_typer(suppressions_app, name="suppressions")

AddressesArg = Annotated[list[str], typer.Argument(help="Email addresses (any case).")]


def _write(kind: str, addresses: list[str], note: str | None, bootstrap: str | None) -> None:
    from streamer.kafka.manual_suppressions import (
        ManualSuppressionError,
        address_key,
        write_manual,
    )
    from streamer.kafka.probe import Needs

    try:
        for address in addresses:  # before any connection: a typo writes nothing
            address_key(address)
    except ValueError as exc:
        _err(f"suppressions: {exc}")
        raise typer.Exit(2) from None
    settings = _settings(bootstrap=bootstrap)
    topic = settings.suppression_events_topic or ""
    server = _bootstrap(settings, Needs(write=(topic,)))
    try:
        written = write_manual(settings, server, kind, addresses, note)
    except ManualSuppressionError as exc:
        _err(f"suppressions: {exc}")
        raise typer.Exit(1) from None
    what = "suppression" if kind == "manual" else "removal"
    n = len(written.keys)
    typer.echo(
        f"{n} {what}{'' if n == 1 else 's'} sent to {written.topic}; the suppression stage "
        f"writes {settings.suppressions_topic}"
    )


@suppressions_app.command("add")
def suppressions_add(
    addresses: AddressesArg,
    reason_text: Annotated[
        str | None,
        typer.Option("--reason-text", help="Why (kept as the entry's note, 500 characters)."),
    ] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Suppress addresses (reason manual: no Delivery lifts it; `remove` does)."""
    _write("manual", addresses, reason_text, bootstrap)


@suppressions_app.command("remove")
def suppressions_remove(addresses: AddressesArg, bootstrap: BootstrapOpt = None) -> None:
    """Lift every suppression of the addresses, whatever its reason (a tombstone)."""
    _write("remove", addresses, None, bootstrap)
