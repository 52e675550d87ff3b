"""``streamer suppressions``: the suppression list outside Kafka: mirrored into Redis for
KumoMTA (``sync``), looked up (``check``), exported (``export``), and edited by hand (``add``,
``remove``: events the suppression stage folds)."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from streamer.cli import app, config_error
from streamer.cli.kafka import BootstrapOpt, _bootstrap, _err, _settings
from streamer.config import Settings

suppressions_app = typer.Typer(
    help="The suppression list: mirror it into Redis for KumoMTA, look addresses up, export it, "
    "add addresses by hand (reason manual) or remove any.",
    no_args_is_help=True,
)
app.add_typer(suppressions_app, name="suppressions")

TopicOpt = Annotated[
    str | None,
    typer.Option("--topic", "-t", help="Suppressions topic (default: suppressions_topic)."),
]


def _needs(**what: Any) -> Any:
    from streamer.kafka.probe import Needs

    return Needs(**what)


def _read(settings: Settings, bootstrap: str | None, topic: str | None) -> Any:
    from streamer.kafka.suppression_list import SuppressionListError, read_list

    name = topic or settings.suppressions_topic
    address = _bootstrap(settings, _needs(read=(name,)))
    try:
        return read_list(settings, address, name)
    except SuppressionListError as exc:
        _err(str(exc))
        raise typer.Exit(1) from None


@suppressions_app.command("check")
def check(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to look up.")],
    topic: TopicOpt = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Is each address suppressed: since when, why (reason, label, rule, response line).

    Exit status 0 when none of them is suppressed, 1 when one is at least."""
    from streamer.kafka.suppression_list import check_lines

    settings = _settings(bootstrap=bootstrap)
    live = _read(settings, bootstrap, topic)
    found = False
    for suppressed, line in check_lines(addresses, live):
        found |= suppressed
        typer.echo(line)
    raise typer.Exit(1 if found else 0)


@suppressions_app.command("export")
def export(
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="csv (a header row first) or jsonl.")
    ] = "csv",
    topic: TopicOpt = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """The current list, sorted by recipient, on stdout; the count on stderr."""
    from streamer.kafka.suppression_list import export_lines

    if fmt not in ("csv", "jsonl"):
        raise config_error(ValueError(f"--format: {fmt!r} is neither csv nor jsonl"))
    settings = _settings(bootstrap=bootstrap)
    live = _read(settings, bootstrap, topic)
    for line in export_lines(live, fmt):
        typer.echo(line)
    typer.echo(f"{len(live)} suppressed addresses", err=True)


@suppressions_app.command("sync")
def sync(
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Redis URL (redis://[user:password@]host:port/db, rediss://, unix://); "
            "default: suppressions_redis_url.",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group (default: <group_id>.redis-sync)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics on this port (default: none; 0: none)."),
    ] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Mirror the suppressions topic into Redis, for KumoMTA, until stopped (SIGTERM, Ctrl-C).

    A live entry sets <prefix><recipient> to its JSON; a tombstone deletes the key. Restart-safe:
    where it got to is written in the same Redis transaction as the entries."""
    from streamer.logs import setup_logging
    from streamer.redis_mirror import RedisMirror, SyncError, redis_client

    settings = _settings(bootstrap=bootstrap)
    url = redis_url or settings.suppressions_redis_url
    if not url:
        raise config_error(ValueError("give --redis URL or set suppressions_redis_url"))
    try:
        redis_client(url).close()  # a URL that does not parse: one line, before Kafka
    except SyncError as exc:
        raise config_error(exc) from None
    setup_logging("suppressions-sync", settings.log_level, settings.log_format)
    name = settings.suppressions_topic
    chosen = group or f"{settings.group_id}.redis-sync"
    address = _bootstrap(settings, _needs(read=(name,), group=chosen))
    try:
        mirror = RedisMirror(settings, address, url, group=chosen)
    except SyncError as exc:
        raise config_error(exc) from None
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.metrics_host, registry=mirror.registry)
    signal.signal(signal.SIGTERM, lambda *_: mirror.stop())
    typer.echo(
        f"suppressions sync: {name} -> {_safe(url)} "
        f"(keys {settings.suppressions_redis_prefix}<recipient>, group {chosen})",
        err=True,
    )
    try:
        mirror.run()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except SyncError as exc:
        _err(str(exc))
        raise typer.Exit(1) from None


def _safe(url: str) -> str:
    """The URL without its password (it is printed)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


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
